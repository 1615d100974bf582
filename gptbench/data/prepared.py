"""Prepared data: everything a run reads, tokenized once, for machines without the text pipeline.

``gptbench prepare PRESET out=DIR`` writes into DIR the tokenizer, the corpus splits (token arrays
at the smallest dtype), every task split a run uses (each split's FULL records, encoded with the
run's tokenizer, context and input format; the runs draw their subsets and holdout slices from
them by index, so a subset is the one a run from the raw files draws, by construction), and the
TensorBoard sample prompts, encoded; ``manifest.json`` lists what each file is, the source files
it came from with their sha256, the tokenizer's fingerprint and every file's size and hash.

With ``prepared=DIR`` (or ``GPTBENCH_PREPARED=DIR``) pre-training and fine-tuning read only DIR:
spaCy and ftfy are never imported, and the corpus and benchmark data need not exist. Whatever a
run needs and DIR lacks is a one-line error naming what to prepare; a DIR whose files do not
match its manifest, or made from other books or with another tokenizer, is refused.
"""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gptbench.errors import CorpusError

MANIFEST = "manifest.json"
_FORMAT = 1


class PreparedError(CorpusError):
    """A prepared directory that cannot serve the run (missing, tampered, or made for other settings)."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def json_key(*parts) -> str:
    """A short hash of JSON-able parts: the name of one prepared item."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def task_item_key(task: str, split: str, source: str | None, tokenizer_fp: str, n_ctx: int, input_format: str) -> str:
    return json_key("task", task, split, source, tokenizer_fp, n_ctx, input_format)


def absence_key(task: str, split: str, source: str | None) -> str:
    return json_key("absent", task, split, source)


def corpus_item_key(tokenizer_fp: str, val_books: int, max_bytes: int | None) -> str:
    return json_key("corpus", tokenizer_fp, val_books, max_bytes)


