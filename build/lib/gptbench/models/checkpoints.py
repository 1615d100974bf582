"""Reading and writing the networks' weights in the formats researchers have.

- Hugging Face ``openai-gpt`` directories (config.json + model.safetensors or pytorch_model.bin);
  gptbench writes this format too, adding a ``gptbench`` entry to config.json that records how
  many rows of the embedding are special tokens.
- Hugging Face ``bert`` masked-LM directories (BertForMaskedLM), for the BERT encoder; the same
  ``gptbench`` entry when gptbench wrote them.
- OpenAI's released ``model/`` directory: params_shapes.json + params_0..9.npy flat shards.
- Lightning checkpoints (.ckpt) written by gptbench's pre-training or fine-tuning.
- gptbench's own format for the LSTM (config.json with ``model_type`` gptbench-lstm).

Transformers' Conv1D layers store weights as (in, out); ``nn.Linear`` stores (out, in).
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np
import torch

from gptbench.io import atomic_write_json
from gptbench.models.bert import BERT, BertConfig
from gptbench.models.gpt import GPT, GPTConfig
from gptbench.models.lstm import LSTMConfig, LSTMLM

LSTM_MODEL_TYPE = "gptbench-lstm"
BERT_MODEL_TYPE = "bert"  # Hugging Face's

_CONV1D = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
_LAYER_KEYS = (
    "attn.c_attn.weight", "attn.c_attn.bias", "attn.c_proj.weight", "attn.c_proj.bias",
    "ln_1.weight", "ln_1.bias", "mlp.c_fc.weight", "mlp.c_fc.bias",
    "mlp.c_proj.weight", "mlp.c_proj.bias", "ln_2.weight", "ln_2.bias",
)  # fmt: skip  (also the order of OpenAI's params_shapes.json within a layer)
_TOKEN_ROWS = ("tokens_embed.weight", "mlm_bias")  # one row per token: BPE vocabulary, then special tokens

# Our BERT's modules -> Hugging Face BertForMaskedLM's ({i}: the layer). Not listed: the fused attention
# projection h.{i}.attn.c_attn (HF's separate query, key, value) and the MLM output bias (a parameter).
_BERT_HF_NAMES = {
    "tokens_embed": "bert.embeddings.word_embeddings",
    "positions_embed": "bert.embeddings.position_embeddings",
    "segments_embed": "bert.embeddings.token_type_embeddings",
    "ln_embd": "bert.embeddings.LayerNorm",
    "h.{i}.attn.c_proj": "bert.encoder.layer.{i}.attention.output.dense",
    "h.{i}.ln_1": "bert.encoder.layer.{i}.attention.output.LayerNorm",
    "h.{i}.mlp.c_fc": "bert.encoder.layer.{i}.intermediate.dense",
    "h.{i}.mlp.c_proj": "bert.encoder.layer.{i}.output.dense",
    "h.{i}.ln_2": "bert.encoder.layer.{i}.output.LayerNorm",
    "mlm_dense": "cls.predictions.transform.dense",
    "mlm_ln": "cls.predictions.transform.LayerNorm",
    "pooler_dense": "bert.pooler.dense",
}
_BERT_OPTIONAL = ("pooler_dense.weight", "pooler_dense.bias")  # BertForMaskedLM saves no pooler


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded into the requested model."""


