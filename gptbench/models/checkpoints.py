"""Reading and writing GPT weights in the formats researchers have.

- Hugging Face ``openai-gpt`` directories (config.json + model.safetensors or pytorch_model.bin);
  gptbench writes this format too, adding a ``gptbench`` entry to config.json that records how
  many rows of the embedding are special tokens.
- OpenAI's released ``model/`` directory: params_shapes.json + params_0..9.npy flat shards.
- Lightning checkpoints (.ckpt) written by gptbench's pre-training or fine-tuning.

Transformers' Conv1D layers store weights as (in, out); ``nn.Linear`` stores (out, in).
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np
import torch

from gptbench.io import atomic_write_json
from gptbench.models.gpt import GPT, GPTConfig
from gptbench.models.lstm import LSTMConfig, LSTMLM

LSTM_MODEL_TYPE = "gptbench-lstm"

_CONV1D = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
_LAYER_KEYS = (
    "attn.c_attn.weight", "attn.c_attn.bias", "attn.c_proj.weight", "attn.c_proj.bias",
    "ln_1.weight", "ln_1.bias", "mlp.c_fc.weight", "mlp.c_fc.bias",
    "mlp.c_proj.weight", "mlp.c_proj.bias", "ln_2.weight", "ln_2.bias",
)  # fmt: skip  (also the order of OpenAI's params_shapes.json within a layer)


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded into the requested model."""


def load_pretrained(path: str | Path, dropout: dict | None = None, **overrides):
    """Dispatch on what ``path`` holds: a GPT, or an LSTMLM for gptbench's LSTM exports and
    checkpoints. ``dropout``: ``*_pdrop`` values, each network taking those it has; ``overrides``
    set other config fields."""
    path = Path(path)
    if path.is_file() and path.suffix == ".ckpt":
        return _load_lightning_ckpt(path, dropout or {}, overrides)
    if (path / "config.json").is_file():
        if _read_config_json(path).get("model_type") == LSTM_MODEL_TYPE:
            return _load_lstm_dir(path, dropout or {}, overrides)
        return _load_hf_dir(path, {**(dropout or {}), **overrides})
    if (path / "params_shapes.json").is_file():
        return _load_openai_npy(path, {**(dropout or {}), **overrides})
    raise CheckpointError(
        f"{path}: not a recognised checkpoint (expected a Hugging Face directory with config.json, "
        "OpenAI's model/ directory with params_shapes.json, or a gptbench .ckpt file)"
    )


def load_gpt(path: str | Path, **overrides) -> GPT:
    """``GPT.from_pretrained``: like :func:`load_pretrained`, for checkpoints that hold a GPT."""
    model = load_pretrained(path, **overrides)
    if not isinstance(model, GPT):
        raise CheckpointError(f"{path}: holds a {type(model).__name__}, not a GPT; load it with "
                              "gptbench.models.load_pretrained")  # fmt: skip
    return model


def _read_config_json(path: Path) -> dict:
    try:
        cfg = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}/config.json: not a readable JSON file ({e})") from None
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{path}/config.json: expected a JSON object")
    return cfg


