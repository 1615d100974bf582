"""How sure a paired comparison of two rows is: over fine-tuning seeds, and over evaluation examples.

- :func:`seed_interval`: a 95% t interval on the paired differences (same seeds in both rows);
  :func:`mean_seed_interval` the same for a mean of several columns' effects (Welch-Satterthwaite).
  With 3 seeds the t quantile is 4.30: the interval is wide, which is what 3 seeds can tell.
- :func:`bootstrap_effects`: a paired bootstrap over the evaluation examples (the same resampled
  examples for both rows and every seed; fixed seed), from recorded per-example predictions.

Effects are in points (percent), like the report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
RESAMPLES = 1000
BOOTSTRAP_SEED = 0

Interval = tuple[float, float]


def seed_interval(differences: list[float]) -> Interval | None:
    """95% t interval of the mean paired difference; None with fewer than 2 seeds."""
    d = np.asarray(differences, dtype=float)
    if len(d) < 2:
        return None
    half = stats.t.ppf((1 + CONFIDENCE) / 2, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
    return float(d.mean() - half), float(d.mean() + half)


def mean_seed_interval(columns: list[list[float]]) -> Interval | None:
    """95% interval of the mean over columns of each column's mean paired difference, the columns
    independent (Welch-Satterthwaite degrees of freedom); None if a column has fewer than 2 seeds."""
    if not columns or any(len(d) < 2 for d in columns):
        return None
    means = [float(np.mean(d)) for d in columns]
    variances = [float(np.var(d, ddof=1)) / len(d) for d in columns]  # of each column's mean
    centre, total = sum(means) / len(means), sum(variances)
    if total == 0:
        return centre, centre
    dof = total**2 / sum(v**2 / (len(d) - 1) for v, d in zip(variances, columns) if v > 0)
    half = stats.t.ppf((1 + CONFIDENCE) / 2, dof) * math.sqrt(total) / len(columns)
    return centre - half, centre + half


# ---------------------------------------------------------------------------------------------
# Metrics on many resamples at once: rows of (resamples, examples) arrays


def _confusion(pred: np.ndarray, gold: np.ndarray) -> tuple[np.ndarray, ...]:
    tp = ((pred == 1) & (gold == 1)).sum(-1)
    fp = ((pred == 1) & (gold != 1)).sum(-1)
    fn = ((pred != 1) & (gold == 1)).sum(-1)
    return tp, fp, fn, pred.shape[-1] - tp - fp - fn


def batch_metric(name: str, pred: np.ndarray, gold: np.ndarray) -> np.ndarray:
    """``name`` (accuracy, f1, matthews, pearson) of each row, as a fraction; 0 where it is
    undefined (a constant predictor's Matthews or Pearson, an F1 with no positives), as the
    evaluation's metrics report it."""
    pred, gold = np.atleast_2d(pred), np.atleast_2d(gold)
    if name == "accuracy":
        return (pred == gold).mean(-1)
    if name == "f1":
        tp, fp, fn, _ = _confusion(pred, gold)
        denom = 2 * tp + fp + fn
        return np.divide(2 * tp, denom, out=np.zeros(denom.shape), where=denom > 0)
    if name == "matthews":
        tp, fp, fn, tn = (x.astype(float) for x in _confusion(pred, gold))
        denom = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
        return np.divide(tp * tn - fp * fn, denom, out=np.zeros(denom.shape), where=denom > 0)
    if name == "pearson":
        p, g = pred - pred.mean(-1, keepdims=True), gold - gold.mean(-1, keepdims=True)
        denom = np.sqrt((p**2).sum(-1) * (g**2).sum(-1))
        return np.divide((p * g).sum(-1), denom, out=np.zeros(denom.shape), where=denom > 0)
    raise ValueError(f"no per-example form of the metric {name!r} (known: accuracy, f1, matthews, pearson)")


@dataclass(frozen=True)
class SplitPredictions:
    """One evaluation split of a column: the gold labels and each seed's predictions in both rows
    (the same seeds, in the same order)."""

    gold: np.ndarray
    a: list[np.ndarray]
    b: list[np.ndarray]


@dataclass(frozen=True)
class ColumnPredictions:
    metric: str
    splits: list[SplitPredictions]  # a column over several splits (MNLI) is their mean


def bootstrap_effects(columns: list[ColumnPredictions], resamples: int = RESAMPLES,
                      seed: int = BOOTSTRAP_SEED) -> np.ndarray:  # fmt: skip
    """(resamples, columns): each column's effect (row a − row b, in points: the mean over seeds
    of each row's metric) on resampled evaluation examples. A resample draws each split's examples
    with replacement once, and scores both rows and every seed on those same examples."""
    rng = np.random.default_rng(seed)
    out = np.zeros((resamples, len(columns)))
    for c, column in enumerate(columns):
        for split in column.splits:
            idx = rng.integers(0, len(split.gold), size=(resamples, len(split.gold)))
            gold = split.gold[idx]
            rows = [np.mean([batch_metric(column.metric, p[idx], gold) for p in preds], axis=0)
                    for preds in (split.a, split.b)]  # fmt: skip
            out[:, c] += 100 * (rows[0] - rows[1]) / len(column.splits)
    return out


def percentile_interval(samples: np.ndarray) -> Interval:
    lo, hi = np.percentile(samples, [100 * (1 - CONFIDENCE) / 2, 100 * (1 + CONFIDENCE) / 2])
    return float(lo), float(hi)
