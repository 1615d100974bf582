"""Run identity: a stage's directory is keyed by everything that changes its result.

Each stage (tokenizer, pre-training, fine-tuning) lives in ``<label>-<key>``, where ``key`` hashes
the stage's resolved settings together with those of the stages it depends on, and ``label`` is a
readable summary. A finished stage is reused only when its key matches, so a changed setting is
a different run; ``settings.json`` in the directory records what the key covers.

What is left out of a key changes no number: paths to the same data (a moved folder), caches,
logging and checkpoint intervals, DataLoader workers, the accelerator, ``resume``. The number of
processes is in: batch sizes are per process.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path

from gptbench.config import ExperimentConfig
from gptbench.io import atomic_write_json

_FORMAT = 1  # bump when a stage's results change for reasons its settings do not show
# The same for fine-tuning alone. 2: Matthews is GLUE's (0 for a one-class predictor).
_FINETUNE_FORMAT = 2


def settings_key(settings: dict) -> str:
    """A short, stable hash of JSON-able settings."""
    blob = json.dumps({"format": _FORMAT, **settings}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def _corpus_fingerprint(path: str | None) -> str | None:
    """The books of the corpus folder by relative path and size (cheap: no file is read)."""
    if not path or not Path(path).is_dir():
        return None
    root = Path(path)
    books = sorted((p.relative_to(root).as_posix(), p.stat().st_size) for p in root.rglob("*.txt"))
    return hashlib.sha256(json.dumps(books).encode()).hexdigest()[:16]


def _books_fingerprint(cfg: ExperimentConfig) -> str | None:
    """The corpus fingerprint of the run's keys; with ``prepared=``, the one recorded when the
    directory was prepared (the books need not be here), so keys are those of the raw-file run."""
    if cfg.prepared:
        from gptbench.data.prepared import check_corpus_matches, open_prepared

        prepared = open_prepared(cfg.prepared)
        check_corpus_matches(prepared, cfg.corpus.path)
        return prepared.corpus_fingerprint
    return _corpus_fingerprint(cfg.corpus.path)


def _data_origin(cfg: ExperimentConfig) -> str:
    """Where the task data comes from, "local" or "hub" (with ``prepared=``: where the prepared data came from)."""
    if cfg.prepared:
        from gptbench.data.prepared import open_prepared

        return open_prepared(cfg.prepared).data or "local"
    return "local" if cfg.finetune.data_dir else "hub"


def tokenizer_settings(cfg: ExperimentConfig) -> dict:
    t = cfg.tokenizer
    if t.kind == "gpt1":
        return {"kind": "gpt1"}
    return {"kind": t.kind, "vocab_size": t.vocab_size, "train_bytes": t.train_bytes,
            "corpus": _corpus_settings(cfg)}  # fmt: skip


def _corpus_settings(cfg: ExperimentConfig) -> dict:
    c = cfg.corpus
    return {"books": _books_fingerprint(cfg), "max_bytes": c.max_bytes, "val_books": c.val_books}


def network_settings(cfg: ExperimentConfig) -> dict:
    """The model section, plus the architecture (and the LSTM settings for an LSTM); a
    Transformer's settings, and so its keys, are as they were before the other networks existed."""
    model = asdict(cfg.model)
    if model["pad_vocab_multiple"] == 1:  # keys of unpadded networks are as before the option existed
        model.pop("pad_vocab_multiple")
    if cfg.architecture == "transformer":
        return {"model": model}
    if cfg.architecture == "bert":
        return {"model": model, "architecture": cfg.architecture}
    return {"model": model, "architecture": cfg.architecture, "lstm": asdict(cfg.lstm)}


def pretrain_settings(cfg: ExperimentConfig) -> dict:
    p = asdict(cfg.pretrain)
    for unkeyed in ("checkpoint_every_n_steps", "log_every_n_steps"):
        p.pop(unkeyed)
    if p["keep_steps"] is None:  # which snapshots are kept changes no number
        p.pop("keep_steps")
    else:
        p["keep_steps"] = sorted(set(p["keep_steps"]))
    compiled = {"compile": True} if cfg.trainer.compile else {}  # its dropout masks differ from eager's
    return {"tokenizer": tokenizer_settings(cfg), "corpus": _corpus_settings(cfg), **network_settings(cfg),
            "pretrain": p, "seed": cfg.seed, "precision": cfg.trainer.precision,
            **_world_settings(cfg), **_matmul_settings(cfg), **compiled, **_loss_chunk_settings(cfg)}  # fmt: skip


def _loss_chunk_settings(cfg: ExperimentConfig) -> dict:
    """The chunked LM loss sums in another order (the last bits move); keys without it are as before
    the option existed."""
    return {"loss_chunk": cfg.trainer.loss_chunk} if cfg.trainer.loss_chunk else {}


def world_size(cfg: ExperimentConfig) -> int:
    """Processes training together: batch sizes are per process, so the global batch is this many
    times the configured one."""
    return cfg.trainer.devices * cfg.trainer.num_nodes


