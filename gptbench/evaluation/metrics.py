"""Task metrics by name (GLUE's definitions), as torchmetrics objects.

Each metric takes predictions and targets: class indices for classification, scores for
regression. ``f1`` is the F1 of the positive class (label 1), as GLUE reports for MRPC/QQP.
"""

from __future__ import annotations

import torchmetrics
from torchmetrics.classification import BinaryF1Score, MatthewsCorrCoef, MulticlassAccuracy


def make_metric(name: str, num_classes: int) -> torchmetrics.Metric:
    factories = {
        "accuracy": lambda: MulticlassAccuracy(num_classes=num_classes, average="micro"),
        "f1": BinaryF1Score,
        "matthews": lambda: MatthewsCorrCoef(task="binary"),
        "pearson": torchmetrics.PearsonCorrCoef,
        "spearman": torchmetrics.SpearmanCorrCoef,
    }
    if name not in factories:
        raise KeyError(f"unknown metric {name!r}; known: {sorted(factories)}")
    return factories[name]()
