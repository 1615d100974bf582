"""Pre-training data: a folder of books -> cached token arrays -> random n_ctx windows.

- Whole books are held out for validation (chosen by a hash of their path, so the choice does
  not change when books are added elsewhere).
- Each split is tokenized once into a flat memory-mapped array cached under
  ``cache_dir/corpus/<fingerprint>``; the fingerprint covers the books' bytes, the slice
  settings and the tokenizer, so a re-run never re-tokenizes.
- Training draws contiguous windows at random positions; sample ``g`` of the run always gets
  the same window, so a resumed run continues with exactly the windows it would have seen.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

from gptbench.errors import CorpusError
from gptbench.io import default_cache_dir
from gptbench.data.tokenizer import Tokenizer
from gptbench.data.loaders import loader_options
from gptbench.data.sampling import attached_context, private_generator

_FORMAT_VERSION = 1
_CHUNK_CHARS = 20_000  # paragraphs are tokenized in chunks of about this many characters
_START = re.compile(r"^\*\*\* ?START OF .*$", re.MULTILINE)
_END = re.compile(r"^\*\*\* ?END OF .*$", re.MULTILINE)


def book_text(path: Path) -> str:
    """A book's body: Project Gutenberg header/footer cut, hard-wrapped lines joined, one
    paragraph per line."""
    text = path.read_text(encoding="utf-8", errors="replace").replace("\r\n", "\n")
    start, end = _START.search(text), _END.search(text)
    if end and (start is None or end.start() > start.end()):
        text = text[: end.start()]
    if start:
        text = text[start.end() :]
    paragraphs = (" ".join(p.split()) for p in re.split(r"\n\s*\n", text))
    return "\n".join(p for p in paragraphs if p)


def text_chunks(text: str) -> list[str]:
    """Split at paragraph boundaries into pieces of about _CHUNK_CHARS characters (spaCy and the
    process pool work best on moderate pieces); each piece keeps its newlines."""
    chunks, current, size = [], [], 0
    for paragraph in text.split("\n"):
        current.append(paragraph)
        size += len(paragraph) + 1
        if size >= _CHUNK_CHARS:
            chunks.append("\n".join(current))
            current, size = [], 0
    if current:
        chunks.append("\n".join(current))
    return chunks


@dataclass
class BookSplit:
    train: list[Path]
    val: list[Path]


def split_books(root: Path, val_books: int, max_bytes: int | None) -> BookSplit:
    """Hold out ``val_books`` whole books; take training books in a fixed pseudo-random order
    until ``max_bytes`` (whole books only, at least one)."""
    books = sorted(root.rglob("*.txt"))
    if len(books) <= val_books:
        raise CorpusError(f"corpus.path={root}: found {len(books)} .txt books, need more than "
                          f"corpus.val_books={val_books} (at least one training book)")  # fmt: skip
    order = sorted(books, key=lambda p: hashlib.sha1(p.relative_to(root).as_posix().encode()).hexdigest())
    val, train = order[:val_books], order[val_books:]
    if max_bytes is not None:
        taken, total = [], 0
        for p in train:
            if taken and total + p.stat().st_size > max_bytes:
                break
            taken.append(p)
            total += p.stat().st_size
        train = taken
    check_books_are_text([*val, *train])
    return BookSplit(train=sorted(train), val=sorted(val))


def check_books_are_text(books: list[Path], max_bad_fraction: float = 0.001) -> None:
    """Refuse files named .txt that are not text: NUL bytes (binary files), or more than
    ``max_bad_fraction`` of bytes that are not UTF-8 (a few stray bytes are replaced)."""
    bad = []
    for path in books:
        data = path.read_bytes()
        if b"\x00" in data:
            bad.append(f"{path} (binary: NUL bytes)")
            continue
        replaced = data.decode("utf-8", errors="replace").count("\ufffd") - data.decode("utf-8", errors="ignore").count("\ufffd")
        if replaced > max_bad_fraction * max(len(data), 1):
            bad.append(f"{path} ({replaced:,} of {len(data):,} bytes are not UTF-8)")
    if bad:
        raise CorpusError(f"{len(bad)} corpus file(s) are not UTF-8 text: {'; '.join(bad[:5])}"
                          f"{'; ...' if len(bad) > 5 else ''}; remove them or convert them to UTF-8")  # fmt: skip


def _fingerprint(books: BookSplit, tokenizer: Tokenizer) -> str:
    h = hashlib.sha256(f"v{_FORMAT_VERSION}:{tokenizer.fingerprint}".encode())
    for name, paths in (("train", books.train), ("val", books.val)):
        for p in paths:
            h.update(f"{name}:{p.name}:".encode())
            h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()[:20]


def tokenize_books(paths: list[Path], tokenizer: Tokenizer) -> np.ndarray:
    """All books' tokens, concatenated in order."""
    dtype = np.uint16 if len(tokenizer) <= np.iinfo(np.uint16).max + 1 else np.uint32
    parts = []
    for p in _with_progress(paths, "tokenizing books"):
        ids = [i for chunk in tokenizer.encode_batch(text_chunks(book_text(p))) for i in chunk]
        parts.append(np.asarray(ids, dtype=dtype))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)


