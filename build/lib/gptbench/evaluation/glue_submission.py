"""GLUE server submission files from ``trainer.predict`` on a task's unlabelled test files.

One ``<TASK>.tsv`` per test file, as the GLUE server expects it: a header ``index<TAB>prediction``,
then one row per example in the test file's order, the prediction written as the task's label
(``entailment``/``not_entailment`` for RTE and QNLI, ``0``/``1`` for SST-2, CoLA, MRPC, QQP, the
score for STS-B, clipped to its 0-5 range).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


from gptbench.io import atomic_write_text
from gptbench.tasks import TaskSpec, get_task

# Test files whose server name is not the task folder's name.
_SERVER_NAMES = {("mnli", "test_matched"): "MNLI-m", ("mnli", "test_mismatched"): "MNLI-mm"}


def submission_name(spec: TaskSpec, split: str) -> str:
    return _SERVER_NAMES.get((spec.name, split), Path(spec.data_subdir).name) + ".tsv"


def _batches(predictions: Sequence) -> list[dict]:
    """``trainer.predict`` gives a list of batch outputs, or one such list per dataloader."""
    if predictions and isinstance(predictions[0], list):
        return [b for loader in predictions for b in loader]
    return list(predictions)


def write_glue_submission(task: str | TaskSpec, predictions: Sequence, directory: str | Path) -> list[Path]:
    """Write the submission file(s) for ``predictions = trainer.predict(module, datamodule=dm)``;
    returns their paths."""
    spec = get_task(task) if isinstance(task, str) else task
    rows: dict[str, dict[int, str]] = {}
    for batch in _batches(predictions):
        for index, value in zip(batch["index"].tolist(), batch["prediction"].tolist()):
            if spec.labels is None:
                label = f"{min(5.0, max(0.0, value)):.3f}"
            else:
                label = spec.labels[int(value)]
            rows.setdefault(batch["split"], {})[index] = label
    if not rows:
        raise ValueError(f"task {spec.name}: no predictions to write")
    written = []
    for split, by_index in rows.items():
        if sorted(by_index) != list(range(len(by_index))):
            raise ValueError(f"task {spec.name}, split {split}: predictions do not cover indices 0..{len(by_index) - 1}")
        lines = ["index\tprediction", *(f"{i}\t{by_index[i]}" for i in range(len(by_index)))]
        path = Path(directory) / submission_name(spec, split)
        atomic_write_text(path, "\n".join(lines) + "\n")
        written.append(path)
    return written
