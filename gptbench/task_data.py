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
import shutil
from dataclasses import dataclass
from pathlib import Path

import datasets
import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from gptbench.tasks import TaskSpec
from gptbench.tasks.base import TRANSFORMATION_FIELDS, DataError
from gptbench.tokenizer import Tokenizer
from gptbench.training import ResumableSampler, batches_done_this_epoch, private_generator

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


def layout(spec: TaskSpec, ids: dict, tok: Tokenizer, n_ctx: int) -> tuple[list[list[int]], bool]:
    """The paper's input transformation (Figure 1) of one example's token ids."""
    s, d, e = tok.start_id, tok.delimiter_id, tok.extract_id
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
        return [[s, *a, d, *b, e], [s, *b, d, *a, e]], cut
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


def encode_split(spec: TaskSpec, records: list[dict], tok: Tokenizer, n_ctx: int) -> datasets.Dataset:
    """Tokenize every field of every record in batch, then lay out the sequences."""
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
        sequences, cut = layout(spec, {name: encoded[name][i] for name in fields}, tok, n_ctx)
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


def load_encoded(spec: TaskSpec, split: str, tok: Tokenizer, n_ctx: int, data_root: Path | None, cache_dir: Path,
                 source: str | None = None, max_examples: int | None = None,
                 sample_seed: int = 0) -> EncodedSplit:  # fmt: skip
    """One split, encoded; tokenization runs only the first time for the same records, tokenizer
    and context. ``source`` substitutes another split of the task or a file in this split's
    format (e.g. train on SNLI dev). ``max_examples`` keeps a random subset drawn with
    ``sample_seed``, in the split's order, chosen before tokenization."""
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
    if max_examples is not None and max_examples < len(records):
        keep = np.random.RandomState(sample_seed).permutation(len(records))[:max_examples]
        records = [records[i] for i in sorted(keep)]
    key = hashlib.sha256(
        f"v{_FORMAT_VERSION}|{spec.name}|{spec.transformation}|{tok.fingerprint}|{n_ctx}|{_records_digest(records)}".encode()
    ).hexdigest()[:20]
    target = Path(cache_dir) / "tasks" / spec.name / f"{split}-{key}"
    if not (target / "dataset_info.json").is_file():
        tmp = target.with_name(target.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        encode_split(spec, records, tok, n_ctx).save_to_disk(str(tmp))
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
    return EncodedSplit(datasets.load_from_disk(str(target)), where, dropped)


def collate(examples: list[dict]) -> dict[str, torch.Tensor]:
    """Pad to the longest sequence in the batch: (B, C, T) ids and mask, (B,) labels (and groups)."""
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
    if "group" in examples[0]:
        batch["groups"] = torch.tensor([ex["group"] for ex in examples])
    return batch


class TaskDataModule(L.LightningDataModule):
    """Training and evaluation batches for one task; evaluation splits keep the dataset's order.

    ``eval_splits`` lists the splits ``val_dataloader`` serves (the runner adds the test splits
    for the final scoring); ``sources`` substitutes splits (see ``load_encoded``).
    """

    def __init__(self, spec: TaskSpec, tokenizer: Tokenizer, n_ctx: int, data_root: Path | None, cache_dir: Path,
                 batch_size: int, seed: int, max_train_examples: int | None = None,
                 max_eval_examples: int | None = None, length_grouped: bool = False, num_workers: int = 0,
                 sources: dict[str, str] | None = None):  # fmt: skip
        super().__init__()
        self.spec, self.tokenizer, self.n_ctx = spec, tokenizer, n_ctx
        self.data_root, self.cache_dir = data_root, Path(cache_dir)
        self.batch_size, self.seed, self.num_workers = batch_size, seed, num_workers
        self.max_train, self.max_eval, self.length_grouped = max_train_examples, max_eval_examples, length_grouped
        self.sources = dict(sources or {})
        self.eval_splits: list[str] = list(spec.eval_splits)
        self.splits: dict[str, datasets.Dataset] = {}
        self.info: dict[str, EncodedSplit] = {}

    def load(self, split: str) -> datasets.Dataset:
        if split not in self.splits:
            train = split == self.spec.train_split
            encoded = load_encoded(self.spec, split, self.tokenizer, self.n_ctx, self.data_root, self.cache_dir,
                                   self.sources.get(split), self.max_train if train else self.max_eval,
                                   self.seed if train else 0)  # every run scores the same evaluation subset
            self.info[split] = encoded
            self.splits[split] = encoded.data.remove_columns("truncated")
        return self.splits[split]

    def setup(self, stage: str | None = None) -> None:
        for split in (self.spec.train_split, *self.eval_splits):
            self.load(split)

    def train_dataloader(self) -> DataLoader:
        ds = self.splits[self.spec.train_split]
        lengths = [max(map(len, ids)) for ids in ds["input_ids"]] if self.length_grouped else None
        sampler = ResumableSampler(len(ds), self.seed, lengths, self.batch_size)
        if self.trainer is not None:
            sampler.skip_next(batches_done_this_epoch(self.trainer) * self.batch_size)
        return DataLoader(ds, batch_size=self.batch_size, sampler=sampler, collate_fn=collate,
                          num_workers=self.num_workers, generator=private_generator(self.seed))  # fmt: skip

    def val_dataloader(self) -> list[DataLoader]:
        return [
            DataLoader(self.load(s), batch_size=self.batch_size, shuffle=False, collate_fn=collate,
                       num_workers=self.num_workers, generator=private_generator(self.seed))  # fmt: skip
            for s in self.eval_splits
        ]