def _with_progress(paths: list[Path], desc: str, log_every_s: float = 30.0):
    """``paths``, showing progress: tqdm's bar on a terminal; in a log (sweeps, SLURM, CI), a line
    at most every ``log_every_s`` seconds instead of one bar redrawn with carriage returns."""
    if sys.stderr.isatty():
        from tqdm.auto import tqdm

        yield from tqdm(paths, desc=desc, unit="book")
        return
    last = time.monotonic()
    for done, path in enumerate(paths):
        if time.monotonic() - last >= log_every_s:
            print(f"{desc}: {done}/{len(paths)}", file=sys.stderr, flush=True)
            last = time.monotonic()
        yield path


def cached_corpus(root: Path, books: BookSplit, tokenizer: Tokenizer, cache_dir: Path) -> dict[str, np.ndarray]:
    """Memory-mapped token arrays {'train', 'val'}, tokenizing only on the first call."""
    target = Path(cache_dir) / "corpus" / _fingerprint(books, tokenizer)
    if not (target / "meta.json").is_file():
        tmp = target.with_name(f"{target.name}.tmp{os.getpid()}")  # DDP's processes may tokenize side by side
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        meta = {"root": str(root), "tokenizer": tokenizer.fingerprint}
        for split in ("train", "val"):
            tokens = tokenize_books(getattr(books, split), tokenizer)
            np.save(tmp / f"{split}.npy", tokens)
            meta[split] = {"books": [str(p) for p in getattr(books, split)], "tokens": int(tokens.size)}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
        if (target / "meta.json").is_file():  # another process finished the same tokenization first
            shutil.rmtree(tmp)
        else:
            shutil.rmtree(target, ignore_errors=True)
            tmp.rename(target)
    return {split: np.load(target / f"{split}.npy", mmap_mode="r") for split in ("train", "val")}


class RandomWindows(IterableDataset):
    """Endless (x, y) windows of ``n_ctx`` tokens at random offsets, from sample ``start()`` on.

    Offsets are drawn in blocks of 1024 samples from a generator seeded by (seed, block), so
    sample g is the same window whatever sample the iteration started from. Under data
    parallelism, process ``rank`` of ``world`` takes samples rank, rank + world, ... so the
    processes together see the single-process sequence.
    """

    BLOCK = 1024

    def __init__(self, tokens: np.ndarray, n_ctx: int, seed: int, start: Callable[[], int] = lambda: 0,
                 rank: int = 0, world: int = 1):  # fmt: skip
        if tokens.size < n_ctx + 1:
            raise ValueError(f"training corpus has {tokens.size} tokens, fewer than n_ctx+1={n_ctx + 1}")
        self.tokens, self.n_ctx, self.seed, self.start = tokens, n_ctx, seed, start
        self.rank, self.world = rank, world

    def _block_starts(self, block: int) -> np.ndarray:
        return np.random.default_rng([self.seed, block]).integers(0, self.tokens.size - self.n_ctx, size=self.BLOCK)

    def __iter__(self):
        g = self.start() + self.rank  # asked when iteration starts, i.e. after a checkpoint is restored
        block, starts = -1, None
        while True:
            if g // self.BLOCK != block:
                block = g // self.BLOCK
                starts = self._block_starts(block)
            s = starts[g % self.BLOCK]
            window = torch.from_numpy(self.tokens[s : s + self.n_ctx + 1].astype(np.int64))
            yield window[:-1], window[1:]
            g += self.world


