"""The tokenizer stage of an experiment: GPT-1's released BPE, or one trained on the training
books, saved once in ``runs/<name>/tokenizer`` and reused by pre-training and fine-tuning."""

from __future__ import annotations

from pathlib import Path

from gptbench.config import ExperimentConfig, require_dir
from gptbench.data.corpus import book_text, split_books, text_chunks
from gptbench.run_identity import record_settings, tokenizer_dir, tokenizer_settings
from gptbench.data.tokenizer import Tokenizer
from gptbench.errors import CorpusError


def build_tokenizer(cfg: ExperimentConfig, corpus_root: Path | None) -> Tokenizer:
    """The run's tokenizer: GPT-1's released BPE, or one trained on the training books."""
    t = cfg.tokenizer
    if t.kind == "gpt1":
        d = require_dir(t.gpt1_dir, "tokenizer.gpt1_dir", "GPTBENCH_GPT1", "holds encoder_bpe_40000.json and vocab_40000.bpe")
        return Tokenizer.gpt1(d / "encoder_bpe_40000.json", d / "vocab_40000.bpe")
    books = split_books(corpus_root, cfg.corpus.val_books, cfg.corpus.max_bytes).train
    texts, size = [], 0
    for p in books:
        texts.append(book_text(p))
        size += len(texts[-1])
        if size >= t.train_bytes:
            break
    chunks = [c for text in texts for c in text_chunks(text)]
    tokenizer = Tokenizer.train(chunks, vocab_size=t.vocab_size)
    if tokenizer.vocab_size < t.vocab_size:
        raise CorpusError(
            f"tokenizer.vocab_size={t.vocab_size} was asked, but {size:,} characters of {len(texts)} training "
            f"book(s) under {corpus_root} yield only {tokenizer.vocab_size} BPE tokens; add books, raise "
            "tokenizer.train_bytes, or lower tokenizer.vocab_size"
        )
    return tokenizer


def run_tokenizer(cfg: ExperimentConfig) -> Tokenizer:
    """Load the run's saved tokenizer, or build and save it (runs/<name>/tokenizer/<label>-<key>)."""
    path = tokenizer_dir(cfg)
    if cfg.prepared:
        return _prepared_tokenizer(cfg, path)
    if (path / "tokenizer.json").is_file():
        return Tokenizer.load(path)
    corpus = require_dir(cfg.corpus.path, "corpus.path", "GPTBENCH_CORPUS", "a folder of .txt books") if cfg.tokenizer.kind == "trained" else None
    tokenizer = build_tokenizer(cfg, corpus)
    tokenizer.save(path)
    record_settings(path, tokenizer_settings(cfg))
    return tokenizer


def _prepared_tokenizer(cfg: ExperimentConfig, path: Path) -> Tokenizer:
    """The prepared directory's tokenizer (saved as the run's on first use); a run directory that
    already holds another tokenizer is refused."""
    from gptbench.data.prepared import PreparedError, open_prepared

    tokenizer = open_prepared(cfg.prepared).tokenizer(tokenizer_settings(cfg))
    if (path / "tokenizer.json").is_file():
        saved = Tokenizer.load(path)
        if saved.fingerprint != tokenizer.fingerprint:
            raise PreparedError(f"{path} holds tokenizer {saved.fingerprint}, prepared={cfg.prepared} holds "
                                f"{tokenizer.fingerprint}: they were made from different books")  # fmt: skip
        return saved
    tokenizer.save(path)
    record_settings(path, tokenizer_settings(cfg))
    return tokenizer