def _world_settings(cfg: ExperimentConfig) -> dict:
    """The pre-training's world size, left out at 1 so that one-process keys are as they were
    before it was keyed."""
    return {} if world_size(cfg) == 1 else {"world_size": world_size(cfg)}


def _matmul_settings(cfg: ExperimentConfig) -> dict:
    """TF32/bf16 matrix products change the numbers; the exact default is left out of keys (so they
    are as they were before the setting existed)."""
    m = cfg.trainer.float32_matmul_precision
    return {} if m == "highest" else {"float32_matmul_precision": m}


def finetune_settings(cfg: ExperimentConfig) -> dict:
    """Everything but the seed (seeds are subdirectories of one fine-tuning configuration)."""
    f = asdict(cfg.finetune)
    for unkeyed in ("seed", "data_dir", "num_workers", "prefetch_factor", "persistent_workers",
                    "checkpoint_every_n_steps"):  # fmt: skip
        f.pop(unkeyed)
    for option in ("score_train", "freeze_body"):  # keys of runs without them are as before the options existed
        if not f[option]:
            f.pop(option)
    if cfg.finetune.init == "pretrained":
        init = {"pretrain": pretrain_settings(cfg)}
    elif cfg.finetune.init == "none":
        init = {"none": {"tokenizer": tokenizer_settings(cfg), **network_settings(cfg)}}
    else:
        init = {"path": str(Path(cfg.finetune.init).resolve()),
                "dropout": {k: getattr(cfg.model, k) for k in ("embd_pdrop", "attn_pdrop", "resid_pdrop")}}  # fmt: skip
    data = _data_origin(cfg)
    t = cfg.trainer
    compiled = {"compile": True} if t.compile else {}  # inductor's dropout masks differ from eager's
    return {"finetune": f, "init": init, "data": data, "precision": t.precision,
            "devices": world_size(cfg),  # the global batch
            "finetune_format": _FINETUNE_FORMAT, **_matmul_settings(cfg), **compiled,
            **_loss_chunk_settings(cfg)}  # fmt: skip


def _tokenizer_label(cfg: ExperimentConfig) -> str:
    return "gpt1" if cfg.tokenizer.kind == "gpt1" else f"bpe{cfg.tokenizer.vocab_size}"


def _network_label(cfg: ExperimentConfig) -> str:
    m = cfg.model
    if cfg.architecture == "lstm":
        return f"lstm{cfg.lstm.n_layer}x{cfg.lstm.n_hidden}-e{m.n_embd}-ctx{m.n_ctx}"
    prefix = "bert" if cfg.architecture == "bert" else ""
    return f"{prefix}{m.n_layer}x{m.n_embd}-ctx{m.n_ctx}"


def _pretrain_label(cfg: ExperimentConfig) -> str:
    return f"{_network_label(cfg)}-{_tokenizer_label(cfg)}-{cfg.pretrain.max_steps}steps"


def _finetune_label(cfg: ExperimentConfig) -> str:
    f = cfg.finetune
    init = {"pretrained": "pretrained", "none": "scratch"}.get(f.init, "weights")
    if cfg.architecture != "transformer" and f.init in ("pretrained", "none"):
        init = f"{cfg.architecture}-{init}"
    transfer = "" if f.n_transfer < 0 else f"-transfer{f.n_transfer}"
    return f"{init}{transfer}-lm{f.lm_coef:g}-lr{f.lr:g}-{f.epochs}ep-{f.select}"


def _stage_dir(parent: Path, label: str, settings: dict) -> Path:
    return parent / f"{label}-{settings_key(settings)}"


def tokenizer_dir(cfg: ExperimentConfig) -> Path:
    return _stage_dir(cfg.run_dir / "tokenizer", _tokenizer_label(cfg), tokenizer_settings(cfg))


def pretrain_dir(cfg: ExperimentConfig) -> Path:
    return _stage_dir(cfg.run_dir / "pretrain", _pretrain_label(cfg), pretrain_settings(cfg))


def finetune_dir(cfg: ExperimentConfig) -> Path:
    """``runs/<name>/finetune/<task>/<label>-<key>/seed<seed>``."""
    parent = cfg.run_dir / "finetune" / cfg.finetune.task
    return _stage_dir(parent, _finetune_label(cfg), finetune_settings(cfg)) / f"seed{cfg.finetune_seed}"


def record_settings(stage_dir: Path, settings: dict) -> None:
    """Write ``settings.json`` (what the directory's key covers) once."""
    path = stage_dir / "settings.json"
    if not path.is_file():
        atomic_write_json(path, {"key": settings_key(settings), **settings})


def point_link(link: Path, target: Path) -> None:
    """Make ``link`` a relative symlink to ``target``, replacing an older link atomically."""
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_dir() and not link.is_symlink():
        print(f"note: {link} is a directory from an older gptbench layout; left as it is (the new run is {target})")
        return
    tmp = link.with_name(f".{link.name}.tmp")
    tmp.unlink(missing_ok=True)
    os.symlink(os.path.relpath(target, link.parent), tmp)
    os.replace(tmp, link)
