"""Shared machinery that turns any TaskSpec into batches with the paper's input transformations.

Every example becomes C token sequences (C = 1 for classification and entailment, 2 for
similarity, k for multiple choice), each ``[start] ... [extract]``; batches are
``input_ids``/``attention_mask`` of shape (B, C, T), padded to the longest sequence in the batch.
Encoded splits are cached on disk as ``datasets`` Arrow files keyed by data, tokenizer and
context length, so a second run does no tokenization.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import datasets
import lightning as L
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
import numpy as np
import torch
from torch.utils.data import DataLoader

from gptbench.io import default_cache_dir
from gptbench.tasks import SplitUnavailable, TaskSpec, get_task
from gptbench.tasks.base import TRANSFORMATION_FIELDS, DataError
from gptbench.data.tokenizer import Tokenizer
from gptbench.data.loaders import loader_options
from gptbench.data.sampling import ResumableSampler, attached_context, batches_done_this_epoch, private_generator

_FORMAT_VERSION = 1


def _fit(segments: dict[str, list[int]], budget: int, truncate: str) -> tuple[dict[str, list[int]], bool]:
    """Shorten segments to ``budget`` tokens in total: first the ``truncate`` segment (from its
    end), then, only if that is not enough, the longest remaining one. Returns (segments, cut)."""
    total = sum(map(len, segments.values()))
    if total <= budget:
        return segments, False
    segments = dict(segments)
    if truncate in segments:
        excess = total - budget
        segments[truncate] = segments[truncate][: max(0, len(segments[truncate]) - excess)]
    while sum(map(len, segments.values())) > budget:
        longest = max(segments, key=lambda k: len(segments[k]))
        segments[longest] = segments[longest][:-1]
    return segments, True


INPUT_FORMATS = ("gpt", "bert")


def layout(spec: TaskSpec, ids: dict, tok: Tokenizer, n_ctx: int, input_format: str = "gpt") -> tuple[list[list[int]], bool]:
    """The paper's input transformation (Figure 1) of one example's token ids.

    ``input_format="bert"``: BERT's conventions for the encoder instead: ``[CLS] a [SEP] b [SEP]``
    (the start token as [CLS], the delimiter as [SEP]; the encoder gives the tokens after the first
    [SEP] segment B), and similarity in one order, text_a first (BERT reads both orders at once:
    its attention is not causal)."""
    if input_format not in INPUT_FORMATS:
        raise ValueError(f"input_format must be one of {INPUT_FORMATS}, got {input_format!r}")
    s, d = tok.start_id, tok.delimiter_id
    e = d if input_format == "bert" else tok.extract_id
    t = spec.transformation
    if t == "classification":
        seg, cut = _fit({"text": ids["text"]}, n_ctx - 2, "text")
        return [[s, *seg["text"], e]], cut
    if t == "entailment":
        seg, cut = _fit({"premise": ids["premise"], "hypothesis": ids["hypothesis"]}, n_ctx - 3, spec.truncate)
        return [[s, *seg["premise"], d, *seg["hypothesis"], e]], cut
    if t == "similarity":
        seg, cut = _fit({"text_a": ids["text_a"], "text_b": ids["text_b"]}, n_ctx - 3, spec.truncate)
        a, b = seg["text_a"], seg["text_b"]
        return [[s, *a, d, *b, e]] + ([] if input_format == "bert" else [[s, *b, d, *a, e]]), cut
    if t != "multiple_choice":
        raise ValueError(f"task {spec.name}: the {t!r} transformation is zero-shot only (no fine-tuning input)")
    sequences, any_cut = [], False
    question = ids.get("question", [])
    for choice in ids["choices"]:
        # The question (RACE) follows the context and, like the answer, is never cut.
        seg, cut = _fit({"context": ids["context"], "question": question, "choice": choice}, n_ctx - 3, "context")
        sequences.append([s, *seg["context"], *seg["question"], d, *seg["choice"], e])
        any_cut |= cut
    return sequences, any_cut


def _encode_unique(tok: Tokenizer, texts: list[str]) -> list[list[int]]:
    """Tokenize each distinct text once (RACE asks ~3.5 questions per article)."""
    unique = list(dict.fromkeys(texts))
    ids = dict(zip(unique, tok.encode_batch(unique)))
    return [ids[t] for t in texts]


def encode_split(spec: TaskSpec, records: list[dict], tok: Tokenizer, n_ctx: int, input_format: str = "gpt") -> datasets.Dataset:
    """Tokenize every field of every record in batch, then lay out the sequences (:func:`layout`)."""
    fields = TRANSFORMATION_FIELDS[spec.transformation]
    if any("question" in r for r in records):
        fields = (*fields, "question")
    encoded: dict[str, list] = {}
    for name in fields:
        if name == "choices":
            flat = _encode_unique(tok, [c for r in records for c in r["choices"]])
            out, i = [], 0
            for r in records:
                out.append(flat[i : i + len(r["choices"])])
                i += len(r["choices"])
            encoded[name] = out
        else:
            encoded[name] = _encode_unique(tok, [r.get(name, "") for r in records])
    input_ids, labels, truncated = [], [], []
    for i, r in enumerate(records):
        sequences, cut = layout(spec, {name: encoded[name][i] for name in fields}, tok, n_ctx, input_format)
        input_ids.append(sequences)
        truncated.append(cut)
        labels.append(r.get("label"))
    columns = {"input_ids": input_ids, "label": labels, "truncated": truncated}
    features = {
        "input_ids": datasets.Sequence(datasets.Sequence(datasets.Value("int32"))),
        "label": datasets.Value("float32" if spec.labels is None else "int64"),
        "truncated": datasets.Value("bool"),
    }
    if spec.groups:
        columns["group"] = [spec.groups.index(r["group"]) for r in records]
        features["group"] = datasets.Value("int64")
    return datasets.Dataset.from_dict(columns, features=datasets.Features(features))


def _records_digest(records: list[dict]) -> str:
    """Content hash of the records (locations excluded), so a moved data folder stays cached."""
    h = hashlib.sha256()
    for r in records:
        h.update(json.dumps({k: v for k, v in r.items() if k != "_where"}, sort_keys=True).encode())
    return h.hexdigest()


@dataclass
class EncodedSplit:
    data: datasets.Dataset
    source: str  # where the records came from: the task's own split, another split, or a file
    dropped: int  # rows left out by the task's rules (SNLI: no gold label)


def read_split(spec: TaskSpec, split: str, data_root: Path | None, source: str | None = None) -> tuple[list[dict], int, str]:
    """(records, dropped rows, where they came from). ``source`` substitutes another split of the
    task or a file in this split's format (e.g. train on SNLI dev)."""
    if source is None or source == split:
        records, dropped = spec.read(split, data_root)
        where = split
    elif source in spec.all_splits:
        records, dropped = spec.read(source, data_root)
        where = f"split {source}"
    else:
        records, dropped = spec.read(split, data_root, file=source)
        where = f"file {Path(source).resolve()}"
    if not records:
        raise DataError(f"task {spec.name}: split {split!r} ({where}) has no examples")
    return records, dropped, where


