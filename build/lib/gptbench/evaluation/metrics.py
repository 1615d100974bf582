"""Task metrics by name (GLUE's definitions), as torchmetrics objects.

Each metric takes predictions and targets: class indices for classification, scores for
regression. ``f1`` is the F1 of the positive class (label 1), as GLUE reports for MRPC/QQP.
"""

from __future__ import annotations

import torch
import torchmetrics
from torchmetrics.classification import BinaryConfusionMatrix, BinaryF1Score, MulticlassAccuracy


class Matthews(BinaryConfusionMatrix):
    """Matthews correlation as GLUE (scikit-learn) defines it, 0 when the predictions or the labels
    are all one class. torchmetrics' MatthewsCorrCoef (1.9) gives a small nonzero value there
    (0.038 for a constant predictor on a 69%-majority set), which would credit a model that
    predicts one class with a correlation it does not have."""

    def compute(self) -> torch.Tensor:
        (tn, fp), (fn, tp) = super().compute().double()
        denominator = torch.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
        if denominator == 0:
            return torch.zeros((), dtype=torch.float32)
        return ((tp * tn - fp * fn) / denominator).float()


class _Float32Inputs:
    """Updates from fp32 copies of the inputs: a correlation of bf16 (bf16-mixed) scores would be
    one of quantised values, and torchmetrics' Spearman ranks them with an arange of their dtype
    (bf16 rounds the integers above 256)."""

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        super().update(preds.float(), target.float())


class Pearson(_Float32Inputs, torchmetrics.PearsonCorrCoef):
    pass


class Spearman(_Float32Inputs, torchmetrics.SpearmanCorrCoef):
    pass


def make_metric(name: str, num_classes: int) -> torchmetrics.Metric:
    factories = {
        "accuracy": lambda: MulticlassAccuracy(num_classes=num_classes, average="micro"),
        "f1": BinaryF1Score,
        "matthews": Matthews,
        "pearson": Pearson,
        "spearman": Spearman,
    }
    if name not in factories:
        raise KeyError(f"unknown metric {name!r}; known: {sorted(factories)}")
    return factories[name]()