@dataclass
class PreparedData:
    """A verified prepared directory (see :func:`open_prepared`)."""

    root: Path
    manifest: dict

    # ---- what the run keys see ----------------------------------------------------------------
    @property
    def corpus_fingerprint(self) -> str | None:
        """The corpus fingerprint run keys use (``run_identity``), as computed from the books."""
        return self.manifest["corpus_fingerprint"]

    @property
    def data(self) -> str:
        """Where the task data came from, "local" or "hub" (a fine-tuning key covers it)."""
        return self.manifest["data"]

    def _missing(self, what: str) -> PreparedError:
        return PreparedError(f"prepared={self.root}: it holds no {what}; run `gptbench prepare` with the run's "
                             "preset, tasks and overrides (without prepared=) to add it")  # fmt: skip

    # ---- the tokenizer ------------------------------------------------------------------------
    def tokenizer(self, settings: dict):
        """The prepared tokenizer made with these ``tokenizer_settings``; refused when the
        directory's tokenizer was made with others (another kind, vocabulary or corpus)."""
        from gptbench.data.tokenizer import Tokenizer

        entries = self.manifest["tokenizers"]
        match = next((e for e in entries.values() if e["settings"] == settings), None)
        if match is None:
            made = "; ".join(json.dumps(e["settings"], sort_keys=True) for e in entries.values())
            raise PreparedError(f"prepared={self.root}: its tokenizer was made with {made}, the config asks for "
                                f"{json.dumps(settings, sort_keys=True)}; prepare again with this config")  # fmt: skip
        tokenizer = Tokenizer.load(self.root / match["dir"])
        if tokenizer.fingerprint != match["fingerprint"]:
            raise PreparedError(f"prepared={self.root}: {match['dir']} has fingerprint {tokenizer.fingerprint}, "
                                f"the manifest says {match['fingerprint']}")  # fmt: skip
        return tokenizer

    # ---- the corpus ---------------------------------------------------------------------------
    def corpus(self, tokenizer_fp: str, val_books: int, max_bytes: int | None) -> dict[str, np.ndarray]:
        """Memory-mapped token arrays {'train', 'val'} of the corpus split these settings make."""
        entry = self.manifest["corpora"].get(corpus_item_key(tokenizer_fp, val_books, max_bytes))
        if entry is None:
            raise self._missing(f"corpus for corpus.val_books={val_books}, corpus.max_bytes={max_bytes} and "
                                f"tokenizer {tokenizer_fp}")  # fmt: skip
        return {split: np.load(self.root / entry[split], mmap_mode="r") for split in ("train", "val")}

    # ---- task splits --------------------------------------------------------------------------
    def absent_reason(self, task: str, split: str, source: str | None) -> str | None:
        """Why a split's data was absent where the directory was prepared (None when present)."""
        entry = self.manifest["absent"].get(absence_key(task, split, source))
        return entry["reason"] if entry else None

    def task_split(self, task: str, split: str, source: str | None, tokenizer_fp: str, n_ctx: int, input_format: str):
        """(the split's full records encoded, dropped rows, where they came from);
        raises SplitUnavailable for a split that was absent where the directory was prepared."""
        import datasets

        from gptbench.tasks import SplitUnavailable

        why = self.absent_reason(task, split, source)
        if why is not None:
            raise SplitUnavailable(why)
        entry = self.manifest["tasks"].get(task_item_key(task, split, source, tokenizer_fp, n_ctx, input_format))
        if entry is None:
            raise self._missing(f"task {task} split {split!r}" + (f" (from {source})" if source else "")
                                + f" at n_ctx={n_ctx}, input format {input_format}, tokenizer {tokenizer_fp}")  # fmt: skip
        data = datasets.load_from_disk(str(self.root / entry["dir"]))
        return data, entry["dropped"], entry["where"]

    def data_source(self, task: str) -> str:
        """Where the task's data was read from when the directory was prepared."""
        entry = next((e for e in self.manifest["tasks"].values() if e["task"] == task), None)
        if entry is None:
            raise self._missing(f"split of task {task}")
        return entry["data_source"]

    # ---- the sample prompts -------------------------------------------------------------------
    def prompts(self, tokenizer):
        """The tokenizer with its ``encode`` answered from the prepared sample prompts."""
        entry = self.manifest["prompts"].get(tokenizer.fingerprint)
        if entry is None:
            raise self._missing(f"sample prompts for tokenizer {tokenizer.fingerprint}")
        return PreEncoded(tokenizer, json.loads((self.root / entry).read_text()), self.root)


class PreEncoded:
    """A tokenizer whose ``encode`` reads the texts encoded beforehand (and refuses any other);
    everything else is the tokenizer's own."""

    def __init__(self, tokenizer, table: dict[str, list[int]], root: Path):
        self._tokenizer, self._table, self._root = tokenizer, table, root

    def encode(self, text: str) -> list[int]:
        if text not in self._table:
            raise PreparedError(f"prepared={self._root}: the text {text!r} was not encoded when it was prepared")
        return list(self._table[text])

    def __getattr__(self, name):
        return getattr(self._tokenizer, name)

    def __len__(self) -> int:
        return len(self._tokenizer)


def verify(root: Path, manifest: dict) -> None:
    """Refuse a directory whose files are missing or differ from the manifest (named)."""
    for rel, expected in manifest["files"].items():
        path = root / rel
        if not path.is_file():
            raise PreparedError(f"prepared={root}: {rel} is missing (truncated copy?); copy the directory again")
        size = path.stat().st_size
        if size != expected["bytes"]:
            raise PreparedError(f"prepared={root}: {rel} has {size:,} bytes, the manifest says {expected['bytes']:,}")
        if sha256_file(path) != expected["sha256"]:
            raise PreparedError(f"prepared={root}: {rel} does not match its sha256 in the manifest (corrupted copy?)")


@functools.lru_cache(maxsize=8)
def _verified(root: Path, manifest_mtime: int, signature: tuple) -> PreparedData:
    manifest = json.loads((root / MANIFEST).read_text())
    verify(root, manifest)
    return PreparedData(root, manifest)