def absent_reason(spec: TaskSpec, split: str, data_root: Path | None, sources: Mapping[str, str]) -> str | None:
    """Why a split's data (after substitution) is absent, found without reading it; None when it
    is present (or comes from the hub)."""
    source = sources.get(split)
    if source in spec.all_splits:
        split, source = source, None
    return spec.missing(split, data_root, source)


def random_subset(records: list, n: int, seed: int) -> list:
    """``n`` records drawn with ``seed``, kept in their original order."""
    if n >= len(records):
        return records
    keep = np.random.RandomState(seed).permutation(len(records))[:n]
    return [records[i] for i in sorted(keep)]


def holdout_size(n_train: int, fraction: float, maximum: int) -> int:
    return max(1, min(maximum, round(fraction * n_train)))


def split_off_holdout(records: list, fraction: float, maximum: int) -> tuple[list, list]:
    """(training records, held-out records): a fixed slice drawn with seed 0, the same for every
    run seed, so that runs differ only in what they are meant to differ in."""
    n = holdout_size(len(records), fraction, maximum)
    if n >= len(records):
        raise DataError(f"{len(records)} training examples are too few to hold {n} out for selection")
    held = set(np.random.RandomState(0).permutation(len(records))[:n].tolist())
    return ([r for i, r in enumerate(records) if i not in held], [r for i, r in enumerate(records) if i in held])


