"""Shared fixtures. Real data is read from ../shared beside the checkout (or GPTBENCH_SHARED)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

SHARED = Path(os.environ.get("GPTBENCH_SHARED", Path(__file__).resolve().parents[2] / "shared"))
DATA = SHARED / "data"
CORPUS = SHARED / "corpus" / "gutenberg"
GPT1 = SHARED / "gpt1"

# torch.compile on the CPU (inductor's C++ backend) passes torch's include and library directories
# to g++ unquoted, so it cannot build when torch is installed under a path with whitespace (a
# checkout in "My Projects/", say). The tests that compile on the CPU say so instead of failing.
_TORCH_DIR = str(Path(torch_spec.origin).parent) if (torch_spec := importlib.util.find_spec("torch")) else ""
compiles_on_cpu = pytest.mark.skipif(
    any(c.isspace() for c in _TORCH_DIR),
    reason=f"torch.compile's CPU backend cannot build C++ under a path with whitespace ({_TORCH_DIR}); "
    "run from a path without spaces to cover compile",
)


@pytest.fixture(scope="session")
def gpt1_tokenizer():
    from gptbench import Tokenizer

    return Tokenizer.gpt1(GPT1 / "encoder_bpe_40000.json", GPT1 / "vocab_40000.bpe")


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """Five real novels, each cut to its first 100 kB (the START marker stays, the END goes)."""
    root = tmp_path_factory.mktemp("corpus")
    authors = ("Austen, Jane", "Dickens, Charles", "Doyle, Arthur Conan", "Twain, Mark", "Wells, H. G. (Herbert George)")
    for i, author in enumerate(authors):
        book = sorted((CORPUS / author).glob("*.txt"))[0]
        (root / f"book{i}.txt").write_bytes(book.read_bytes()[:100_000])
    return root


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


def tiny_overrides(runs: Path, corpus: Path, cache: Path, name: str = "tiny") -> list[str]:
    """A model and budget small enough for a test (seconds on 2 CPU cores)."""
    return [
        f"name={name}", f"runs_dir={runs}", f"cache_dir={cache}", f"corpus.path={corpus}",
        f"finetune.data_dir={DATA}", f"tokenizer.gpt1_dir={GPT1}",
        "model.n_ctx=32", "model.n_embd=32", "model.n_layer=2", "model.n_head=2",
        "tokenizer.kind=trained", "tokenizer.vocab_size=400", "tokenizer.train_bytes=200000",
        "corpus.val_books=1", "corpus.max_bytes=400000",
        "pretrain.max_steps=12", "pretrain.batch_size=8", "pretrain.lr=3e-3", "pretrain.warmup_steps=2",
        "pretrain.val_every_n_steps=6", "pretrain.val_windows=8", "pretrain.checkpoint_every_n_steps=4",
        "pretrain.log_every_n_steps=2", "pretrain.keep_steps=[0,4,12]", "lstm.n_hidden=48",
        "finetune.batch_size=16", "finetune.epochs=2", "finetune.max_train_examples=96",
        "finetune.max_eval_examples=64", "finetune.lr=1e-3",
    ]  # fmt: skip


@pytest.fixture(scope="session")
def pretrained(tmp_path_factory, tiny_corpus, cache_dir) -> list[str]:
    """A tiny pre-trained run (``runs/tiny/pretrain/model``); returns its config overrides."""
    from gptbench.config import load_config
    from gptbench.training.pretrain import run_pretrain

    runs = tmp_path_factory.mktemp("runs")
    base = tiny_overrides(runs, tiny_corpus, cache_dir)
    run_pretrain(load_config("smoke", base))
    return base


def pretrained_model(base: list[str]) -> Path:
    """The exported model directory of the run made by the ``pretrained`` fixture."""
    runs = next(o.split("=", 1)[1] for o in base if o.startswith("runs_dir="))
    return Path(runs) / "tiny" / "pretrain" / "model"


def saved_hf_gpt(path: Path, n_positions: int):
    """A random tiny transformers OpenAIGPTLMHeadModel (vocab 211, 3 x 48, 4 heads; seed 0) in eval
    mode, saved to ``path`` with save_pretrained."""
    import torch
    import transformers

    config = transformers.OpenAIGPTConfig(vocab_size=211, n_positions=n_positions, n_embd=48, n_layer=3, n_head=4)
    torch.manual_seed(0)
    model = transformers.OpenAIGPTLMHeadModel(config).eval()
    model.save_pretrained(path)
    return model