def load_pretrained(path: str | Path, dropout: dict | None = None, **overrides):
    """Dispatch on what ``path`` holds: a GPT, an LSTMLM for gptbench's LSTM exports and checkpoints,
    or a BERT for BERT masked-LM directories and checkpoints. ``dropout``: ``*_pdrop`` values, each
    network taking those it has; ``overrides`` set other config fields."""
    path = Path(path)
    if path.is_file() and path.suffix == ".ckpt":
        return _load_lightning_ckpt(path, dropout or {}, overrides)
    if (path / "config.json").is_file():
        model_type = _read_config_json(path).get("model_type")
        if model_type == LSTM_MODEL_TYPE:
            return _load_lstm_dir(path, dropout or {}, overrides)
        if model_type == BERT_MODEL_TYPE:
            return _load_hf_bert_dir(path, dropout or {}, overrides)
        return _load_hf_dir(path, {**(dropout or {}), **overrides})
    if (path / "params_shapes.json").is_file():
        return _load_openai_npy(path, {**(dropout or {}), **overrides})
    raise CheckpointError(
        f"{path}: not a recognised checkpoint (expected a Hugging Face directory with config.json, "
        "OpenAI's model/ directory with params_shapes.json, or a gptbench .ckpt file)"
    )


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
    A BERT: the same two files, loadable by transformers.BertForMaskedLM (see :func:`_save_hf_bert`).
    An LSTMLM: the same two files in gptbench's own format (``model_type`` gptbench-lstm)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if isinstance(model, LSTMLM):
        _write_safetensors(model.state_dict(), directory)
        atomic_write_json(directory / "config.json", {"model_type": LSTM_MODEL_TYPE, **asdict(model.config)})
        return
    if isinstance(model, BERT):
        _save_hf_bert(model, directory)
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
    return _build(GPT(config), state, source=str(path))


# ---- Hugging Face BERT (BertForMaskedLM) ----------------------------------------------------
def _hf_bert_keys(key: str) -> tuple[str, ...]:
    """The Hugging Face keys that hold our BERT's state key ``key``: three (query, key, value) for the
    fused attention projection, whose rows stack them in that order; one otherwise."""
    if key == "mlm_bias":
        return ("cls.predictions.bias",)
    module, param = key.rsplit(".", 1)
    if module.startswith("h."):
        _, i, sub = module.split(".", 2)
        if sub == "attn.c_attn":
            return tuple(f"bert.encoder.layer.{i}.attention.self.{qkv}.{param}" for qkv in ("query", "key", "value"))
        return (f"{_BERT_HF_NAMES['h.{i}.' + sub].format(i=i)}.{param}",)
    return (f"{_BERT_HF_NAMES[module]}.{param}",)


def _save_hf_bert(model: BERT, directory: Path) -> None:
    """config.json + model.safetensors loadable by transformers.BertForMaskedLM (and, with the
    pooler, BertModel / BertForSequenceClassification). The MLM decoder is tied to the word
    embedding, so it is not written, as transformers writes it."""
    state = {}
    for key, value in model.state_dict().items():
        names = _hf_bert_keys(key)
        state.update(zip(names, (part.clone() for part in value.chunk(len(names)))))  # no shared storage
    _write_safetensors(state, directory)
    c = model.config
    atomic_write_json(
        directory / "config.json",
        {
            "architectures": ["BertForMaskedLM"],
            "model_type": BERT_MODEL_TYPE,
            "vocab_size": c.n_tokens,  # the whole embedding table, special rows included
            "hidden_size": c.n_embd,
            "num_hidden_layers": c.n_layer,
            "num_attention_heads": c.n_head,
            "intermediate_size": c.n_inner or 4 * c.n_embd,
            "hidden_act": "gelu",  # the erf GELU, in transformers' BERT
            "hidden_dropout_prob": c.resid_pdrop,  # one rate for the embedding and the sublayer outputs
            "attention_probs_dropout_prob": c.attn_pdrop,
            "max_position_embeddings": c.n_ctx,
            "type_vocab_size": c.type_vocab_size,
            "layer_norm_eps": c.layer_norm_eps,
            "initializer_range": c.initializer_range,
            "tie_word_embeddings": True,
            "pad_token_id": 0,
            "gptbench": {"vocab_size": c.vocab_size, "n_special": c.n_special},
        },
    )