def encode_cached(spec: TaskSpec, split: str, records: list[dict], tok: Tokenizer, n_ctx: int, cache_dir: Path,
                  input_format: str = "gpt") -> datasets.Dataset:  # fmt: skip
    """The records encoded; tokenization runs only the first time for the same records,
    tokenizer, context and input format."""
    fmt = "" if input_format == "gpt" else f"|{input_format}"  # GPT's keys are as before the encoder existed
    key = hashlib.sha256(
        f"v{_FORMAT_VERSION}|{spec.name}|{spec.transformation}|{tok.fingerprint}|{n_ctx}{fmt}|{_records_digest(records)}".encode()
    ).hexdigest()[:20]
    target = Path(cache_dir) / "tasks" / spec.name / f"{split}-{key}"
    if not (target / "dataset_info.json").is_file():
        tmp = target.with_name(f"{target.name}.tmp{os.getpid()}")  # DDP's processes may encode side by side
        shutil.rmtree(tmp, ignore_errors=True)
        encode_split(spec, records, tok, n_ctx, input_format).save_to_disk(str(tmp))
        if (target / "dataset_info.json").is_file():  # another process finished the same encoding first
            shutil.rmtree(tmp)
        else:
            shutil.rmtree(target, ignore_errors=True)
            tmp.rename(target)
    return datasets.load_from_disk(str(target))


def load_encoded(spec: TaskSpec, split: str, tok: Tokenizer, n_ctx: int, data_root: Path | None, cache_dir: Path,
                 source: str | None = None, max_examples: int | None = None,
                 sample_seed: int = 0) -> EncodedSplit:  # fmt: skip
    """One split, encoded and cached; ``max_examples`` keeps a random subset drawn with
    ``sample_seed``, in the split's order, chosen before tokenization."""
    records, dropped, where = read_split(spec, split, data_root, source)
    if max_examples is not None:
        records = random_subset(records, max_examples, sample_seed)
    return EncodedSplit(encode_cached(spec, split, records, tok, n_ctx, cache_dir), where, dropped)


def collate(examples: list[dict]) -> dict[str, torch.Tensor]:
    """Pad to the longest sequence in the batch: (B, C, T) ids and mask, (B,) labels (and groups,
    and the examples' positions in their split for prediction splits)."""
    B, C = len(examples), len(examples[0]["input_ids"])
    T = max(len(seq) for ex in examples for seq in ex["input_ids"])
    input_ids = torch.zeros(B, C, T, dtype=torch.long)
    attention_mask = torch.zeros(B, C, T, dtype=torch.long)
    for b, ex in enumerate(examples):
        if len(ex["input_ids"]) != C:
            raise ValueError(f"examples in one batch have {C} and {len(ex['input_ids'])} sequences")
        for c, seq in enumerate(ex["input_ids"]):
            input_ids[b, c, : len(seq)] = torch.as_tensor(seq)
            attention_mask[b, c, : len(seq)] = 1
    batch = {"input_ids": input_ids, "attention_mask": attention_mask}
    if examples[0]["label"] is not None:
        batch["labels"] = torch.tensor([ex["label"] for ex in examples])
    for key, out in (("group", "groups"), ("index", "index")):
        if key in examples[0]:
            batch[out] = torch.tensor([ex[key] for ex in examples])
    return batch


def _data_root(data_dir: str | Path | None) -> Path | None:
    """None -> ``$GPTBENCH_DATA`` if set, else the hub; "hub" -> the hub; else a directory."""
    if data_dir is None:
        data_dir = os.environ.get("GPTBENCH_DATA") or "hub"
    if str(data_dir) == "hub":
        return None
    path = Path(data_dir).expanduser()
    if not path.is_dir():
        raise DataError(f"data_dir={str(data_dir)!r}: directory does not exist (the benchmark data root)")
    return path