def _config_with(config_cls, values: dict, dropout: dict, overrides: dict, source: str):
    """``config_cls`` from recorded ``values``, the dropout fields it has, and ``overrides``."""
    known = {f.name for f in fields(config_cls)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise CheckpointError(f"{source}: {unknown} are not fields of {config_cls.__name__}")
    try:
        return config_cls(**{**{k: v for k, v in values.items() if k in known},
                             **{k: v for k, v in dropout.items() if k in known}, **overrides})  # fmt: skip
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{source}: {e}") from None


# ---- Hugging Face format -------------------------------------------------------------------
def save_pretrained(model, directory: str | Path) -> None:
    """A GPT: config.json + model.safetensors loadable by transformers.OpenAIGPTLMHeadModel.
    An LSTMLM: the same two files in gptbench's own format (``model_type`` gptbench-lstm)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if isinstance(model, LSTMLM):
        _write_safetensors(model.state_dict(), directory)
        atomic_write_json(directory / "config.json", {"model_type": LSTM_MODEL_TYPE, **asdict(model.config)})
        return
    c = model.config
    _write_safetensors({f"transformer.{k}": _swap_conv1d(k, v) for k, v in model.state_dict().items()}, directory)
    atomic_write_json(
        directory / "config.json",
        {
            "architectures": ["OpenAIGPTLMHeadModel"],
            "model_type": "openai-gpt",
            "afn": "gelu",  # transformers maps OpenAI GPT's "gelu" to the tanh approximation
            "vocab_size": c.n_tokens,  # the whole embedding table, special rows included
            "n_positions": c.n_ctx,
            "n_embd": c.n_embd,
            "n_layer": c.n_layer,
            "n_head": c.n_head,
            "embd_pdrop": c.embd_pdrop,
            "attn_pdrop": c.attn_pdrop,
            "resid_pdrop": c.resid_pdrop,
            "layer_norm_epsilon": c.layer_norm_eps,
            "initializer_range": c.initializer_range,
            "tie_word_embeddings": True,
            "gptbench": {"vocab_size": c.vocab_size, "n_special": c.n_special},
        },
    )


def _write_safetensors(state: dict[str, torch.Tensor], directory: Path) -> None:
    from safetensors.torch import save_file

    tmp = directory / ".model.safetensors.tmp"
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp), metadata={"format": "pt"})
    tmp.replace(directory / "model.safetensors")


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    for name in ("model.safetensors", "pytorch_model.bin"):
        file = path / name
        if not file.is_file():
            continue
        try:
            if name == "model.safetensors":
                from safetensors.torch import load_file

                return load_file(str(file))
            return torch.load(file, map_location="cpu", weights_only=True)
        except Exception as e:  # truncated or corrupt weights
            raise CheckpointError(f"{file}: unreadable weights ({type(e).__name__}: "
                                  f"{str(e).splitlines()[0] if str(e) else 'no detail'})") from None  # fmt: skip
    raise CheckpointError(f"{path}: no model.safetensors or pytorch_model.bin")


def _swap_conv1d(key: str, value: torch.Tensor) -> torch.Tensor:
    """Conv1D (in, out) <-> Linear (out, in); the transpose is its own inverse."""
    return value.t() if key.endswith(".weight") and any(m in key for m in _CONV1D) else value


def _load_hf_dir(path: Path, overrides: dict) -> GPT:
    cfg = _read_config_json(path)
    if cfg.get("afn", "gelu") != "gelu":
        raise CheckpointError(f"{path}/config.json: afn={cfg['afn']!r}, only 'gelu' is supported")
    ours = cfg.get("gptbench")
    try:
        vocab_size = ours["vocab_size"] if ours else cfg["vocab_size"]
        config_kwargs = dict(
            vocab_size=vocab_size,
            n_special=ours["n_special"] if ours else GPTConfig.n_special,
            n_ctx=cfg["n_positions"],
            n_embd=cfg["n_embd"],
            n_layer=cfg["n_layer"],
            n_head=cfg["n_head"],
            embd_pdrop=cfg.get("embd_pdrop", GPTConfig.embd_pdrop),
            attn_pdrop=cfg.get("attn_pdrop", GPTConfig.attn_pdrop),
            resid_pdrop=cfg.get("resid_pdrop", GPTConfig.resid_pdrop),
            layer_norm_eps=cfg.get("layer_norm_epsilon", GPTConfig.layer_norm_eps),
            initializer_range=cfg.get("initializer_range", GPTConfig.initializer_range),
        )
    except KeyError as e:
        raise CheckpointError(f"{path}/config.json: missing key {e.args[0]!r}") from None
    config = _config_with(GPTConfig, config_kwargs, {}, overrides, f"{path}/config.json")
    raw = _read_safetensors(path)
    # Checkpoints of OpenAIGPTLMHeadModel prefix 'transformer.'; those of OpenAIGPTModel do not.
    state = {k.removeprefix("transformer."): v for k, v in raw.items() if k != "lm_head.weight"}
    state = {k: _swap_conv1d(k, v) for k, v in state.items()}
    return _build(config, state, source=str(path))


# ---- OpenAI's released .npy shards ---------------------------------------------------------
def _load_openai_npy(path: Path, overrides: dict) -> GPT:
    shapes = json.loads((path / "params_shapes.json").read_text(encoding="utf-8"))
    if len(shapes) < 2 or (len(shapes) - 2) % len(_LAYER_KEYS):
        raise CheckpointError(
            f"{path}/params_shapes.json: {len(shapes)} arrays; expected positions, tokens, "
            f"then {len(_LAYER_KEYS)} per layer"
        )
    shard_paths = sorted(path.glob("params_*.npy"), key=lambda p: int(p.stem.split("_")[1]))
    if not shard_paths:
        raise CheckpointError(f"{path}: params_shapes.json found but no params_*.npy shards")
    flat = np.concatenate([np.load(p).reshape(-1) for p in shard_paths])
    sizes = [int(np.prod(s)) for s in shapes]
    if flat.size != sum(sizes):
        raise CheckpointError(
            f"{path}: shards hold {flat.size} values, params_shapes.json needs {sum(sizes)}"
        )
    arrays = [a.reshape(s) for a, s in zip(np.split(flat, np.cumsum(sizes)[:-1]), shapes)]
    names = ["positions_embed.weight", "tokens_embed.weight"] + [
        f"h.{i}.{k}" for i in range((len(shapes) - 2) // len(_LAYER_KEYS)) for k in _LAYER_KEYS
    ]
    state = {}
    for name, arr in zip(names, arrays):
        t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
        if t.dim() == 3:  # width-1 convolution (1, in, out) -> Linear (out, in)
            t = t[0].t()
        state[name] = t
    n_ctx, n_embd = shapes[0]
    recorded = {"vocab_size": shapes[1][0], "n_ctx": n_ctx, "n_embd": n_embd, "n_layer": len(names[2:]) // len(_LAYER_KEYS)}
    # n_head is not recorded in the shapes; the paper's 12 is the default
    config = _config_with(GPTConfig, recorded, {}, overrides, f"{path}/params_shapes.json")
    return _build(config, state, source=str(path))


# ---- gptbench Lightning checkpoints ---------------------------------------------------------
def _load_lightning_ckpt(path: Path, dropout: dict, overrides: dict):
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, not a torch file, or holding objects that are not plain data
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else 'no detail'})") from None  # fmt: skip
    spec = ckpt.get("model_config") or ckpt.get("gpt_config") if isinstance(ckpt, dict) else None
    if not isinstance(spec, dict) or "state_dict" not in ckpt:
        raise CheckpointError(f"{path}: not a gptbench checkpoint (no 'model_config'/'state_dict')")
    state = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    if spec.get("arch") == "lstm":
        return _build_lstm(_config_with(LSTMConfig, spec, dropout, overrides, str(path)), state, str(path))
    return _build(_config_with(GPTConfig, spec, dropout, overrides, str(path)), state, source=str(path))


# ---- gptbench's LSTM -------------------------------------------------------------------------
def _load_lstm_dir(path: Path, dropout: dict, overrides: dict) -> LSTMLM:
    config = _config_with(LSTMConfig, _read_config_json(path), dropout, overrides, f"{path}/config.json")
    return _build_lstm(config, _read_safetensors(path), str(path))


def _build_lstm(config: LSTMConfig, state: dict[str, torch.Tensor], source: str) -> LSTMLM:
    model = LSTMLM(config)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise CheckpointError(f"{source}: checkpoint does not match {config}: {str(e).splitlines()[0]}") from None
    return model


# ---- shared ----------------------------------------------------------------------------------
def _build(config: GPTConfig, state: dict[str, torch.Tensor], source: str) -> GPT:
    """Create a model and copy ``state`` in, checking every key and shape.

    The token embedding may hold only the BPE rows (released weights): the special-token rows
    then keep their fresh N(0, 0.02) initialisation, as in the paper's fine-tuning.
    """
    model = GPT(config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(k for k in set(state) - set(expected) if not k.endswith(".attn.bias"))
    if missing or unexpected:
        raise CheckpointError(
            f"{source}: checkpoint does not match GPTConfig(n_layer={config.n_layer}); "
            f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}"
        )
    with torch.no_grad():
        for key, target in expected.items():
            value = state[key]
            if key == "tokens_embed.weight" and value.shape == (config.vocab_size, config.n_embd):
                target[: config.vocab_size].copy_(value)
                continue
            if value.shape != target.shape:
                raise CheckpointError(
                    f"{source}: '{key}' has shape {tuple(value.shape)}, "
                    f"expected {tuple(target.shape)} for {config}"
                )
            target.copy_(value)
    return model