def open_prepared(path: str | Path) -> PreparedData:
    """The prepared directory at ``path``, its files checked against the manifest (hashed once per
    process while no file's size or modification time changes)."""
    root = Path(path).expanduser().resolve()
    if not (root / MANIFEST).is_file():
        raise PreparedError(f"prepared={path}: no {MANIFEST} there (make one with `gptbench prepare`)")
    manifest = json.loads((root / MANIFEST).read_text())
    if manifest.get("format") != _FORMAT:
        raise PreparedError(f"prepared={root}: manifest format {manifest.get('format')}, this gptbench reads "
                            f"{_FORMAT}; prepare again")  # fmt: skip
    stats = ((root / rel).stat() if (root / rel).is_file() else None for rel in manifest["files"])
    signature = tuple((s.st_size, s.st_mtime_ns) if s else None for s in stats)
    return _verified(root, (root / MANIFEST).stat().st_mtime_ns, signature)


def check_corpus_matches(prepared: PreparedData, corpus_path: str | None) -> None:
    """Where the books are present too, refuse a prepared directory made from other books."""
    from gptbench.run_identity import _corpus_fingerprint

    here = _corpus_fingerprint(corpus_path)
    if here is not None and prepared.corpus_fingerprint is not None and here != prepared.corpus_fingerprint:
        raise PreparedError(f"prepared={prepared.root} was made from other books than corpus.path={corpus_path} "
                            f"(fingerprints {prepared.corpus_fingerprint} and {here}); prepare again")  # fmt: skip