class ValidationWindows(Dataset):
    """Up to ``count`` non-overlapping windows spread evenly over the held-out books."""

    def __init__(self, tokens: np.ndarray, n_ctx: int, count: int):
        available = (tokens.size - 1) // n_ctx
        if available < 1:
            raise ValueError(f"validation books have {tokens.size} tokens, fewer than n_ctx+1={n_ctx + 1}")
        self.tokens, self.n_ctx = tokens, n_ctx
        self.starts = np.linspace(0, available - 1, num=min(count, available)).astype(np.int64) * n_ctx

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int):
        s = self.starts[i]
        window = torch.from_numpy(self.tokens[s : s + self.n_ctx + 1].astype(np.int64))
        return window[:-1], window[1:]


class CorpusDataModule(L.LightningDataModule):
    """Pre-training batches from a folder of books, for any Lightning Trainer.

    Training: endless random ``n_ctx``-token windows of the training books (a resumed run
    continues with exactly the windows it would have seen); validation: up to ``val_windows``
    fixed windows of the held-out books. Tokenization happens once (cached).

    Batches are built in the training process, without DataLoader workers: a batch of 64 windows of
    512 tokens is 64 slices of the memory-mapped array, 0.46 ms on a 2-core CPU machine, under 1% of
    a GPU step at the issue's target (590,000 tokens/s: 55 ms a step), and built while the GPU still
    runs the previous step (training reads no device value between logging steps). Workers would
    add processes and, for this endless iterable dataset, a sharding of the sample sequence, for
    nothing. On CUDA the batches are pinned (:mod:`gptbench.data.loaders`).

    Args:
        root: a folder of ``.txt`` books, searched recursively.
        tokenizer: the model's tokenizer.
        n_ctx: window length; default: the attached model's ``config.n_ctx``, else the paper's 512.
        batch_size: windows per batch (the paper: 64).
        val_books: whole books held out for validation.
        max_bytes: use training books (whole) until this many bytes; None = all.
        cache_dir: default ``$GPTBENCH_CACHE`` or ``~/.cache/gptbench``.
        prepared: a :class:`gptbench.data.prepared.PreparedData` to read the token arrays from
            instead (``root`` is then not read).
    """

    def __init__(self, root: str | Path | None, tokenizer: Tokenizer, *, n_ctx: int | None = None, batch_size: int = 64,
                 val_books: int = 4, max_bytes: int | None = None, val_windows: int = 256,
                 cache_dir: str | Path | None = None, seed: int = 1234, prepared=None):  # fmt: skip
        super().__init__()
        for name, value in (("batch_size", batch_size), ("val_books", val_books), ("val_windows", val_windows),
                            ("n_ctx", n_ctx), ("max_bytes", max_bytes)):  # fmt: skip
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive, got {value}")
        self.root, self.tokenizer, self._n_ctx = Path(root) if root is not None else None, tokenizer, n_ctx
        self.batch_size, self.val_books, self.max_bytes, self.val_windows = batch_size, val_books, max_bytes, val_windows
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.seed, self.prepared = seed, prepared
        self.tokens: dict[str, np.ndarray] | None = None

    @property
    def n_ctx(self) -> int:
        return self._n_ctx if self._n_ctx is not None else attached_context(self.trainer)

    def setup(self, stage: str | None = None) -> None:
        if self.tokens is None and self.prepared is not None:
            self.tokens = self.prepared.corpus(self.tokenizer.fingerprint, self.val_books, self.max_bytes)
        if self.tokens is None:
            books = split_books(self.root, self.val_books, self.max_bytes)
            self.tokens = cached_corpus(self.root, books, self.tokenizer, self.cache_dir)

    def _samples_done(self) -> int:
        """Windows already trained on (by all processes): the resumed run continues from the next."""
        if self.trainer is None:
            return 0
        t = self.trainer
        return t.global_step * self.batch_size * t.accumulate_grad_batches * t.world_size

    def train_dataloader(self) -> DataLoader:
        self.setup()
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer is not None else (0, 1)
        windows = RandomWindows(self.tokens["train"], self.n_ctx, self.seed, start=self._samples_done,
                                rank=rank, world=world)  # fmt: skip
        return DataLoader(windows, batch_size=self.batch_size, generator=private_generator(self.seed),
                          **loader_options(self.trainer))  # fmt: skip

    def val_dataloader(self) -> DataLoader:
        self.setup()
        windows = ValidationWindows(self.tokens["val"], self.n_ctx, self.val_windows)
        return DataLoader(windows, batch_size=self.batch_size, generator=private_generator(self.seed),
                          **loader_options(self.trainer))  # fmt: skip
