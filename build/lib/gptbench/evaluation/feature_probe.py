"""An independent linear probe: scikit-learn's logistic regression on a network's frozen
extract-token states.

It checks the pipeline's own probe (``finetune.freeze_body=true``: the same linear head trained
with Adam through Lightning) against a solver that shares none of that code, and puts a floor under
the fine-tunes of the same model: a fine-tune below it is a defect of the fine-tuning recipe.

    python -m gptbench.evaluation.feature_probe runs/mini/pretrain/<run>/model sst2 \\
        --max-train 2000 --holdout-max 300 --max-eval 1000 --out results/mini/checks/sst2.json

The training subset, the holdout slice and the evaluation subsets are drawn exactly as a fine-tune
with the same seed and options draws them (:class:`gptbench.data.task_data.TaskDataModule`); the
inverse regularisation ``C`` is chosen on the holdout, and the task's evaluation splits are scored
once, with the task's metrics. Classification, entailment and similarity tasks with class labels
(similarity: the two orders' states summed, as the task head does); not regression or multiple
choice.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from gptbench.data.task_data import collate, datamodule
from gptbench.evaluation.loading import load_model_and_tokenizer
from gptbench.evaluation.metrics import make_metric
from gptbench.io import atomic_write_json, default_cache_dir
from gptbench.models.task_head import extract_states, input_format
from gptbench.tasks import get_task

C_GRID = (0.01, 0.1, 1.0, 10.0, 100.0)


@torch.no_grad()
def frozen_features(model, data, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) extract-token states (summed over an example's sequences) and (N,) labels."""
    feats, labels = [], []
    for batch in DataLoader(data, batch_size=batch_size, collate_fn=collate):
        states, _ = extract_states(model, batch["input_ids"], batch["attention_mask"])
        feats.append(states.sum(dim=1).double().numpy())
        labels.append(batch["labels"].numpy())
    return np.concatenate(feats), np.concatenate(labels)


def logistic_probe(model_dir: str | Path, task: str, *, data_dir: str | Path | None = None, seed: int = 1234,
                   max_train: int | None = None, max_eval: int | None = None, holdout_max: int = 2000,
                   holdout_fraction: float = 0.1, cache_dir: str | Path | None = None,
                   c_grid: tuple[float, ...] = C_GRID) -> dict:  # fmt: skip
    """Fit the probe on ``model_dir``'s frozen states; returns the scores and how they were chosen."""
    try:
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler
    except ImportError:
        raise SystemExit("the independent probe needs scikit-learn: pip install scikit-learn") from None
    spec = get_task(task)
    if spec.transformation == "multiple_choice" or spec.labels is None or spec.zero_shot_only:
        raise ValueError(f"task {task}: the probe takes class labels; a {spec.transformation} task "
                         f"{'with scores' if spec.labels is None else ''} is not a classification")  # fmt: skip
    model, tokenizer = load_model_and_tokenizer(model_dir, device="cpu")
    model.eval()
    data = datamodule(spec, tokenizer, n_ctx=model.config.n_ctx, data_dir=data_dir, cache_dir=cache_dir or default_cache_dir(),
                      seed=seed, max_train_examples=max_train, max_eval_examples=max_eval,
                      holdout_fraction=holdout_fraction, holdout_max=holdout_max, eval_splits=["holdout"],
                      input_format=input_format(model))  # fmt: skip
    splits = {"train": spec.train_split, "holdout": "holdout", **{s: s for s in spec.eval_splits}}
    features = {name: frozen_features(model, data.load(split)) for name, split in splits.items()}
    scaler = StandardScaler().fit(features["train"][0])
    x = {name: scaler.transform(f) for name, (f, _) in features.items()}
    y = {name: labels for name, (_, labels) in features.items()}

    def scores(clf, split: str) -> dict[str, float]:
        predicted = torch.from_numpy(clf.predict(x[split]))
        target = torch.from_numpy(y[split])
        out = {}
        for name in spec.metrics:
            metric = make_metric(name, spec.num_outputs)
            out[name] = float(metric(predicted, target))
        return out

    fitted = {c: LogisticRegression(C=c, max_iter=2000).fit(x["train"], y["train"]) for c in c_grid}
    holdout = {c: scores(clf, "holdout")[spec.metrics[0]] for c, clf in fitted.items()}
    best = max(c_grid, key=lambda c: (holdout[c], -c))  # ties: the stronger regularisation
    return {
        "task": task, "model": str(model_dir), "probe": "scikit-learn LogisticRegression on standardised frozen "
        "extract-token states", "seed": seed, "examples": {name: len(y[name]) for name in y},
        "selection": {"split": "holdout", "metric": spec.metrics[0], "C": best,
                      "holdout_by_C": {str(c): s for c, s in holdout.items()}},
        "metrics": {split: scores(fitted[best], split) for split in spec.eval_splits},
        "train_metrics": scores(fitted[best], "train"),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m gptbench.evaluation.feature_probe", description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="a gptbench model directory (or any checkpoint gptbench loads)")
    p.add_argument("task", help="a classification task, e.g. sst2, cola, rte, mrpc")
    p.add_argument("--data-dir", default=None, help="benchmark data root (default $GPTBENCH_DATA, else the hub)")
    p.add_argument("--seed", type=int, default=1234, help="the training subset's seed, as finetune.seed")
    p.add_argument("--max-train", type=int, default=None)
    p.add_argument("--max-eval", type=int, default=None)
    p.add_argument("--holdout-max", type=int, default=2000)
    p.add_argument("--out", default=None, help="write the result as JSON here")
    args = p.parse_args(argv)
    result = logistic_probe(args.model, args.task, data_dir=args.data_dir, seed=args.seed, max_train=args.max_train,
                            max_eval=args.max_eval, holdout_max=args.holdout_max)  # fmt: skip
    if args.out:
        atomic_write_json(Path(args.out), result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
