"""The declarative task spec and the readers for the original distribution formats.

A task is a :class:`TaskSpec`: where each split comes from (local files in their original
format, or the Hugging Face hub), its labels, input transformation and metrics. A source reads
records: dicts holding the transformation's fields (strings; ``choices`` a list of strings), a
``label`` (converted to a class index or a float score by the spec; None when unlabelled), an
optional ``group`` (RACE's middle/high) and ``_where`` (file:line, for error messages).
Nothing here knows about tokenizers or training.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping, Union

import numpy as np

# The fields each input transformation (paper, Figure 1) reads from a record.
TRANSFORMATION_FIELDS = {
    "classification": ("text",),
    "entailment": ("premise", "hypothesis"),
    "similarity": ("text_a", "text_b"),
    "multiple_choice": ("context", "choices"),  # plus an optional "question" kept after the context
    "substitution": ("text", "pronoun", "choices"),  # zero-shot only (DPRD)
}
ZERO_SHOT_ONLY = {"substitution"}

csv.field_size_limit(sys.maxsize)

# A column: an index (TSV), a name (CSV/JSON), or a tuple of them — joined with a space, or kept
# as a list for the "choices" field.
Column = Union[int, str, tuple]


class DataError(ValueError):
    """Malformed or missing task data; the message names the file and line or record."""


class SplitUnavailable(DataError):
    """A split whose data is not present (several are absent on the reference machine). The
    message is the fact a run records; ``hint`` says what a user can do about it, and is printed
    with the error on the command line only (not in every result file and report row)."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint


Record = dict


def _existing(path: Path) -> Path:
    if not path.exists():
        raise SplitUnavailable(f"{path}: not found")
    return path


def undecodable(error: UnicodeDecodeError, path: Path) -> str:
    """Where in ``path`` (a file, or a folder holding the file that failed) the bytes are not
    UTF-8, as file:line."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        data = file.read_bytes()
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as e:
            line = data.count(b"\n", 0, e.start) + 1
            return f"{file}:{line}: not UTF-8 text (byte {data[e.start:e.start + 1]!r} at offset {e.start})"
    return f"{path}: not UTF-8 text ({error.reason})"


def _assemble(get, columns: Mapping[str, Column], where: str) -> Record:
    record = {}
    for name, col in columns.items():
        if isinstance(col, tuple):
            values = [get(c) for c in col]
            record[name] = values if name == "choices" else " ".join(values)
        else:
            record[name] = get(col)
    record["_where"] = where
    return record


@dataclass(frozen=True)
class FileSource(ABC):
    """Base of the file readers. ``label_map`` renames raw labels; rows whose raw label is in
    ``drop_labels`` are left out (SNLI's '-' = no gold label) and counted as dropped."""

    file: str  # relative to the task's data directory (a directory for RACE)
    label_map: Mapping[str, str] = field(default_factory=dict, kw_only=True)
    drop_labels: tuple[str, ...] = field(default=(), kw_only=True)

    def read(self, root: Path) -> tuple[list[Record], int]:
        """(records, number of dropped rows)."""
        try:
            return self._read(_existing(root / self.file))
        except UnicodeDecodeError as e:
            raise DataError(undecodable(e, root / self.file)) from None

    def _read(self, path: Path) -> tuple[list[Record], int]:
        records, dropped = [], 0
        for r in self.rows(path):
            label = r.get("label")
            if label is not None and label in self.drop_labels:
                dropped += 1
                continue
            if label is not None:
                r["label"] = self.label_map.get(label, label)
            records.append(r)
        return records, dropped

    def missing(self, root: Path) -> str | None:
        """Why the file is absent (None when present), without reading it."""
        return None if (root / self.file).exists() else f"{root / self.file}: not found"

    @abstractmethod
    def rows(self, path: Path) -> Iterator[Record]:
        """The records of ``path`` in file order, labels raw."""

    def with_file(self, file: str) -> "FileSource":
        """The same format read from another file (a split substitution)."""
        return replace(self, file=file)


@dataclass(frozen=True)
class ColumnSource(FileSource):
    """A file of rows whose columns map onto record fields (TSV, CSV, JSON lines)."""

    columns: Mapping[str, Column] = field(default_factory=dict)
    label: int | str | None = None  # the label column; None for unlabelled files

    def column_names(self) -> list:
        names = [c for v in self.columns.values() for c in (v if isinstance(v, tuple) else (v,))]
        return names + ([] if self.label is None else [self.label])

    def record(self, get, where: str) -> Record:
        record = _assemble(get, self.columns, where)
        if self.label is not None:
            record["label"] = get(self.label)
        return record


@dataclass(frozen=True)
class TsvSource(ColumnSource):
    """GLUE-style TSV: tab-separated, quoting disabled (MRPC/STS-B contain stray quotes), UTF-8
    with an optional BOM. ``label`` may be negative (MNLI's gold_label is the last column).
    Rows with too few columns are errors, never skipped."""

    header: bool = True

    def rows(self, path: Path) -> Iterator[Record]:
        needed = max(c + 1 if c >= 0 else -c for c in self.column_names())
        width = None  # every row has the header's number of columns (or, without one, the first row's)
        with open(path, encoding="utf-8-sig", newline="") as f:
            for lineno, row in enumerate(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE), start=1):
                if width is None:
                    width = len(row)
                    if width < needed:
                        raise DataError(f"{path}:{lineno}: expected at least {needed} tab-separated columns, got {width}")
                    if self.header:
                        continue
                if len(row) != width:
                    first = "the header" if self.header else "line 1"
                    raise DataError(f"{path}:{lineno}: {len(row)} tab-separated columns where {first} has {width} "
                                    "(a tab or a line break inside a text field?)")  # fmt: skip
                yield self.record(row.__getitem__, f"{path}:{lineno}")


