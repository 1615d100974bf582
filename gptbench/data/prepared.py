"""Prepared data: everything a run reads, tokenized once, for machines without the text pipeline.

``gptbench prepare PRESET out=DIR`` writes into DIR the tokenizer, the corpus splits (token arrays
at the smallest dtype), the rows of every task split the runs read (encoded with the run's
tokenizer, context and input format), the examples the zero-shot heuristics score (their token
ids, :func:`gptbench.evaluation.zeroshot.encode_examples`), and the texts encoded at run time (the
TensorBoard sample prompts, the heuristics' words); ``manifest.json`` lists what each file is, the
source files it came from with their sha256, the tokenizer's fingerprint and every file's size and
hash.

Rows: the runs draw their subsets and holdout slices by position from a split's full length, so
a split is stored as its full length, the positions the prepared runs draw (found by running each
run's own data module against the split's records while preparing) and the rows at those positions;
a run from DIR draws the same positions and reads the rows they map to, so its subsets are the
raw-file run's by construction. A position not stored is refused, naming the split; ``rows=all``
stores whole splits (for drawing other subsets on the compute node).

With ``prepared=DIR`` (or ``GPTBENCH_PREPARED=DIR``) pre-training, fine-tuning and the zero-shot
heuristics read only DIR: spaCy and ftfy are never imported, and the corpus and benchmark data need
not exist. Whatever a run needs and DIR lacks is a one-line error naming what to prepare; a DIR
whose files do not match its manifest, or made from other books or with another tokenizer, is
refused.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from gptbench.errors import CorpusError

MANIFEST = "manifest.json"
_FORMAT = 2
ROWS = ("drawn", "all")


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


def zero_shot_item_key(task: str, split: str, tokenizer_fp: str) -> str:
    return json_key("zero_shot", task, split, tokenizer_fp)


def split_key(task: str, split: str, source: str | None) -> str:
    return json_key("split", task, split, source)


def corpus_item_key(tokenizer_fp: str, val_books: int, max_bytes: int | None) -> str:
    return json_key("corpus", tokenizer_fp, val_books, max_bytes)


# ---- files --------------------------------------------------------------------------------------
# Compression (compress=true) is Zstandard, level 9, through pyarrow (which datasets requires):
# Arrow IPC's own buffer compression for the row tables (read back by the same reader) and a zstd
# frame around the .npy bytes of the corpus arrays. Measured on the paper preset's GPT-1 BPE
# corpus (uint16 ids): level 9 keeps 57% of the bytes and compresses 15 MiB in 0.3 s, where zlib
# (numpy's only codec) keeps 61% at level 6 and takes 0.7 s, and zstd's default level 1 keeps 71%;
# levels above 9 gain little for several times the time. Encoded task rows shrink far more (the
# paper preset's RACE: the article repeated in each answer's sequence). Both decode to the same
# bytes, so runs are identical; a compressed corpus is read into memory instead of memory-mapped.
ZSTD_LEVEL = 9


def _zstd():
    import pyarrow as pa

    return pa.Codec("zstd", compression_level=ZSTD_LEVEL)


def write_rows(path: Path, table, compress: bool) -> None:
    """An Arrow table (its ``datasets`` features in the schema) as an IPC stream file."""
    import pyarrow as pa

    path.parent.mkdir(parents=True, exist_ok=True)
    options = pa.ipc.IpcWriteOptions(compression=_zstd() if compress else None)
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, table.schema, options=options) as writer:
        writer.write_table(table)


def read_rows(path: Path, fingerprint: str):
    """The ``datasets.Dataset`` of a file :func:`write_rows` wrote (memory-mapped when uncompressed).
    ``fingerprint`` names its content (the file's hash), so datasets need not hash the table."""
    import datasets
    from datasets.table import MemoryMappedTable

    return datasets.Dataset(MemoryMappedTable.from_file(str(path)), fingerprint=fingerprint)


def write_tokens(path: Path, tokens: np.ndarray, compress: bool) -> None:
    if not compress:
        np.save(path, tokens)
        return
    buffer = io.BytesIO()
    np.save(buffer, tokens)
    path.write_bytes(_zstd().compress(buffer.getvalue(), asbytes=True))  # one zstd frame


def read_tokens(path: Path) -> np.ndarray:
    if path.suffix != ".zst":
        return np.load(path, mmap_mode="r")
    import pyarrow as pa

    with pa.CompressedInputStream(pa.OSFile(str(path)), "zstd") as stream:
        return np.load(io.BytesIO(stream.read()))


# ---- reading ------------------------------------------------------------------------------------
@dataclass
class PreparedSplit:
    """A prepared split: its full length (``len``), and the rows stored, at ``positions`` of the
    full split (None: every row)."""

    rows: object  # datasets.Dataset
    full_examples: int
    positions: list[int] | None
    what: str  # the split, named in errors
    root: Path

    def __len__(self) -> int:
        return self.full_examples

    def select(self, wanted: list[int]):
        """The rows at these positions of the full split, in this order (a ``datasets.Dataset``)."""
        if self.positions is None:
            return self.rows.select(wanted)
        row = {p: i for i, p in enumerate(self.positions)}
        missing = [p for p in wanted if p not in row]
        if missing:
            more = f" (and {len(missing) - 1:,} more)" if len(missing) > 1 else ""
            raise PreparedError(f"prepared={self.root}: {self.what} holds {len(self.positions):,} of its "
                                f"{self.full_examples:,} examples, not the one at position {missing[0]}{more} that "
                                "this run reads; prepare with the run's preset, tasks and overrides (or rows=all)")  # fmt: skip
        return self.rows.select([row[p] for p in wanted])


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
        """Token arrays {'train', 'val'} of the corpus split these settings make (memory-mapped
        unless compressed)."""
        entry = self.manifest["corpora"].get(corpus_item_key(tokenizer_fp, val_books, max_bytes))
        if entry is None:
            raise self._missing(f"corpus for corpus.val_books={val_books}, corpus.max_bytes={max_bytes} and "
                                f"tokenizer {tokenizer_fp}")  # fmt: skip
        return {split: read_tokens(self.root / entry[split]) for split in ("train", "val")}

    # ---- task splits --------------------------------------------------------------------------
    def absent_reason(self, task: str, split: str, source: str | None) -> str | None:
        """Why a split's data was absent where the directory was prepared (None when present)."""
        entry = self.manifest["absent"].get(split_key(task, split, source))
        return entry["reason"] if entry else None

    def _split(self, entry: dict, what: str) -> PreparedSplit:
        rows = read_rows(self.root / entry["file"], self.manifest["files"][entry["file"]]["sha256"][:16])
        return PreparedSplit(rows, entry["full_examples"], entry["positions"], what, self.root)

    def task_split(self, task: str, split: str, source: str | None, tokenizer_fp: str, n_ctx: int, input_format: str):
        """(the split's prepared rows, dropped rows, where they came from); raises
        SplitUnavailable for a split that was absent where the directory was prepared."""
        from gptbench.tasks import SplitUnavailable

        why = self.absent_reason(task, split, source)
        if why is not None:
            raise SplitUnavailable(why)
        what = f"task {task} split {split!r}" + (f" (from {source})" if source else "")
        entry = self.manifest["tasks"].get(task_item_key(task, split, source, tokenizer_fp, n_ctx, input_format))
        if entry is None:
            raise self._missing(f"{what} at n_ctx={n_ctx}, input format {input_format}, tokenizer {tokenizer_fp}")
        return self._split(entry, what), entry["dropped"], entry["where"]

    def zero_shot_split(self, task: str, split: str, tokenizer_fp: str) -> PreparedSplit:
        """The encoded examples of a split the zero-shot heuristics score
        (:func:`gptbench.evaluation.zeroshot.encode_examples`); raises SplitUnavailable for a
        split that was absent where the directory was prepared."""
        from gptbench.tasks import SplitUnavailable

        why = self.absent_reason(task, split, None)
        if why is not None:
            raise SplitUnavailable(why)
        what = f"zero-shot task {task} split {split!r}"
        entry = self.manifest["zero_shot"].get(zero_shot_item_key(task, split, tokenizer_fp))
        if entry is None:
            raise self._missing(f"{what} for tokenizer {tokenizer_fp}")
        return self._split(entry, what)

    def split_size(self, task: str, split: str, source: str | None) -> int:
        """A split's full size (a sweep's stand-in for an absent task is the largest present)."""
        size = self.manifest["split_sizes"].get(split_key(task, split, source))
        if size is None:
            raise self._missing(f"size of task {task} split {split!r}" + (f" (from {source})" if source else ""))
        return size

    def data_source(self, task: str) -> str:
        """Where the task's data was read from when the directory was prepared."""
        entry = next((e for e in self.manifest["tasks"].values() if e["task"] == task), None)
        if entry is None:
            raise self._missing(f"split of task {task}")
        return entry["data_source"]

    # ---- texts encoded at run time ------------------------------------------------------------
    def prompts(self, tokenizer):
        """The tokenizer with its ``encode`` answered from the texts encoded when preparing (the
        sample prompts, the zero-shot heuristics' words; :func:`run_texts`)."""
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


def _read_manifest(root: Path, what: str) -> dict:
    manifest = json.loads((root / MANIFEST).read_text())
    if manifest.get("format") != _FORMAT:
        raise PreparedError(f"{what}={root}: manifest format {manifest.get('format')}, this gptbench reads and writes "
                            f"{_FORMAT}; prepare into a new directory")  # fmt: skip
    return manifest


def open_prepared(path: str | Path) -> PreparedData:
    """The prepared directory at ``path``, its files checked against the manifest (hashed once per
    process while no file's size or modification time changes)."""
    root = Path(path).expanduser().resolve()
    if not (root / MANIFEST).is_file():
        raise PreparedError(f"prepared={path}: no {MANIFEST} there (make one with `gptbench prepare`)")
    manifest = _read_manifest(root, "prepared")
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


def sizes(manifest: dict) -> dict[str, int]:
    """Bytes by kind of item: corpus, tasks, zero_shot, tokenizer, prompts."""
    out: dict[str, int] = {}
    for rel, entry in manifest["files"].items():
        kind = rel.split("/")[0].split("-")[0].removesuffix(".json")
        out[kind] = out.get(kind, 0) + entry["bytes"]
    return out


# ---- writing ------------------------------------------------------------------------------------
@dataclass
class _Rows:
    """A split whose rows are written when the directory is finished: the positions of the full
    split asked for so far, and how to encode the rows at given positions (a ``datasets.Dataset``)."""

    kind: str  # "tasks" or "zero_shot"
    entry: dict
    full_examples: int
    encode: Callable[[list[int]], object]
    positions: set[int] = field(default_factory=set)


class PreparedWriter:
    """Builds a prepared directory item by item; :meth:`finish` writes the rows and the manifest."""

    def __init__(self, root: Path, rows: str = "drawn", compress: bool = False):
        if rows not in ROWS:
            raise PreparedError(f"rows={rows!r}: expected one of {list(ROWS)}")
        self.root, self.all_rows = Path(root), rows == "all"
        self.root.mkdir(parents=True, exist_ok=True)
        old = self.root / MANIFEST
        self.manifest = _read_manifest(self.root, "out") if old.is_file() else {
            "format": _FORMAT, "corpus_fingerprint": None, "data": None, "compressed": None, "tokenizers": {},
            "corpora": {}, "tasks": {}, "zero_shot": {}, "absent": {}, "split_sizes": {}, "prompts": {}, "sources": {},
            "files": {},
        }  # fmt: skip
        self.agree("compressed", compress, "compress= differs")
        self._rows: dict[str, _Rows] = {}

    def agree(self, key: str, value, what: str) -> None:
        """Record a setting of the whole directory; one that differs from the directory's is refused."""
        if self.manifest[key] is not None and self.manifest[key] != value:
            raise PreparedError(f"out={self.root}: it holds data prepared with {key}={self.manifest[key]}, this "
                                f"config gives {value} ({what}); use another out= directory")  # fmt: skip
        self.manifest[key] = value

    def _sources(self, paths: list[Path]) -> None:
        for p in paths:
            self.manifest["sources"].setdefault(str(p.resolve()), sha256_file(p))

    def _source_folder(self, folder: Path | None) -> list[str]:
        """Record a task's data folder once, as its file count and one sha256 over its files'
        relative paths and sha256s (RACE has 28k files: one entry each would make the manifest
        megabytes); returns the entry's ``sources``."""
        if folder is None or not folder.is_dir():
            return []
        name = str(folder.resolve())
        if name not in self.manifest["sources"]:
            files = sorted(p for p in folder.rglob("*") if p.is_file())
            listing = "".join(f"{p.relative_to(folder).as_posix()}\t{sha256_file(p)}\n" for p in files)
            self.manifest["sources"][name] = {"files": len(files), "sha256": hashlib.sha256(listing.encode()).hexdigest()}
        return [name]

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
            rel = f"corpus-{key}/{split}.npy" + (".zst" if self.manifest["compressed"] else "")
            (self.root / rel).parent.mkdir(parents=True, exist_ok=True)
            # the cache's dtype: the smallest that holds the vocabulary
            write_tokens(self.root / rel, tokens[split], self.manifest["compressed"])
            entry[split] = rel
            entry[f"{split}_files"] = [p.name for p in getattr(books, split)]  # ("val_books" is the setting)
            entry[f"{split}_tokens"] = int(tokens[split].size)
        self._sources([*books.train, *books.val])
        self.manifest["corpora"][key] = entry

    def add_absent(self, task: str, split: str, source: str | None, reason: str) -> None:
        self.manifest["absent"][split_key(task, split, source)] = {"task": task, "split": split, "source": source,
                                                                     "reason": reason}  # fmt: skip

    def add_split_size(self, task: str, split: str, source: str | None, size: int) -> None:
        self.manifest["split_sizes"][split_key(task, split, source)] = size

    def rows(self, kind: str, key: str, entry: dict, full_examples: int, encode: Callable[[list[int]], object],
             source: Path | None) -> _Rows:  # fmt: skip
        """Register the split ``key`` of ``kind``, read from the data folder ``source`` (None: the
        hub); add the positions to store to the returned item's ``positions`` (with rows=all:
        every one is added here)."""
        entry = {**entry, "sources": self._source_folder(source)}
        item = self._rows[key] = _Rows(kind, entry, full_examples, encode)
        if self.all_rows:
            item.positions.update(range(full_examples))
        return item

    def pending(self, key: str) -> _Rows | None:
        """The split ``key`` if it is registered already."""
        return self._rows.get(key)

    def _write_rows(self, key: str, item: _Rows) -> None:
        old = self.manifest[item.kind].get(key)
        if old is not None and old["full_examples"] != item.full_examples:
            raise PreparedError(f"out={self.root}: {item.kind} {item.entry['task']} {item.entry['split']!r} has "
                                f"{item.full_examples:,} examples here, {old['full_examples']:,} where the directory "
                                "was prepared (other data); use another out= directory")  # fmt: skip
        if old is not None:  # adding to a directory: keep what it held
            item.positions.update(range(old["full_examples"]) if old["positions"] is None else old["positions"])
        positions = sorted(item.positions)
        data = item.encode(positions)
        assert data._indices is None, "rows are written from a dataset without an indices mapping"
        rel = f"{item.kind}/{item.entry['task']}/{item.entry['split']}-{key}.arrow"
        write_rows(self.root / rel, data.data.table, self.manifest["compressed"])
        stored = None if len(positions) == item.full_examples else positions
        self.manifest[item.kind][key] = {**item.entry, "file": rel, "full_examples": item.full_examples,
                                         "rows": len(positions), "positions": stored}  # fmt: skip

    def add_prompts(self, tokenizer, texts: list[str]) -> None:
        rel = f"prompts-{tokenizer.fingerprint}.json"
        table = {t: tokenizer.encode(t) for t in texts}
        (self.root / rel).write_text(json.dumps(table, indent=1))
        self.manifest["prompts"][tokenizer.fingerprint] = rel

    def finish(self) -> int:
        """Write the rows, record every file's size and hash, write the manifest; returns the
        directory's bytes."""
        for key, item in self._rows.items():
            self._write_rows(key, item)
        files = sorted(p for p in self.root.rglob("*") if p.is_file() and p.name != MANIFEST)
        self.manifest["files"] = {p.relative_to(self.root).as_posix(): {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
                                  for p in files}  # fmt: skip
        tmp = self.root / f".{MANIFEST}.tmp"
        tmp.write_text(json.dumps(self.manifest, indent=1, sort_keys=True))
        tmp.replace(self.root / MANIFEST)
        return sum(f["bytes"] for f in self.manifest["files"].values()) + (self.root / MANIFEST).stat().st_size


def run_texts() -> list[str]:
    """Every text a run encodes at run time: the TensorBoard prompts, the masked texts' pieces,
    and the words the zero-shot heuristics encode."""
    from gptbench.evaluation.fill_mask import MASK_TEXT
    from gptbench.evaluation.zeroshot import WORDS
    from gptbench.training.pretrain import LogSamples

    pieces = [p for text in LogSamples.MASKED for p in text.split(MASK_TEXT) if p.strip()]
    return list(dict.fromkeys([*LogSamples.PROMPTS, *pieces, *WORDS]))


class _Drawing:
    """What a fine-tune's data module reads as its prepared directory while preparing: each split's
    full length, and the rows at the positions it draws, read from the raw files and encoded as
    the raw-file run encodes them; the positions are recorded as the rows to store. So the stored
    rows are exactly those the run's own drawing code asks for."""

    def __init__(self, writer: PreparedWriter, raw, tokenizer, cache_dir: Path):
        self.writer, self.raw, self.tokenizer, self.cache_dir = writer, raw, tokenizer, cache_dir

    def data_source(self, task: str) -> str:
        return self.raw.data_source

    def task_split(self, task: str, split: str, source: str | None, tokenizer_fp: str, n_ctx: int, input_format: str):
        key = task_item_key(task, split, source, tokenizer_fp, n_ctx, input_format)
        item = self.writer.pending(key) or self._read(task, split, source, key, n_ctx, input_format)
        return _Recording(item), item.entry["dropped"], item.entry["where"]

    def _read(self, task: str, split: str, source: str | None, key: str, n_ctx: int, input_format: str) -> _Rows:
        from gptbench.data.task_data import encode_cached, read_split
        from gptbench.tasks import SplitUnavailable

        spec, raw = self.raw.spec, self.raw
        try:  # as the raw-file run reads it: an absent split's reason is the one it records
            records, dropped, where = read_split(spec, split, raw.data_root, source)
        except SplitUnavailable as e:
            self.writer.add_absent(task, split, source, str(e))
            raise

        def encode(positions: list[int]):  # as the raw-file run encodes its drawn records
            return encode_cached(spec, split, [records[p] for p in positions], self.tokenizer, n_ctx, self.cache_dir,
                                 input_format)  # fmt: skip

        entry = {"task": task, "split": split, "source": source, "tokenizer": self.tokenizer.fingerprint,
                 "n_ctx": n_ctx, "input_format": input_format, "dropped": dropped, "where": where,
                 "data_source": raw.data_source}  # fmt: skip
        folder = raw.data_root / spec.data_subdir if raw.data_root else None
        return self.writer.rows("tasks", key, entry, len(records), encode, folder)


@dataclass
class _Recording:
    """A split being prepared, as a data module draws from it: its full length, and the rows at
    the positions drawn (recorded)."""

    item: _Rows

    def __len__(self) -> int:
        return self.item.full_examples

    def select(self, positions: list[int]):
        self.item.positions.update(positions)
        return self.item.encode(positions)


def prepare_task(writer: PreparedWriter, cfg, tokenizer) -> None:
    """The rows of every split a fine-tune of ``cfg`` reads: its own data module, as the run
    builds it, draws them from the full splits (absent splits are recorded as such)."""
    from gptbench.data.task_data import TaskDataModule
    from gptbench.tasks import SplitUnavailable, get_task
    from gptbench.training.finetune import finetune_datamodule, load_splits, resolve_selection

    spec, f = get_task(cfg.finetune.task), cfg.finetune
    writer.agree("data", "local" if f.data_dir else "hub", "task data from another place")
    raw = TaskDataModule(spec, tokenizer, data_dir=f.data_dir or "hub", splits=f.splits)  # where the data is
    select = resolve_selection(cfg, spec, raw.data_root)
    input_format = "bert" if cfg.architecture == "bert" else "gpt"
    data = finetune_datamodule(cfg, spec, tokenizer, cfg.model.n_ctx, raw.data_root, select, input_format,
                               _Drawing(writer, raw, tokenizer, Path(cfg.cache_dir)))  # fmt: skip
    try:
        load_splits(data)
    except SplitUnavailable:  # recorded as absent: a sweep records the run as unavailable
        pass


def prepare_zero_shot(writer: PreparedWriter, cfg, tokenizer, tasks, max_examples: int | None) -> None:
    """The encoded examples the zero-shot heuristics score of ``tasks`` (with ``max_examples``)."""
    import datasets

    from gptbench.evaluation.zeroshot import drawn_positions, encode_examples, example_features, zero_shot_splits
    from gptbench.tasks import SplitUnavailable, get_task

    data_root = Path(cfg.finetune.data_dir) if cfg.finetune.data_dir else None
    writer.agree("data", "local" if data_root else "hub", "task data from another place")
    for task in tasks:
        spec = get_task(task)
        for split in zero_shot_splits(task):
            key = zero_shot_item_key(task, split, tokenizer.fingerprint)
            item = writer.pending(key)
            if item is None:
                try:
                    records, _ = spec.read(split, data_root)
                except SplitUnavailable as e:
                    writer.add_absent(task, split, None, str(e))
                    continue

                def encode(positions: list[int], task=task, records=records):
                    examples = encode_examples(task, tokenizer, [records[p] for p in positions])
                    return datasets.Dataset.from_list(examples, features=example_features(task))

                entry = {"task": task, "split": split, "tokenizer": tokenizer.fingerprint}
                folder = data_root / spec.data_subdir if data_root else None
                item = writer.rows("zero_shot", key, entry, len(records), encode, folder)
            item.positions.update(drawn_positions(item.full_examples, max_examples))


def prepare_stand_ins(writer: PreparedWriter, table, preset: str, overrides: list[str]) -> None:
    """What a sweep's ``stand_ins`` reads of the table's fallbacks: which of their splits are
    absent and the training splits' sizes, so that a run from the directory picks the same
    stand-in for a task whose data is absent."""
    from gptbench.config import load_config
    from gptbench.data.task_data import absent_reason
    from gptbench.suite.sweep import train_examples
    from gptbench.tasks import get_task

    for task, candidates in table.fallbacks.items():
        for name in (task, *candidates):
            cfg = load_config(preset, [*overrides, f"finetune.task={name}"])
            spec, f = get_task(name), cfg.finetune
            reasons = {s: absent_reason(spec, s, Path(f.data_dir) if f.data_dir else None, f.splits)
                       for s in (spec.train_split, *spec.eval_splits)}  # fmt: skip
            for split, why in reasons.items():
                if why is not None:
                    writer.add_absent(name, split, f.splits.get(split), why)
            if not any(reasons.values()):
                writer.add_split_size(name, spec.train_split, f.splits.get(spec.train_split), train_examples(cfg))


def prepare_config(writer: PreparedWriter, cfg, with_task: bool):
    """The tokenizer, run-time texts, corpus (for a fine-tune from a pre-training) and task of one
    run; returns the run's tokenizer."""
    from gptbench.config import require_dir
    from gptbench.data.corpus import cached_corpus, split_books
    from gptbench.data.tokenizer_stage import run_tokenizer
    from gptbench.run_identity import _corpus_fingerprint, tokenizer_settings

    if cfg.prepared:
        raise PreparedError(f"prepare reads the raw files: unset prepared= (GPTBENCH_PREPARED), got {cfg.prepared}")
    tokenizer = run_tokenizer(cfg)
    writer.add_tokenizer(tokenizer, tokenizer_settings(cfg), _corpus_fingerprint(cfg.corpus.path))
    if tokenizer.fingerprint not in writer.manifest["prompts"]:
        writer.add_prompts(tokenizer, run_texts())
    if cfg.finetune.init == "pretrained" or not with_task:
        root = require_dir(cfg.corpus.path, "corpus.path", "GPTBENCH_CORPUS", "a folder of .txt books")
        c = cfg.corpus
        if corpus_item_key(tokenizer.fingerprint, c.val_books, c.max_bytes) not in writer.manifest["corpora"]:
            books = split_books(root, c.val_books, c.max_bytes)
            writer.add_corpus(cached_corpus(root, books, tokenizer, Path(cfg.cache_dir)), books, tokenizer,
                              c.val_books, c.max_bytes)  # fmt: skip
    if with_task:
        prepare_task(writer, cfg, tokenizer)
    return tokenizer


@dataclass
class Plan:
    """What a prepared directory is made for: pre-trainings (their corpus), fine-tunes (their
    tasks' rows), zero-shot evaluations (config, tasks, max_examples) of a pre-training, and the
    sweeps' tables with fallbacks (table, preset, overrides; see :func:`prepare_stand_ins`)."""

    pretrainings: list
    finetunes: list
    zero_shots: list[tuple] = field(default_factory=list)
    fallbacks: list[tuple] = field(default_factory=list)


def prepare(out: str | Path, plan: Plan, rows: str = "drawn", compress: bool = False) -> int:
    """Write (or add to) the prepared directory ``out`` for the runs of ``plan``; returns its
    size in bytes. ``rows="all"`` stores whole splits; ``compress`` compresses (see :func:`write_rows`)."""
    writer = PreparedWriter(Path(out), rows, compress)
    for cfg in plan.pretrainings:
        prepare_config(writer, cfg, with_task=False)
    for cfg in plan.finetunes:
        prepare_config(writer, cfg, with_task=True)
    for cfg, tasks, max_examples in plan.zero_shots:
        prepare_zero_shot(writer, cfg, prepare_config(writer, cfg, with_task=False), tasks, max_examples)
    for table, preset, overrides in plan.fallbacks:
        prepare_stand_ins(writer, table, preset, overrides)
    return writer.finish()


def reproduction_configs(preset: str, overrides: list[str], tasks: list[str] | None) -> Plan:
    """The runs of the preset's ``reproduce`` sweeps (the zero-shot curves included), limited to
    ``tasks`` if given (a table's task whose data is absent counts as the task standing in for
    it, e.g. RTE for Figure 2's MNLI); each of ``tasks`` is also prepared as ``gptbench finetune
    PRESET task=TASK`` reads it. (A fine-tune from a pre-training adds that pre-training's corpus.)"""
    from gptbench.config import experiment_files, load_config
    from gptbench.suite.figure2 import curve_run
    from gptbench.suite.sweep import expand, load_table, split_overrides, stand_ins
    from gptbench.tasks import get_task

    _, own = split_overrides(overrides)  # without the sweeps' keys (seeds=, results_dir=, ...)
    base = load_config(preset, own)
    plan = Plan([base], [])
    for sweep in base.reproduce.sweeps:
        keys, experiment = split_overrides([*base.reproduce.arguments(sweep), *overrides])
        if sweep in experiment_files("zero_shot_curve"):
            run = curve_run(sweep, preset, experiment, keys.get("tasks"), keys.get("max_examples"))
            wanted = [t for t in run.tasks if t in tasks] if tasks else run.tasks
            plan.zero_shots += [(cfg, wanted, run.max_examples) for cfg in run.configs.values() if wanted]
            continue
        table = load_table(sweep)
        chosen = stand_ins(table, preset, experiment)
        trained = {t: chosen[t][0] if t in chosen else t for t in table.tasks}  # the task each one trains on
        wanted = [t for t in table.tasks if trained[t] in tasks] if tasks else keys.get("tasks")
        if tasks and not wanted:
            continue
        runs = expand(table, preset, experiment, keys.get("seeds"), wanted, keys.get("variants"), chosen,
                      keys.get("task_seeds"), keys.get("task_overrides"))  # fmt: skip
        plan.finetunes += [run.config() for run in runs]
        plan.fallbacks += [(table, preset, experiment)] if table.fallbacks else []
    plan.finetunes += [load_config(preset, [*own, f"finetune.task={t}"]) for t in tasks or ()
                       if not get_task(t).zero_shot_only]  # fmt: skip
    return plan
