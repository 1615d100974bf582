"""A fine-tuned task model in one directory: the network, its task head, the task's label names and
the tokenizer, loadable in a line and run on raw examples::

    from gptbench import TaskModel

    sst2 = TaskModel.from_pretrained("runs/mini/finetune/sst2/<variant>/seed1234/model")
    sst2.predict("a gripping, beautifully made film")            # -> ['1']
    rte = TaskModel.from_pretrained(".../rte/.../model")
    rte.predict([("A man is playing a guitar.", "A man plays music.")])  # -> ['entailment']

Examples are the task's fields (``TaskModel.fields``): a string for one-text tasks, a tuple in field
order for pairs, or a dict (multiple choice: ``{"context", "question" (optional), "choices"}``).
The directory holds the fine-tune's selected checkpoint: the network as its pre-training export
(``transformers`` loads a GPT's weights, without the head), ``task_head.safetensors``,
``task.json`` (task, label names, input transformation) and a ``README.md`` with the scores.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn as nn

from gptbench.data.task_data import collate, encode_split
from gptbench.data.tokenizer import Tokenizer
from gptbench.io import atomic_write_json, atomic_write_text
from gptbench.models import LanguageModel, load_pretrained
from gptbench.models.checkpoints import CheckpointError
from gptbench.models.task_head import TaskHead, extract_states, input_format
from gptbench.tasks import TaskSpec, get_task
from gptbench.tasks.base import TRANSFORMATION_FIELDS
from gptbench.training.exports import export_language_model

TASK_FILE, HEAD_FILE = "task.json", "task_head.safetensors"
_NO_DROPOUT = {"embd_pdrop": 0.0, "attn_pdrop": 0.0, "resid_pdrop": 0.0}


class TaskModel(nn.Module):
    """A network with its task head, for predictions on raw examples (eval mode, no dropout)."""

    def __init__(self, model: LanguageModel, head: TaskHead, task: str | TaskSpec, tokenizer: Tokenizer):
        super().__init__()
        self.model, self.head, self.tokenizer = model, head, tokenizer
        self.task = get_task(task) if isinstance(task, str) else task
        self.eval()

    @property
    def fields(self) -> tuple[str, ...]:
        """The fields an example has, in the order a tuple gives them."""
        return TRANSFORMATION_FIELDS[self.task.transformation]

    # ---- files ----------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path, results: dict | None = None) -> Path:
        """Write the directory :meth:`from_pretrained` reads; ``results`` (a fine-tune's
        results.json) go into its README.md."""
        from safetensors.torch import save_file

        directory = Path(directory)
        export_language_model(self.model, self.tokenizer, directory)
        tmp = directory / f".{HEAD_FILE}.tmp"
        save_file({k: v.contiguous() for k, v in self.head.state_dict().items()}, str(tmp))
        tmp.replace(directory / HEAD_FILE)
        atomic_write_json(directory / TASK_FILE, {
            "task": self.task.name, "transformation": self.task.transformation,
            "labels": list(self.task.labels) if self.task.labels else None, "num_outputs": self.task.num_outputs,
            "fields": list(self.fields), "metrics": list(self.task.metrics),
        })  # fmt: skip
        atomic_write_text(directory / "README.md", self._card(directory, results))
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | None = None) -> "TaskModel":
        directory = Path(directory)
        for name in (TASK_FILE, HEAD_FILE, "tokenizer/tokenizer.json"):
            if not (directory / name).is_file():
                raise CheckpointError(f"{directory / name}: missing; not a gptbench task model directory "
                                      "(written by `gptbench finetune` as <run>/seed<N>/model)")  # fmt: skip
        info = json.loads((directory / TASK_FILE).read_text(encoding="utf-8"))
        task = get_task(info["task"])
        if task.labels is not None and list(task.labels) != info["labels"]:
            raise CheckpointError(f"{directory / TASK_FILE}: labels {info['labels']} differ from the task's "
                                  f"{list(task.labels)}")  # fmt: skip
        tokenizer = Tokenizer.load(directory / "tokenizer")
        model = load_pretrained(directory, dropout=_NO_DROPOUT)
        if model.config.vocab_size != tokenizer.vocab_size:
            raise CheckpointError(f"{directory / 'tokenizer' / 'tokenizer.json'}: {tokenizer.vocab_size} tokens, the "
                                  f"model has {model.config.vocab_size}")  # fmt: skip
        from safetensors.torch import load_file

        head = TaskHead(model.config.n_embd, task.transformation, task.num_outputs, 0.0, 0.0)
        try:
            head.load_state_dict(load_file(str(directory / HEAD_FILE)))
        except RuntimeError as e:
            raise CheckpointError(f"{directory / HEAD_FILE}: does not fit the task's head "
                                  f"({str(e).splitlines()[0]})") from None  # fmt: skip
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        return cls(model, head, task, tokenizer).to(device)

    # ---- predictions ----------------------------------------------------------------------
    def _record(self, example) -> dict:
        if isinstance(example, str):
            example = (example,)
        if isinstance(example, (tuple, list)):
            if len(example) != len(self.fields):
                raise ValueError(f"{self.task.name}: an example is {len(self.fields)} text(s) {self.fields}, "
                                 f"got {len(example)}")  # fmt: skip
            example = dict(zip(self.fields, example))
        missing = [f for f in self.fields if f not in example]
        if missing:
            raise ValueError(f"{self.task.name}: example lacks field(s) {missing}; expected {list(self.fields)}")
        return dict(example)

    @torch.no_grad()
    def predict(self, examples, batch_size: int = 32) -> list:
        """Label names (classification, entailment), scores (similarity with one output, e.g.
        STS-B) or the index of the chosen answer (multiple choice), one per example."""
        single = isinstance(examples, (str, dict)) or (isinstance(examples, tuple) and len(self.fields) > 1
                                                        and all(isinstance(x, str) for x in examples))  # fmt: skip
        records = [self._record(e) for e in ([examples] if single else examples)]
        encoded = encode_split(self.task, records, self.tokenizer, self.model.config.n_ctx, input_format(self.model))
        device = self.model.tokens_embed.weight.device
        out = []
        for start in range(0, len(encoded), batch_size):
            batch = collate([encoded[i] for i in range(start, min(start + batch_size, len(encoded)))])
            h, _ = extract_states(self.model, batch["input_ids"].to(device), batch["attention_mask"].to(device))
            logits = self.head(h)
            if self.task.labels is None:
                out += [float(x) for x in logits.squeeze(-1)]
            elif self.task.transformation == "multiple_choice":
                out += [int(x) for x in logits.argmax(-1)]
            else:
                out += [self.task.labels[int(x)] for x in logits.argmax(-1)]
        return out

    def _card(self, directory: Path, results: dict | None) -> str:
        example = {1: '"a gripping, beautifully made film"'}.get(len(self.fields), f"tuple({list(self.fields)})")
        lines = [
            "---", "library_name: gptbench", "tags: [gptbench, gpt-1, " + self.task.name + "]", "---",
            f"# {self.task.name}: a fine-tuned gptbench model",
            "",
            f"Task: {self.task.name} ({self.task.transformation}); outputs: "
            + (", ".join(self.task.labels) if self.task.labels else "a score") + f"; inputs: {', '.join(self.fields)}.",
            "",
            "```python", "from gptbench import TaskModel", "",
            f'model = TaskModel.from_pretrained("{directory}")',
            f"print(model.predict({example}))", "```",
        ]  # fmt: skip
        if results:
            sel = results["selection"]
            lines += ["", f"Started from `{results['init']}`; seed {results['seed']}; checkpoint chosen by "
                      f"`{sel['protocol']}`" + ("" if sel["protocol"] == "last" else f" ({sel['metric']} on "
                      f"{sel['split']})") + f", epoch {sel['best_epoch']}.", "", "| split | scores |", "| --- | --- |"]  # fmt: skip
            lines += [f"| {split} | " + ", ".join(f"{m} {v:.4f}" for m, v in scores.items()) + " |"
                      for split, scores in sorted(results["metrics"].items())]  # fmt: skip
        return "\n".join(lines) + "\n"