@dataclass(frozen=True)
class CsvSource(ColumnSource):
    """A CSV file with a header row; columns are named."""

    def rows(self, path: Path) -> Iterator[Record]:
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in self.column_names() if c not in (reader.fieldnames or [])]
            if missing:
                raise DataError(f"{path}:1: missing column(s) {missing}; header has {reader.fieldnames}")
            for lineno, row in enumerate(reader, start=2):
                if None in row or any(v is None for v in row.values()):
                    raise DataError(f"{path}:{lineno}: expected {len(reader.fieldnames)} comma-separated fields")
                yield self.record(row.__getitem__, f"{path}:{lineno}")


@dataclass(frozen=True)
class JsonlSource(ColumnSource):
    """One JSON object per line (SNLI's original .jsonl)."""

    def rows(self, path: Path) -> Iterator[Record]:
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
                try:
                    yield self.record(obj.__getitem__, f"{path}:{lineno}")
                except KeyError as e:
                    raise DataError(f"{path}:{lineno}: missing key {e.args[0]!r}") from None


@dataclass(frozen=True)
class RaceSource(FileSource):
    """RACE's tree: <file>/{middle,high}/*.txt, one JSON passage per file with parallel lists
    ``questions``, ``options`` (4 each) and ``answers`` ('A'-'D'); one record per question."""

    groups: tuple[str, ...] = ("middle", "high")

    def rows(self, path: Path) -> Iterator[Record]:
        for group in self.groups:
            files = sorted(_existing(path / group).glob("*.txt"), key=lambda p: (len(p.stem), p.stem))
            for file in files:
                try:
                    passage = json.loads(file.read_text(encoding="utf-8"))
                    questions, options, answers = passage["questions"], passage["options"], passage["answers"]
                    article = passage["article"]
                except json.JSONDecodeError as e:
                    raise DataError(f"{file}: not a RACE JSON passage ({e.msg} at line {e.lineno})") from None
                except (KeyError, TypeError) as e:
                    raise DataError(f"{file}: expected keys article, questions, options, answers ({e})") from None
                if not len(questions) == len(options) == len(answers):
                    raise DataError(f"{file}: {len(questions)} questions, {len(options)} option lists, {len(answers)} answers")
                for i, (question, choices, answer) in enumerate(zip(questions, options, answers)):
                    if len(choices) != 4:
                        raise DataError(f"{file}: question {i} has {len(choices)} options, expected 4")
                    yield {"context": article, "question": question, "choices": list(choices), "label": answer,
                           "group": group, "_where": f"{file} question {i}"}  # fmt: skip


@dataclass(frozen=True)
class DprdSource(FileSource):
    """DPRD (Rahman & Ng 2012): blocks of four lines — sentence, pronoun, 'cand1,cand2', answer —
    separated by a blank line. The label is the answer's index among the candidates."""

    def rows(self, path: Path) -> Iterator[Record]:
        lines = path.read_text(encoding="utf-8").replace("\r\n", "\n").split("\n")
        block: list[tuple[int, str]] = []
        for lineno, line in enumerate([*lines, ""], start=1):
            if line.strip():
                block.append((lineno, line.strip()))
                continue
            if not block:
                continue
            start = block[0][0]
            if len(block) != 4:
                raise DataError(f"{path}:{start}: expected a block of 4 lines, got {len(block)}")
            (_, sentence), (_, pronoun), (_, candidates), (_, answer) = block
            choices = [c.strip() for c in candidates.split(",")]
            if len(choices) != 2:
                raise DataError(f"{path}:{start + 2}: expected 'candidate1,candidate2', got {candidates!r}")
            if answer not in choices:
                raise DataError(f"{path}:{start + 3}: answer {answer!r} is not one of {choices}")
            yield {"text": sentence, "pronoun": pronoun, "choices": choices, "label": str(choices.index(answer)),
                   "_where": f"{path}:{start}"}  # fmt: skip
            block = []


