"""Precision: scores are computed from fp32 whatever the training precision."""

from types import SimpleNamespace

import pytest
import torch
import torchmetrics
from scipy import stats

from gptbench.evaluation.metrics import make_metric
from gptbench.training.finetune import FinetuneModule


def stsb_like(n: int = 1500) -> tuple[torch.Tensor, torch.Tensor]:
    """STS-B dev's size: gold scores in [0, 5] and a regression head's bf16 output (bf16-mixed),
    shape (n, 1), correlated with them."""
    g = torch.Generator().manual_seed(0)
    gold = torch.rand(n, generator=g) * 5
    logits = (gold + torch.randn(n, generator=g) * 1.5).to(torch.bfloat16).unsqueeze(-1)
    return logits, gold


def module_score(name: str, logits: torch.Tensor, gold: torch.Tensor) -> float:
    """The fine-tuning module's path: predictions() on the head's output, then the task's metric."""
    regression = SimpleNamespace(task=SimpleNamespace(labels=None))
    metric = make_metric(name, 1)
    metric.update(FinetuneModule.predictions(regression, logits), gold)
    return float(metric.compute())


@pytest.mark.parametrize("name, reference", [("pearson", stats.pearsonr), ("spearman", stats.spearmanr)])
def test_correlations_of_bf16_scores_are_computed_in_fp32(name, reference):
    """From the bf16 head output, Pearson and Spearman equal scipy's (float64) on the same values."""
    logits, gold = stsb_like()
    for gold in (gold, gold.to(torch.bfloat16)):  # the data's fp32 labels, and bf16 ones
        expected = reference(logits.double().squeeze(-1).numpy(), gold.double().numpy()).statistic
        assert module_score(name, logits, gold) == pytest.approx(expected, abs=2e-6)


def test_pearson_computed_on_bf16_scores_is_off():
    """What the fp32 cast prevents: torchmetrics' Pearson on the bf16 scores themselves is 7e-4 off.
    (Spearman: torchmetrics 1.9 ranks in int32, so bf16 input gives the right value there; older
    versions ranked with an arange of the input's dtype, and the cast covers them too.)"""
    logits, gold = stsb_like()
    expected = stats.pearsonr(logits.double().squeeze(-1).numpy(), gold.double().numpy()).statistic
    on_bf16 = torchmetrics.PearsonCorrCoef()
    on_bf16.update(logits.squeeze(-1), gold)
    assert abs(float(on_bf16.compute()) - expected) > 5e-4


def test_class_predictions_are_the_argmax_of_fp32_logits():
    """Class indices come from fp32 copies of the logits (as returned, dtype included)."""
    classify = SimpleNamespace(task=SimpleNamespace(labels=("0", "1")))
    logits = torch.tensor([[0.1, 0.3], [2.0, -1.0]], dtype=torch.bfloat16)
    assert torch.equal(FinetuneModule.predictions(classify, logits), torch.tensor([1, 0]))
    regression = SimpleNamespace(task=SimpleNamespace(labels=None))
    assert FinetuneModule.predictions(regression, logits[:, :1]).dtype == torch.float32