class TaskDataModule(L.LightningDataModule):
    """Batches of one task with the paper's input transformations, for any Lightning Trainer.

    - ``fit``/``validate``: the training split (shuffled, exact-resume aware) and the task's
      evaluation splits (``eval_splits``, dataset order), scored after every epoch;
    - ``test``: the labelled held-out test splits present (``test_splits``; the absent ones are
      listed in ``unavailable``);
    - ``predict``: the unlabelled test files of the GLUE server (``predict_splits``), in file
      order, never subsampled, each batch carrying the examples' ``index``.

    Under DDP each process trains on its share of the shuffled order and scores a share of every
    evaluation, test and prediction split, none repeated (see ``_share``).

    Args:
        task: a task name (``gptbench.tasks.TASKS``) or a TaskSpec.
        tokenizer: the model's tokenizer (``Tokenizer.load``, ``Tokenizer.gpt1``, ...).
        batch_size: examples per batch (the paper: 32).
        n_ctx: the context the examples are fitted into; default: the attached model's
            ``config.n_ctx`` when a Trainer runs this module with a gptbench LightningModule,
            otherwise the paper's 512.
        data_dir: the benchmark data root in the original formats; default ``$GPTBENCH_DATA``,
            and the Hugging Face hub when that is unset (``"hub"`` forces the hub).
        cache_dir: where encoded splits are cached; default ``$GPTBENCH_CACHE`` or
            ``~/.cache/gptbench``.
        seed: shuffling (and ``max_train_examples`` subsampling) seed.
        max_train_examples / max_eval_examples: random subsets (evaluation subsets are drawn
            with seed 0, so every run scores the same examples).
        splits: substitutions, split -> another split of the task or a file in the split's
            format, e.g. ``{"train": "dev", "dev": "test"}``; recorded in ``info``.
        holdout_fraction / holdout_max: hold this fraction of the training split (at most
            ``holdout_max`` examples, the same slice for every seed) out of training as the
            ``holdout`` split, for choosing epochs or settings without touching dev.
        eval_splits: the splits ``val_dataloader`` serves; default: the task's evaluation splits
            (``["holdout"]`` selects on the held-out slice only).
        length_grouped: batch training examples of similar length together.
        num_workers: DataLoader workers (0: batches are built in the training process).
        prefetch_factor, persistent_workers: with workers, batches each worker prepares ahead, and
            whether the workers outlive an epoch. Batches are pinned when the Trainer runs on CUDA.
        input_format: "gpt" (the paper's transformations) or "bert" (BERT's conventions, for the
            encoder; see :func:`layout`).
        prepared: a :class:`gptbench.data.prepared.PreparedData`: the splits are drawn by position
            from its prepared splits (their full lengths, the rows stored mapped from positions),
            so they are the same subsets; ``data_dir`` is then not read.
    """

    def __init__(self, task: str | TaskSpec, tokenizer: Tokenizer, *, batch_size: int = 32, n_ctx: int | None = None,
                 data_dir: str | Path | None = None, cache_dir: str | Path | None = None, seed: int = 1234,
                 max_train_examples: int | None = None, max_eval_examples: int | None = None,
                 splits: Mapping[str, str] | None = None, holdout_fraction: float | None = None,
                 holdout_max: int = 2000, eval_splits: list[str] | None = None, length_grouped: bool = False,
                 num_workers: int = 0, prefetch_factor: int = 2, persistent_workers: bool = True,
                 input_format: str = "gpt", prepared=None):  # fmt: skip
        super().__init__()
        spec = get_task(task) if isinstance(task, str) else task
        if input_format not in INPUT_FORMATS:
            raise ValueError(f"input_format must be one of {INPUT_FORMATS}, got {input_format!r}")
        self.input_format = input_format
        if spec.zero_shot_only:
            raise ValueError(f"task {spec.name} is zero-shot only: it has no fine-tuning batches")
        for name, value in (("batch_size", batch_size), ("n_ctx", n_ctx), ("max_train_examples", max_train_examples),
                            ("max_eval_examples", max_eval_examples)):  # fmt: skip
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive, got {value}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        if prefetch_factor < 1:
            raise ValueError(f"prefetch_factor must be >= 1, got {prefetch_factor}")
        unknown = sorted(set(splits or {}) - set(spec.all_splits))
        if unknown:
            raise ValueError(f"splits: {unknown} are not splits of {spec.name} (splits: {list(spec.all_splits)})")
        self.spec, self.tokenizer, self._n_ctx = spec, tokenizer, n_ctx
        self.prepared = prepared
        self.data_root = None if prepared is not None else _data_root(data_dir)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.batch_size, self.seed, self.num_workers = batch_size, seed, num_workers
        self.prefetch_factor, self.persistent_workers = prefetch_factor, persistent_workers
        self.max_train, self.max_eval, self.length_grouped = max_train_examples, max_eval_examples, length_grouped
        if holdout_fraction is not None and not 0 < holdout_fraction < 1:
            raise ValueError(f"holdout_fraction must be in (0, 1), got {holdout_fraction}")
        known = [*spec.all_splits, *(["holdout"] if holdout_fraction else [])]
        if eval_splits is not None and (not eval_splits or set(eval_splits) - set(known)):
            raise ValueError(f"eval_splits={eval_splits}: expected a non-empty list of {known}")
        self.sources = dict(splits or {})
        self.holdout = (holdout_fraction, holdout_max) if holdout_fraction else None
        self.report_splits: list[str] = list(spec.eval_splits)  # the task's evaluation splits
        self.eval_splits: list[str] = list(eval_splits or spec.eval_splits)
        self.test_splits: list[str] = []  # the labelled test splits present (after setup("test"))
        self.unavailable: dict[str, str] = {}  # test splits whose data is absent, and why
        scored = {spec.train_split, *spec.eval_splits, *spec.test_splits}
        self.predict_splits: list[str] = [s for s in spec.all_splits if s not in scored]
        self.splits: dict[str, datasets.Dataset] = {}
        self.info: dict[str, EncodedSplit] = {}
        self.full_examples: dict[str, int] = {}  # a split's examples before holdout and subsampling

    @property
    def n_ctx(self) -> int:
        return self._n_ctx if self._n_ctx is not None else attached_context(self.trainer)

    @property
    def data_source(self) -> str:
        """Where the task's data is read from: a folder, or the hub dataset."""
        if self.prepared is not None:
            return self.prepared.data_source(self.spec.name)
        return str(self.data_root / self.spec.data_subdir) if self.data_root else f"hub:{self.spec.hub.path}"

    def _drawn(self, split: str, records: list, where: str) -> tuple[list, str]:
        """A split's records (or their positions) after holdout and subsampling (evaluation
        subsets use seed 0, so every run scores the same examples; prediction splits are never
        subsampled)."""
        train = self.spec.train_split
        if self.holdout and split in (train, "holdout"):
            rest, held = split_off_holdout(records, *self.holdout)
            records, where = (held, f"{where}, held out") if split == "holdout" else (rest, f"{where}, minus holdout")
        if split == train and self.max_train is not None:
            records = random_subset(records, self.max_train, self.seed)
        elif split not in (train, *self.predict_splits) and self.max_eval is not None:
            records = random_subset(records, self.max_eval, 0)
        return records, where

    def _prepared_split(self, split: str):
        return self.prepared.task_split(self.spec.name, split, self.sources.get(split), self.tokenizer.fingerprint,
                                        self.n_ctx, self.input_format)  # fmt: skip

    def _encoded(self, split: str) -> EncodedSplit:
        """One split after holdout and subsampling: read and encoded (cached), or drawn by
        position from the prepared directory's split (a position it does not hold is refused)."""
        base = self.spec.train_split if split == "holdout" else split
        if self.prepared is not None:
            full, dropped, where = self._prepared_split(base)
            self.full_examples[split] = len(full)
            positions, where = self._drawn(split, list(range(len(full))), where)
            return EncodedSplit(full.select(positions), where, dropped)
        records, dropped, where = read_split(self.spec, base, self.data_root, self.sources.get(base))
        self.full_examples[split] = len(records)
        records, where = self._drawn(split, records, where)
        return EncodedSplit(encode_cached(self.spec, split, records, self.tokenizer, self.n_ctx, self.cache_dir,
                                          self.input_format), where, dropped)  # fmt: skip

    def load(self, split: str) -> datasets.Dataset:
        """One split, encoded (from the cache after the first time)."""
        if split not in self.splits:
            predict = split in self.predict_splits
            encoded = self._encoded(split)
            data = encoded.data.remove_columns("truncated")
            if predict:
                data = data.add_column("index", list(range(len(data))))
            self.info[split] = encoded
            self.splits[split] = data
        return self.splits[split]

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit"):
            self.load(self.spec.train_split)
        if stage in (None, "fit", "validate"):
            for split in self.eval_splits:
                self.load(split)
        if stage in (None, "test"):
            self.setup_test_splits()
        if stage == "predict":
            for split in self.predict_splits:
                self.load(split)

    def setup_test_splits(self) -> list[str]:
        """Load every labelled test split that is present; record the absent ones."""
        for split in self.spec.test_splits:
            if split in self.test_splits or split in self.unavailable:
                continue
            try:
                self.load(split)
                self.test_splits.append(split)
            except SplitUnavailable as e:
                self.unavailable[split] = str(e)
        return self.test_splits

    @property
    def num_train_batches(self) -> int | None:
        """Training batches per epoch on this process (None before ``setup``)."""
        if self.spec.train_split not in self.splits:
            return None
        world = self.trainer.world_size if self.trainer is not None else 1
        return math.ceil(math.ceil(len(self.splits[self.spec.train_split]) / world) / self.batch_size)

    def _samples_done(self) -> int:
        """Samples of the shuffled order already consumed (by all processes under DDP)."""
        world = self.trainer.world_size if self.trainer is not None else 1
        return batches_done_this_epoch(self.trainer) * self.batch_size * world

    def train_dataloader(self) -> DataLoader:
        ds = self.load(self.spec.train_split)
        lengths = [max(map(len, ids)) for ids in ds["input_ids"]] if self.length_grouped else None
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer is not None else (0, 1)
        sampler = ResumableSampler(len(ds), self.seed, lengths, self.batch_size, samples_done=self._samples_done,
                                   rank=rank, world=world)  # fmt: skip
        return DataLoader(ds, batch_size=self.batch_size, sampler=sampler, collate_fn=collate,
                          generator=private_generator(self.seed), **self._loader_options())  # fmt: skip

    def _loader_options(self) -> dict:
        return loader_options(self.trainer, self.num_workers, self.prefetch_factor, self.persistent_workers)

    def _ordered(self, splits: list[str]) -> list[DataLoader]:
        loaders = []
        for split in splits:
            data = self.load(split)
            loaders.append(DataLoader(data, batch_size=self.batch_size, sampler=self._share(data), collate_fn=collate,
                                      generator=private_generator(self.seed), **self._loader_options()))  # fmt: skip
        return loaders

    def _share(self, data: datasets.Dataset) -> UnrepeatedDistributedSampler | None:
        """Under DDP, this process's share of an evaluation split: every world-th example, none
        repeated (Lightning's default DistributedSampler pads the shares to equal length by
        repeating up to world - 1 examples, which the scores would then count twice). The
        metrics sum their states over the processes; predictions are gathered by
        FinetuneModule. None (the split in order) on one process."""
        if self.trainer is None or self.trainer.world_size == 1:
            return None
        if len(data) < self.trainer.world_size:
            raise ValueError(f"an evaluation split of {len(data)} examples cannot be shared by "
                             f"{self.trainer.world_size} processes; score it on fewer devices")  # fmt: skip
        return UnrepeatedDistributedSampler(data, num_replicas=self.trainer.world_size, rank=self.trainer.global_rank,
                                            shuffle=False)  # fmt: skip

    def val_dataloader(self) -> list[DataLoader]:
        return self._ordered(self.eval_splits)

    def test_dataloader(self) -> list[DataLoader]:
        if not self.setup_test_splits():
            absent = "; ".join(self.unavailable.values()) or "the task has none"
            raise SplitUnavailable(f"task {self.spec.name}: no labelled test split to score ({absent})")
        return self._ordered(self.test_splits)

    def predict_dataloader(self) -> list[DataLoader]:
        if not self.predict_splits:
            raise SplitUnavailable(f"task {self.spec.name}: no unlabelled test split to predict")
        return self._ordered(self.predict_splits)


def datamodule(task: str | TaskSpec, tokenizer: Tokenizer, **options) -> TaskDataModule:
    """The DataModule of one of the paper's tasks, e.g.
    ``gptbench.datamodule("rte", tokenizer, data_dir="../shared/data", batch_size=32)``;
    ``options`` are :class:`TaskDataModule`'s keywords."""
    return TaskDataModule(task, tokenizer, **options)