def _load_hf_bert_dir(path: Path, dropout: dict, overrides: dict) -> BERT:
    """A BERT masked LM (BertForMaskedLM, BertForPreTraining) directory. The MLM head is required;
    a missing pooler keeps its fresh initialisation. Without gptbench's entry in config.json the
    whole table is vocabulary (n_special=0)."""
    cfg = _read_config_json(path)
    for key, supported in (("hidden_act", "gelu"), ("position_embedding_type", "absolute")):
        if cfg.get(key, supported) != supported:
            raise CheckpointError(f"{path}/config.json: {key}={cfg[key]!r}, only {supported!r} is supported")
    ours = cfg.get("gptbench")
    try:
        recorded = dict(
            vocab_size=ours["vocab_size"] if ours else cfg["vocab_size"],
            n_special=ours["n_special"] if ours else 0,
            n_ctx=cfg["max_position_embeddings"],
            n_embd=cfg["hidden_size"],
            n_layer=cfg["num_hidden_layers"],
            n_head=cfg["num_attention_heads"],
            # BertConfig spells the usual width None (4 * n_embd), so a gptbench export reads back equal
            n_inner=None if cfg["intermediate_size"] == 4 * cfg["hidden_size"] else cfg["intermediate_size"],
            type_vocab_size=cfg.get("type_vocab_size", BertConfig.type_vocab_size),
            embd_pdrop=cfg.get("hidden_dropout_prob", BertConfig.embd_pdrop),
            attn_pdrop=cfg.get("attention_probs_dropout_prob", BertConfig.attn_pdrop),
            resid_pdrop=cfg.get("hidden_dropout_prob", BertConfig.resid_pdrop),
            layer_norm_eps=cfg.get("layer_norm_eps", BertConfig.layer_norm_eps),
            initializer_range=cfg.get("initializer_range", BertConfig.initializer_range),
        )
    except KeyError as e:
        raise CheckpointError(f"{path}/config.json: missing key {e.args[0]!r}") from None
    model = BERT(_config_with(BertConfig, recorded, dropout, overrides, f"{path}/config.json"))
    # Older checkpoints name LayerNorm parameters gamma/beta; BertModel's keys lack the 'bert.' prefix.
    raw = {}
    for key, value in _read_safetensors(path).items():
        key = key.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
        raw[key if key.startswith(("bert.", "cls.")) else f"bert.{key}"] = value
    state, missing = {}, []
    for key in model.state_dict():
        names = _hf_bert_keys(key)
        absent = [name for name in names if name not in raw]
        if not absent:
            state[key] = torch.cat([raw[name] for name in names])
        elif key not in _BERT_OPTIONAL:
            missing += absent
    if missing:
        raise CheckpointError(f"{path}: not a BERT masked LM of {model.config.n_layer} layers; "
                              f"missing {_first_few(missing)}")  # fmt: skip
    return _build(model, state, str(path), optional=_BERT_OPTIONAL)


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
    return _build(GPT(config), state, source=str(path))


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
    model_cls, config_cls = (BERT, BertConfig) if spec.get("arch") == "bert" else (GPT, GPTConfig)
    return _build(model_cls(_config_with(config_cls, spec, dropout, overrides, str(path))), state, source=str(path))


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
def _build(model: GPT | BERT, state: dict[str, torch.Tensor], source: str, optional: tuple[str, ...] = ()):
    """Copy ``state`` into a fresh ``model``, checking every key and shape; return the model.

    The token embedding (and BERT's output bias) may hold only the BPE rows (released weights): the
    special-token rows then keep their fresh initialisation, as in the paper's fine-tuning. So do the
    keys in ``optional`` that ``state`` lacks (BERT's pooler, which BertForMaskedLM does not save).
    """
    config = model.config
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state) - set(optional))
    unexpected = sorted(k for k in set(state) - set(expected) if not k.endswith(".attn.bias"))
    if missing or unexpected:
        raise CheckpointError(f"{source}: checkpoint does not match {type(config).__name__}(n_layer={config.n_layer}); "
                              f"missing {_first_few(missing)}, unexpected {_first_few(unexpected)}")  # fmt: skip
    with torch.no_grad():
        for key, target in expected.items():
            if key not in state:  # an optional key
                continue
            value = state[key]
            if key in _TOKEN_ROWS and value.shape == (config.vocab_size, *target.shape[1:]):
                target[: config.vocab_size].copy_(value)
                continue
            if value.shape != target.shape:
                raise CheckpointError(
                    f"{source}: '{key}' has shape {tuple(value.shape)}, "
                    f"expected {tuple(target.shape)} for {config}"
                )
            target.copy_(value)
    return model


def _first_few(keys: list[str]) -> str:
    return f"{keys[:5]}{'...' if len(keys) > 5 else ''}"
