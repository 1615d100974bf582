"""A fine-tune's reported accuracy recomputed without the Trainer that reported it: the examples
read from the task's files and drawn as the run's results.json says, predicted one by one by the
saved task model (:class:`gptbench.TaskModel`), and scored by scikit-learn. A test that compares
the two fails for a wrong split or subset, predictions misaligned with labels, a metric
accumulated wrongly over batches or dataloaders, or a saved model that is not the reported one."""

from __future__ import annotations

from pathlib import Path

from conftest import DATA
from sklearn.metrics import accuracy_score

from gptbench.data.task_data import random_subset, read_split, split_off_holdout
from gptbench.tasks import get_task
from gptbench.training.task_model import TaskModel


def scored_examples(results: dict, split: str) -> list[dict]:
    """The examples a fine-tune scored on ``split`` ("holdout": the slice of train it selected on):
    the held-out slice (seed 0) off the training file, evaluation subsets drawn with seed 0, the
    training subset with the run's seed."""
    task, f = get_task(results["task"]), results["finetune"]
    source = task.train_split if split == "holdout" else split
    records = read_split(task, source, DATA, f["splits"].get(source))[0]
    if results["selection"]["protocol"] == "holdout" and source == task.train_split:
        rest, held = split_off_holdout(records, f["holdout_fraction"], f["holdout_max"])
        records = held if split == "holdout" else rest
    n, seed = (f["max_train_examples"], results["seed"]) if split == task.train_split else (f["max_eval_examples"], 0)
    return random_subset(records, n, seed) if n else records


def accuracy_of(model: TaskModel, examples: list[dict]) -> float:
    """scikit-learn's accuracy of ``model``'s predictions against the examples' labels."""
    predicted = model.predict(examples)
    if model.task.transformation != "multiple_choice":  # label names -> the records' label indices
        predicted = [model.task.labels.index(p) for p in predicted]
    return float(accuracy_score([e["label"] for e in examples], predicted))


def rescored_accuracy(model_dir: Path, results: dict, split: str) -> float:
    """The accuracy of the task model saved in ``model_dir`` on the examples the run scored on ``split``."""
    examples = scored_examples(results, split)
    assert len(examples) == results["splits"][split]["examples"], split
    return accuracy_of(TaskModel.from_pretrained(model_dir, device="cpu"), examples)


def saved_model(run_dir: Path, results: dict) -> Path:
    """The task model a fine-tune of the run ``run_dir`` (``runs/<name>``) saved beside its results."""
    return run_dir / "finetune" / results["task"] / results["settings_key"] / f"seed{results['seed']}" / "model"