# ---- writing ------------------------------------------------------------------------------------
class PreparedWriter:
    """Builds a prepared directory item by item; :meth:`finish` writes the manifest last."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        old = self.root / MANIFEST
        self.manifest = json.loads(old.read_text()) if old.is_file() else {
            "format": _FORMAT, "corpus_fingerprint": None, "data": None, "tokenizers": {}, "corpora": {},
            "tasks": {}, "absent": {}, "prompts": {}, "sources": {}, "files": {},
        }  # fmt: skip

    def agree(self, key: str, value, what: str) -> None:
        """Record a setting of the whole directory; one that differs from the directory's is refused."""
        if self.manifest[key] is not None and self.manifest[key] != value:
            raise PreparedError(f"out={self.root}: it holds data prepared with {key}={self.manifest[key]}, this "
                                f"config gives {value} ({what}); use another out= directory")  # fmt: skip
        self.manifest[key] = value

    def _sources(self, paths: list[Path]) -> None:
        for p in paths:
            self.manifest["sources"].setdefault(str(p.resolve()), sha256_file(p))

    def add_tokenizer(self, tokenizer, settings: dict, corpus_fingerprint: str | None) -> None:
        self.agree("corpus_fingerprint", corpus_fingerprint, "another corpus")
        fp = tokenizer.fingerprint
        if fp not in self.manifest["tokenizers"]:
            tokenizer.save(self.root / f"tokenizer-{fp}")
            self.manifest["tokenizers"][fp] = {"dir": f"tokenizer-{fp}", "fingerprint": fp, "settings": settings}

    def add_corpus(self, tokens: dict[str, np.ndarray], books, tokenizer, val_books: int, max_bytes: int | None) -> None:
        key = corpus_item_key(tokenizer.fingerprint, val_books, max_bytes)
        if key in self.manifest["corpora"]:
            return
        entry = {"val_books": val_books, "max_bytes": max_bytes, "tokenizer": tokenizer.fingerprint}
        for split in ("train", "val"):
            rel = f"corpus-{key}/{split}.npy"
            (self.root / rel).parent.mkdir(parents=True, exist_ok=True)
            np.save(self.root / rel, tokens[split])  # the cache's dtype: the smallest that holds the vocabulary
            entry[split] = rel
            entry[f"{split}_books"] = [p.name for p in getattr(books, split)]
            entry[f"{split}_tokens"] = int(tokens[split].size)
        self._sources([*books.train, *books.val])
        self.manifest["corpora"][key] = entry

    def add_absent(self, task: str, split: str, source: str | None, reason: str) -> None:
        self.manifest["absent"][absence_key(task, split, source)] = {"task": task, "split": split, "source": source,
                                                                     "reason": reason}  # fmt: skip

    def add_task_split(self, task: str, split: str, source: str | None, tokenizer, n_ctx: int, input_format: str,
                       data, dropped: int, where: str, data_source: str, source_files: list[Path]) -> None:  # fmt: skip
        key = task_item_key(task, split, source, tokenizer.fingerprint, n_ctx, input_format)
        if key in self.manifest["tasks"]:
            return
        rel = f"tasks/{task}/{split}-{key}"
        shutil.rmtree(self.root / rel, ignore_errors=True)
        data.save_to_disk(str(self.root / rel))
        self._sources(source_files)
        self.manifest["tasks"][key] = {"task": task, "split": split, "source": source, "tokenizer": tokenizer.fingerprint,
                                       "n_ctx": n_ctx, "input_format": input_format, "dir": rel, "examples": len(data),
                                       "dropped": dropped, "where": where, "data_source": data_source,
                                       "sources": sorted(str(p.resolve()) for p in source_files)}  # fmt: skip

    def add_prompts(self, tokenizer, texts: list[str]) -> None:
        rel = f"prompts-{tokenizer.fingerprint}.json"
        table = {t: tokenizer.encode(t) for t in texts}
        (self.root / rel).write_text(json.dumps(table, indent=1))
        self.manifest["prompts"][tokenizer.fingerprint] = rel

    def finish(self) -> int:
        """Record every file's size and hash, write the manifest; returns the directory's bytes."""
        files = sorted(p for p in self.root.rglob("*") if p.is_file() and p.name != MANIFEST)
        self.manifest["files"] = {p.relative_to(self.root).as_posix(): {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
                                  for p in files}  # fmt: skip
        tmp = self.root / f".{MANIFEST}.tmp"
        tmp.write_text(json.dumps(self.manifest, indent=1, sort_keys=True))
        tmp.replace(self.root / MANIFEST)
        return sum(f["bytes"] for f in self.manifest["files"].values()) + (self.root / MANIFEST).stat().st_size


def sample_texts() -> list[str]:
    """Every text the TensorBoard samples encode: the prompts, and the masked texts' pieces."""
    from gptbench.evaluation.fill_mask import MASK_TEXT
    from gptbench.training.pretrain import LogSamples

    pieces = [p for text in LogSamples.MASKED for p in text.split(MASK_TEXT) if p.strip()]
    return list(dict.fromkeys([*LogSamples.PROMPTS, *pieces]))


def _task_source_files(data_root: Path | None, subdir: str) -> list[Path]:
    folder = data_root / subdir if data_root else None
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder and folder.is_dir() else []


def prepare_task(writer: PreparedWriter, cfg, tokenizer) -> None:
    """Every split a fine-tune of ``cfg`` reads (training, evaluation, labelled test), full and encoded."""
    from gptbench.data.task_data import TaskDataModule, absent_reason, encode_cached, read_split
    from gptbench.tasks import SplitUnavailable, get_task

    spec, f = get_task(cfg.finetune.task), cfg.finetune
    input_format = "bert" if cfg.architecture == "bert" else "gpt"
    module = TaskDataModule(spec, tokenizer, data_dir=f.data_dir or "hub", splits=f.splits)  # where the data is
    writer.agree("data", "local" if f.data_dir else "hub", "task data from another place")
    for split in dict.fromkeys([spec.train_split, *spec.eval_splits, *spec.test_splits]):
        source = f.splits.get(split)
        why = absent_reason(spec, split, module.data_root, f.splits)
        try:
            if why is None:
                records, dropped, where = read_split(spec, split, module.data_root, source)
        except SplitUnavailable as e:
            why = str(e)
        if why is not None:
            writer.add_absent(spec.name, split, source, why)
            continue
        data = encode_cached(spec, split, records, tokenizer, cfg.model.n_ctx, Path(cfg.cache_dir), input_format)
        writer.add_task_split(spec.name, split, source, tokenizer, cfg.model.n_ctx, input_format, data, dropped,
                              where, module.data_source, _task_source_files(module.data_root, spec.data_subdir))  # fmt: skip


def prepare_config(writer: PreparedWriter, cfg, with_task: bool) -> None:
    """The tokenizer, sample prompts, corpus (for a fine-tune from a pre-training) and task of one run."""
    from gptbench.config import require_dir
    from gptbench.data.corpus import cached_corpus, split_books
    from gptbench.data.tokenizer_stage import run_tokenizer
    from gptbench.run_identity import _corpus_fingerprint, tokenizer_settings

    tokenizer = run_tokenizer(cfg)
    writer.add_tokenizer(tokenizer, tokenizer_settings(cfg), _corpus_fingerprint(cfg.corpus.path))
    if tokenizer.fingerprint not in writer.manifest["prompts"]:
        writer.add_prompts(tokenizer, sample_texts())
    if cfg.finetune.init == "pretrained" or not with_task:
        root = require_dir(cfg.corpus.path, "corpus.path", "GPTBENCH_CORPUS", "a folder of .txt books")
        c = cfg.corpus
        if corpus_item_key(tokenizer.fingerprint, c.val_books, c.max_bytes) not in writer.manifest["corpora"]:
            books = split_books(root, c.val_books, c.max_bytes)
            writer.add_corpus(cached_corpus(root, books, tokenizer, Path(cfg.cache_dir)), books, tokenizer,
                              c.val_books, c.max_bytes)  # fmt: skip
    if with_task:
        prepare_task(writer, cfg, tokenizer)


def prepare(out: str | Path, pretrainings: list, finetunes: list) -> int:
    """Write (or add to) the prepared directory ``out`` for the pre-trainings and fine-tunes of
    these configs; returns its size in bytes."""
    writer = PreparedWriter(Path(out))
    for cfg, with_task in [*((c, False) for c in pretrainings), *((c, True) for c in finetunes)]:
        if cfg.prepared:
            raise PreparedError(f"prepare reads the raw files: unset prepared= (GPTBENCH_PREPARED), got {cfg.prepared}")
        prepare_config(writer, cfg, with_task)
    return writer.finish()


def reproduction_configs(preset: str, overrides: list[str], tasks: list[str] | None) -> tuple[list, list]:
    """(pre-training configs, fine-tuning configs) of the preset's ``reproduce`` sweeps (the
    zero-shot curves left out), limited to ``tasks`` if given; each of ``tasks`` is also prepared
    as ``gptbench finetune PRESET task=TASK`` reads it. (A fine-tune from a pre-training adds that
    pre-training's corpus.)"""
    from gptbench.config import experiment_files, load_config
    from gptbench.suite.sweep import expand, load_table, split_overrides

    base = load_config(preset, overrides)
    finetunes = []
    for sweep in base.reproduce.sweeps:
        if sweep in experiment_files("zero_shot_curve"):
            continue
        keys, experiment = split_overrides([*base.reproduce.arguments(sweep), *overrides])
        table = load_table(sweep)
        wanted = [t for t in tasks if t in table.tasks] if tasks else keys.get("tasks")
        if tasks and not wanted:
            continue
        runs = expand(table, preset, experiment, keys.get("seeds"), wanted, keys.get("variants"),
                      task_seeds=keys.get("task_seeds"), task_overrides=keys.get("task_overrides"))  # fmt: skip
        finetunes += [run.config() for run in runs]
    finetunes += [load_config(preset, [*overrides, f"finetune.task={t}"]) for t in tasks or ()]
    return [base], finetunes