@dataclass(frozen=True)
class SplitOf:
    """A seeded random part of another source, as ``sklearn.model_selection.train_test_split``
    makes it (used for the released Story Cloze split: 1,497 train / 374 validation)."""

    base: FileSource
    n_test: int
    seed: int
    part: str  # "train" or "test"

    def read(self, root: Path) -> tuple[list[Record], int]:
        records, dropped = self.base.read(root)
        order = np.random.RandomState(self.seed).permutation(len(records))
        picked = order[: self.n_test] if self.part == "test" else order[self.n_test :]
        return [records[i] for i in picked], dropped

    def missing(self, root: Path) -> str | None:
        return self.base.missing(root)

    def with_file(self, file: str) -> "SplitOf":
        return replace(self, base=self.base.with_file(file))


@dataclass(frozen=True)
class FirstAvailable:
    """The first of several sources whose file exists: the original format when the user has it,
    else a conversion (SNLI's and SciTail's CSVs on the reference machine)."""

    sources: tuple[FileSource, ...]

    def read(self, root: Path) -> tuple[list[Record], int]:
        for source in self.sources:
            if (root / source.file).exists():
                return source.read(root)
        raise SplitUnavailable(self.missing(root))

    def missing(self, root: Path) -> str | None:
        if any((root / s.file).exists() for s in self.sources):
            return None
        return " or ".join(str(root / s.file) for s in self.sources) + ": not found"

    def with_file(self, file: str) -> FileSource:
        suffix = Path(file).suffix
        matching = [s for s in self.sources if Path(s.file).suffix == suffix] or list(self.sources)
        return matching[0].with_file(file)


Source = Union[FileSource, SplitOf, FirstAvailable]


@dataclass(frozen=True)
class HubSource:
    """The same task on the Hugging Face hub, read through ``datasets.load_dataset``."""

    path: str
    name: str | tuple[str, ...] | None  # a tuple: one config per group (RACE's middle, high)
    splits: Mapping[str, str]  # our split name -> hub split name
    columns: Mapping[str, Column]  # record field -> hub column(s)
    label: str = "label"
    label_map: Mapping[str, str] = field(default_factory=dict)  # hub label name -> our label
    drop_unlabelled: bool = False  # rows labelled -1 outside test splits (SNLI: no gold label)


def glue_splits(columns: Mapping[str, Column], label: int, test_columns: Mapping[str, Column] | None = None,
                header: bool = True) -> dict[str, TsvSource]:  # fmt: skip
    """GLUE's train.tsv / dev.tsv (labelled) and test.tsv (unlabelled, for the GLUE server)."""
    labelled = {split: TsvSource(f"{split}.tsv", columns=columns, label=label, header=header) for split in ("train", "dev")}
    return {**labelled, "test": TsvSource("test.tsv", columns=test_columns or columns)}


def glue_hub(config: str, columns: Mapping[str, Column], label_map: Mapping[str, str] | None = None) -> HubSource:
    """The same task in nyu-mll/glue on the Hugging Face hub."""
    splits = {"train": "train", "dev": "validation", "test": "test"}
    return HubSource("nyu-mll/glue", config, splits=splits, columns=columns, label_map=label_map or {})


