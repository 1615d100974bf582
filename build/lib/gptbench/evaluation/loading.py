"""A checkpoint and its tokenizer, for inference (zero-shot scoring, generation, task predictions)."""

from __future__ import annotations

from pathlib import Path

import torch

from gptbench.config import ConfigError
from gptbench.data.hf_export import check_transformers_tokenizer
from gptbench.data.tokenizer import Tokenizer
from gptbench.models import LanguageModel, load_pretrained
from gptbench.models.checkpoints import CheckpointError

NO_DROPOUT = {"embd_pdrop": 0.0, "attn_pdrop": 0.0, "resid_pdrop": 0.0}


def load_tokenizer_for(path: str | Path, gpt1_dir: str | Path | None = None) -> Tokenizer:
    """The tokenizer of a checkpoint: gptbench's ``tokenizer/`` inside (or beside) it, else GPT-1's
    40k BPE from ``gpt1_dir`` (for OpenAI or Hugging Face GPT-1 weights). A missing one is an error
    naming what was looked for, never a fallback."""
    path = Path(path)
    tok_dir = (path if path.is_dir() else path.parent) / "tokenizer"
    if (tok_dir / "tokenizer.json").is_file():
        return Tokenizer.load(tok_dir)
    if gpt1_dir:
        g = Path(gpt1_dir)
        return Tokenizer.gpt1(g / "encoder_bpe_40000.json", g / "vocab_40000.bpe")
    raise ConfigError(f"{tok_dir / 'tokenizer.json'}: missing (no gptbench tokenizer beside the weights); "
                      "pass gpt1_dir=PATH for GPT-1 weights")  # fmt: skip


def load_model_and_tokenizer(path, gpt1_dir=None, device: str | None = None) -> tuple[LanguageModel, Tokenizer]:
    """A checkpoint (gptbench export dir, .ckpt, HF openai-gpt dir, OpenAI .npy dir) in eval mode,
    and its tokenizer (:func:`load_tokenizer_for`). The tokenizer must match the model's
    vocabulary, and so must a gptbench export's ``tokenizer.json`` for transformers (a Hugging Face
    GPT-1 directory's own tokenizer files have no task tokens and are not read)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"checkpoint {path} does not exist")
    tokenizer = load_tokenizer_for(path, gpt1_dir)
    model = load_pretrained(path, dropout=NO_DROPOUT)
    if model.config.vocab_size != tokenizer.vocab_size:
        where = (path if path.is_dir() else path.parent) / "tokenizer" / "tokenizer.json"
        raise CheckpointError(f"{where if where.is_file() else gpt1_dir}: tokenizer vocabulary {tokenizer.vocab_size} "
                              f"!= the model's {model.config.vocab_size} ({path})")  # fmt: skip
    if path.is_dir() and (path / "tokenizer.json").is_file() and (path / "tokenizer").is_dir():  # a gptbench export
        try:
            check_transformers_tokenizer(path, model.config.n_tokens)
        except ValueError as e:
            raise CheckpointError(str(e)) from None
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return model.to(device).eval(), tokenizer
