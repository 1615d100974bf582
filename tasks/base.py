"""The declarative task spec and the readers for the original distribution formats.

A task is a :class:`TaskSpec`: where each split comes from (local files in the original format,
or the Hugging Face hub), which fields it has, its labels, input transformation and metrics.
Readers turn a source into records: dicts of the transformation's fields (strings) plus a raw
``label`` string. Nothing here knows about tokenizers or training.
"""

from __future__ import annotations

import csv
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

# The fields each input transformation (paper, Figure 1) reads from a record.
TRANSFORMATION_FIELDS = {
    "classification": ("text",),
    "entailment": ("premise", "hypothesis"),
    "similarity": ("text_a", "text_b"),
    "multiple_choice": ("context", "choices"),
}

csv.field_size_limit(sys.maxsize)


class DataError(ValueError):
    """Malformed or missing task data; the message names the file and line or record."""


class SplitUnavailable(DataError):
    """A split whose data is not present (e.g. a split absent from this machine)."""


Record = dict  # field name -> str (or list[str] for choices); "label"; "_where" (file:line)


@dataclass(frozen=True)
class TsvSource:
    """A GLUE-style TSV file: tab-separated, quoting disabled, optional header.

    ``columns`` maps a record field to a column index; ``label`` is the label column (None for
    unlabelled test files). Rows with fewer columns than needed are errors, never skipped.
    """

    file: str  # relative to the task's data directory
    columns: Mapping[str, int]
    label: int | None = None
    header: bool = True

    def read(self, root: Path) -> list[Record]:
        path = _existing(root / self.file)
        needed = max([*self.columns.values(), -1 if self.label is None else self.label]) + 1
        records = []
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            for lineno, row in enumerate(reader, start=1):
                if lineno == 1 and self.header:
                    continue
                if len(row) < needed:
                    raise DataError(
                        f"{path}:{lineno}: expected at least {needed} tab-separated columns, got {len(row)}"
                    )
                record = {name: row[i] for name, i in self.columns.items()}
                if self.label is not None:
                    record["label"] = row[self.label]
                record["_where"] = f"{path}:{lineno}"
                records.append(record)
        return records


@dataclass(frozen=True)
class HubSource:
    """The same task on the Hugging Face hub, read through ``datasets.load_dataset``."""

    path: str
    name: str | None
    splits: Mapping[str, str]  # our split name -> hub split name
    columns: Mapping[str, str]  # record field -> hub column
    label: str = "label"
    label_map: Mapping[str, str] = field(default_factory=dict)  # hub label name -> our label


@dataclass(frozen=True)
class TaskSpec:
    name: str
    transformation: str  # a key of TRANSFORMATION_FIELDS
    labels: tuple[str, ...] | None  # label strings in class-index order; None = regression
    metrics: tuple[str, ...]  # the first one selects the best epoch
    splits: Mapping[str, TsvSource]  # split name -> local source, relative to ``data_subdir``
    data_subdir: str  # below the benchmark data root (GPTBENCH_DATA)
    train_split: str = "train"
    eval_splits: tuple[str, ...] = ("dev",)  # scored after every epoch; the first selects
    truncate: str = "text"  # the field shortened when an example exceeds the context
    hub: HubSource | None = None

    def __post_init__(self) -> None:
        if self.transformation not in TRANSFORMATION_FIELDS:
            raise ValueError(f"task {self.name}: unknown transformation {self.transformation!r}")
        for split in (self.train_split, *self.eval_splits):
            if split not in self.splits and (self.hub is None or split not in self.hub.splits):
                raise ValueError(f"task {self.name}: split {split!r} has no source")

    @property
    def num_outputs(self) -> int:
        return 1 if self.labels is None else len(self.labels)

    def label_value(self, raw, where: str) -> int | float:
        """Class index (or float score for regression) of a raw label, with a clear error."""
        if self.labels is None:
            try:
                return float(raw)
            except (TypeError, ValueError):
                raise DataError(f"{where}: expected a numeric score, got {raw!r}") from None
        if raw not in self.labels:
            raise DataError(f"{where}: unknown label {raw!r} (expected one of {list(self.labels)})")
        return self.labels.index(raw)

    def read(self, split: str, data_root: Path | None) -> list[Record]:
        """Records of one split, from local files when ``data_root`` is given, else the hub.
        Labels come back converted: a class index, a float score, or None (unlabelled)."""
        if data_root is not None:
            if split not in self.splits:
                raise SplitUnavailable(f"task {self.name}: split {split!r} has no local source")
            records = self.splits[split].read(Path(data_root) / self.data_subdir)
        else:
            records = _read_hub(self, split)
        for r in records:
            for name in TRANSFORMATION_FIELDS[self.transformation]:
                if not r.get(name):
                    raise DataError(f"{r['_where']}: empty {name!r}")
            if r.get("label") is not None:
                r["label"] = self.label_value(r["label"], r["_where"])
        return records


def _existing(path: Path) -> Path:
    if not path.is_file():
        raise SplitUnavailable(f"{path}: file not found")
    return path


def _read_hub(spec: TaskSpec, split: str) -> list[Record]:
    if spec.hub is None or split not in spec.hub.splits:
        raise SplitUnavailable(f"task {spec.name}: split {split!r} is not on the hub; give a data_dir")
    import datasets

    hub = spec.hub
    try:
        ds = datasets.load_dataset(hub.path, hub.name, split=hub.splits[split])
    except (ConnectionError, OSError, ValueError) as e:  # offline, unknown split, ...
        raise DataError(
            f"task {spec.name}: could not load {hub.path}/{hub.name} [{hub.splits[split]}] from the Hugging Face "
            f"hub ({type(e).__name__}: {e}); point finetune.data_dir (GPTBENCH_DATA) at local data instead"
        ) from None
    label_names: Callable[[int], str] = getattr(ds.features[hub.label], "int2str", str)
    records = []
    for i, row in enumerate(ds):
        record = {name: row[col] for name, col in hub.columns.items()}
        if row[hub.label] == -1:  # the hub's marker for unlabelled test rows
            record["label"] = None
        else:
            name = label_names(row[hub.label])
            record["label"] = hub.label_map.get(name, name)
        record["_where"] = f"{hub.path}/{hub.name}[{hub.splits[split]}] record {i}"
        records.append(record)
    return records