@dataclass(frozen=True)
class TaskSpec:
    name: str
    transformation: str  # a key of TRANSFORMATION_FIELDS
    labels: tuple[str, ...] | None  # label strings in class-index order; None = regression
    metrics: tuple[str, ...]  # the first one selects the best epoch
    splits: Mapping[str, Source]  # split name -> local source, relative to ``data_subdir``
    data_subdir: str  # below the benchmark data root (GPTBENCH_DATA)
    train_split: str = "train"
    eval_splits: tuple[str, ...] = ("dev",)  # scored after every epoch; the first selects
    test_splits: tuple[str, ...] = ()  # labelled held-out splits, scored once with the best weights
    truncate: str = "text"  # the field shortened when an example exceeds the context
    groups: tuple[str, ...] = ()  # sub-populations scored separately as well (RACE-m, RACE-h)
    hub: HubSource | None = None
    score_range: tuple[float, float] = (-math.inf, math.inf)  # regression: the scores allowed (finite)

    def __post_init__(self) -> None:
        if self.transformation not in TRANSFORMATION_FIELDS:
            raise ValueError(f"task {self.name}: unknown transformation {self.transformation!r}")
        for split in (self.train_split, *self.eval_splits, *self.test_splits):
            if split not in self.splits and (self.hub is None or split not in self.hub.splits):
                raise ValueError(f"task {self.name}: split {split!r} has no source")

    @property
    def num_outputs(self) -> int:
        return 1 if self.labels is None else len(self.labels)

    @property
    def zero_shot_only(self) -> bool:
        return self.transformation in ZERO_SHOT_ONLY

    @property
    def all_splits(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys([*self.splits, *(self.hub.splits if self.hub else ())]))

    def label_value(self, raw, where: str) -> int | float:
        """Class index (or float score for regression) of a raw label, with a clear error."""
        if self.labels is None:
            lo, hi = self.score_range
            try:
                score = float(raw)
            except (TypeError, ValueError):
                score = math.nan
            if not lo <= score <= hi:  # also false for nan
                raise DataError(f"{where}: expected a numeric score in [{lo:g}, {hi:g}], got {raw!r}")
            return score
        if raw not in self.labels:
            raise DataError(f"{where}: unknown label {raw!r} (expected one of {list(self.labels)})")
        return self.labels.index(raw)

    def missing(self, split: str, data_root: Path | None, file: str | None = None) -> str | None:
        """Why a split's local data is absent, without reading it (None: present, or on the hub)."""
        if data_root is None and file is None:
            return None
        if split not in self.splits:
            return f"task {self.name}: split {split!r} has no local source"
        source = self.splits[split] if file is None else self.splits[split].with_file(str(Path(file).resolve()))
        why = source.missing(Path(data_root or ".") / self.data_subdir)
        return f"task {self.name}, split {split!r}: {why}" if why else None

    def read(self, split: str, data_root: Path | None, file: str | None = None) -> tuple[list[Record], int]:
        """Records of one split and how many rows were dropped, from local files when
        ``data_root`` is given (``file`` reads the split's format from another path), else the
        hub. Labels come back converted; every field is checked to be non-empty."""
        if data_root is not None or file is not None:
            if split not in self.splits:
                raise SplitUnavailable(f"task {self.name}: split {split!r} has no local source")
            source = self.splits[split] if file is None else self.splits[split].with_file(str(Path(file).resolve()))
            root = Path(data_root or ".") / self.data_subdir
            try:
                records, dropped = source.read(root)
            except SplitUnavailable as e:  # the message :meth:`missing` gives, so a run records one reason
                raise SplitUnavailable(f"task {self.name}, split {split!r}: {e}", hint=(
                    f"to use other data, set finetune.splits.{split}=another split of the task or a file in this "
                    "split's format")) from None  # fmt: skip
        else:
            records, dropped = _read_hub(self, split), 0
        fields = TRANSFORMATION_FIELDS[self.transformation]
        for r in records:
            for name in fields:
                value = r.get(name)
                if not value or (name == "choices" and not all(value)):
                    raise DataError(f"{r['_where']}: empty {name!r}")
            if r.get("label") is not None:
                r["label"] = self.label_value(r["label"], r["_where"])
            if self.groups and r.get("group") not in self.groups:
                raise DataError(f"{r['_where']}: group {r.get('group')!r} is not one of {list(self.groups)}")
        return records, dropped


def _read_hub(spec: TaskSpec, split: str) -> list[Record]:
    if spec.hub is None or split not in spec.hub.splits:
        raise SplitUnavailable(f"task {spec.name}: split {split!r} is not on the hub; give a data_dir")
    hub = spec.hub
    configs = hub.name if isinstance(hub.name, tuple) else (hub.name,)
    records = []
    for config in configs:
        for record in _read_hub_config(hub, config, split):
            if isinstance(hub.name, tuple):
                record["group"] = config
            records.append(record)
    return records


def _read_hub_config(hub: HubSource, config: str | None, split: str) -> list[Record]:
    import datasets

    where = f"{hub.path}/{config}[{hub.splits[split]}]"
    try:
        ds = datasets.load_dataset(hub.path, config, split=hub.splits[split])
    except (ConnectionError, OSError, ValueError) as e:  # offline, unknown split, ...
        raise DataError(
            f"could not load {where} from the Hugging Face hub ({type(e).__name__}: {e}); "
            "point finetune.data_dir (GPTBENCH_DATA) at local data instead"
        ) from None
    label_feature = ds.features[hub.label]
    records = []
    for i, row in enumerate(ds):
        record = _assemble(row.__getitem__, hub.columns, f"{where} record {i}")
        raw = row[hub.label]
        if raw == -1 or raw is None:  # the hub's marker for unlabelled rows
            if hub.drop_unlabelled and split != "test":
                continue
            record["label"] = None
        else:
            name = label_feature.int2str(raw) if hasattr(label_feature, "int2str") else str(raw)
            record["label"] = hub.label_map.get(name, name)
        records.append(record)
    return records
