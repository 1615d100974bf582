"""The report's rules (issue #25): intervals on paired effects (known values and independent
computations), verdicts that survive noise, larger datasets by full size, subsets named, one-class
predictors flagged."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import f1_score, matthews_corrcoef

from gptbench.suite.claims import check_aux_lm, check_claims, check_pretraining
from gptbench.suite.intervals import (
    ColumnPredictions,
    SplitPredictions,
    batch_metric,
    bootstrap_effects,
    mean_seed_interval,
    percentile_interval,
    seed_interval,
)
from gptbench.suite.paper import load_paper_numbers
from gptbench.suite.report import write_report

DATASETS = load_paper_numbers()["datasets"]


def test_seed_interval_is_the_t_interval_of_the_paired_differences():
    lo, hi = seed_interval([1.0, 2.0, 3.0])  # mean 2, sd 1, t(0.975, 2) = 4.3027
    assert (lo, hi) == pytest.approx((2 - 4.302653 / 3**0.5, 2 + 4.302653 / 3**0.5), abs=1e-5)
    assert seed_interval([5.0]) is None  # one seed: no interval


def test_mean_seed_interval_welch():
    # two columns, each mean's variance 1/3: se = sqrt(2/3) / 2, dof = (2/3)^2 / (2 * (1/3)^2 / 2) = 4
    lo, hi = mean_seed_interval([[1.0, 2.0, 3.0], [3.0, 4.0, 5.0]])
    half = stats.t.ppf(0.975, 4) * (2 / 3) ** 0.5 / 2
    assert (lo, hi) == pytest.approx((3 - half, 3 + half))
    assert mean_seed_interval([[1.0, 2.0], [4.0]]) is None


def test_batch_metrics_equal_sklearn_and_scipy():
    rng = np.random.default_rng(1)
    gold, pred = rng.integers(0, 2, (4, 200)), rng.integers(0, 2, (4, 200))
    for row in range(4):
        assert batch_metric("f1", pred, gold)[row] == pytest.approx(f1_score(gold[row], pred[row]))
        assert batch_metric("matthews", pred, gold)[row] == pytest.approx(matthews_corrcoef(gold[row], pred[row]))
        assert batch_metric("accuracy", pred, gold)[row] == pytest.approx((pred[row] == gold[row]).mean())
    scores, truth = rng.normal(size=(3, 50)), rng.normal(size=(3, 50))
    assert batch_metric("pearson", scores, truth)[1] == pytest.approx(stats.pearsonr(scores[1], truth[1])[0])
    assert batch_metric("matthews", np.ones((1, 10), int), gold[:1, :10])[0] == 0.0  # constant: 0, as reported


def test_paired_bootstrap_known_answers():
    n = 1000
    gold = np.ones(n, int)
    right, wrong = np.ones(n, int), np.zeros(n, int)
    b = right.copy()
    b[:100] = 0  # b misses 100 examples that a gets: the effect is 100 * Binomial(n, 0.1) / n
    same = bootstrap_effects([ColumnPredictions("accuracy", [SplitPredictions(gold, [right], [right])])])
    assert percentile_interval(same[:, 0]) == (0.0, 0.0)
    assert percentile_interval(bootstrap_effects([ColumnPredictions(
        "accuracy", [SplitPredictions(gold, [right], [wrong])])])[:, 0]) == (100.0, 100.0)  # fmt: skip
    samples = bootstrap_effects([ColumnPredictions("accuracy", [SplitPredictions(gold, [right], [b])])])[:, 0]
    half = 1.96 * 100 * (0.1 * 0.9 / n) ** 0.5  # 1.86 points
    lo, hi = percentile_interval(samples)
    assert lo == pytest.approx(10 - half, abs=0.4) and hi == pytest.approx(10 + half, abs=0.4)
    assert samples.mean() == pytest.approx(10, abs=0.2)
    # paired: the same resampled examples for both rows, so an effect on 10 examples is never negative
    a = b.copy()
    a[:10] = 1
    assert np.all(bootstrap_effects([ColumnPredictions("accuracy", [SplitPredictions(gold, [a], [b])])]) >= 0)


def cell(variant: str, column: str, task: str, values: list[float], seeds=None, metric="accuracy", trained=None):
    seeds = seeds or list(range(1, len(values) + 1))
    return {"variant": variant, "column": column, "task": task, "split": "dev", "metric": metric, "seeds": seeds,
            "values": values, "median": float(np.median(values)), "train_examples": trained}  # fmt: skip


def table5(*cells: dict) -> dict:
    return {"id": "table5_ablations", "status": "ok", "cells": list(cells),
            "columns": list(dict.fromkeys(c["column"] for c in cells))}  # fmt: skip


def test_medians_that_differ_inside_the_seeds_noise_are_not_shown():
    # medians 60 vs 55 on both columns, but the paired differences scatter around 0
    t = table5(cell("full", "RTE", "rte", [50, 60, 70]), cell("no_pretraining", "RTE", "rte", [45, 65, 55]),
               cell("full", "MRPC", "mrpc", [52, 60, 61]), cell("no_pretraining", "MRPC", "mrpc", [62, 55, 50]))  # fmt: skip
    result = check_pretraining(t)
    assert result["verdict"] == "not shown"
    assert "for the paper on 0 of 2 columns present, against it on 0, no evidence either way on 2" in result["evidence"]
    assert "RTE 60.0 vs 55.0 (medians; paired mean +5.0, 95% over 3 seeds [−19.8, +29.8]: no evidence either way)" in (
        result["evidence"])


def test_effects_beyond_the_seeds_noise_are_shown():
    t = table5(cell("full", "RTE", "rte", [60, 61, 62]), cell("no_pretraining", "RTE", "rte", [50, 51.5, 51]),
               cell("full", "MRPC", "mrpc", [80, 81, 82]), cell("no_pretraining", "MRPC", "mrpc", [70, 70.5, 71.5]))  # fmt: skip
    result = check_pretraining(t)
    assert result["verdict"] == "shown", result["evidence"]
    assert "mean effect +10.2, 95% over seeds [" in result["evidence"]  # (10.17 + 10.33) / 2


def test_one_seed_without_predictions_is_not_tested_and_predictions_give_an_interval():
    t = table5(cell("full", "RTE", "rte", [70]), cell("no_pretraining", "RTE", "rte", [50]))
    result = check_pretraining(t)
    assert result["verdict"] == "not tested" and "no interval: 1 seed, no predictions" in result["evidence"]
    gold = np.arange(400) % 2
    good, poor = gold.copy(), gold.copy()
    poor[:120] = 1 - poor[:120]  # 70% vs 100%
    predictions = {("full", "RTE"): {1: {"dev": {"prediction": good.tolist(), "gold": gold.tolist()}}},
                   ("no_pretraining", "RTE"): {1: {"dev": {"prediction": poor.tolist(), "gold": gold.tolist()}}}}  # fmt: skip
    result = check_pretraining(t, predictions)
    assert result["verdict"] == "shown", result["evidence"]
    assert "over examples [+" in result["evidence"]


def test_aux_lm_groups_by_full_size_and_says_when_subsampling_removes_the_contrast():
    rows = [cell("full", "SST2", "sst2", [80, 81, 82], trained=2000), cell("no_aux_lm", "SST2", "sst2", [70, 71, 72], trained=2000),
            cell("full", "CoLA", "cola", [20, 21, 22], metric="matthews", trained=2000),
            cell("no_aux_lm", "CoLA", "cola", [20, 22, 21], metric="matthews", trained=2000)]  # fmt: skip
    result = check_aux_lm(table5(*rows), {}, DATASETS)
    assert result["verdict"] == "not tested"
    assert "SST2 (67,349 training examples in full, trained on 2,000)" in result["evidence"]
    assert "CoLA (8,551 training examples in full, trained on 2,000)" in result["evidence"]
    assert "the subsampling removes the contrast" in result["evidence"]
    rows[0]["train_examples"] = rows[1]["train_examples"] = 5000  # now SST-2 trains on more than CoLA
    result = check_aux_lm(table5(*rows), {}, DATASETS)
    assert result["verdict"] == "shown", result["evidence"]
    only_small = table5(*rows[2:])
    assert "no larger dataset has both rows here" in check_aux_lm(only_small, {}, DATASETS)["evidence"]


def test_figure2_one_seed_is_never_shown():
    figure2 = {"layers": [{"task": "rte", "split": "dev", "n_layers": n, "score": s, "seeds": 1}
                          for n, s in [(0, 50.0), (2, 51.0), (4, 52.0)]], "zero_shot": []}  # fmt: skip
    layers = {c["id"]: c for c in check_claims([], figure2)}["layers"]
    assert layers["verdict"] == "partly" and "one seed per point, so no interval" in layers["evidence"]


# ---------------------------------------------------------------------------------------------
# Through write_report: subsets, one-class flags, predictions files


def put(results, table, task, variant, seed, metrics, splits, predictions=None):
    run = {"status": "done", "task": task, "variant": variant, "seed": seed, "metrics": metrics,
           "metrics_last_epoch": metrics, "selection": {"protocol": "holdout", "split": "holdout"},
           "substitutions": {}, "unavailable": {}, "splits": splits, "wall_seconds": 1.0}  # fmt: skip
    path = results / "runs" / table / task / variant / f"seed{seed}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(run))
    if predictions is not None:
        target = results / "predictions" / table / task / variant / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps({"splits": predictions}))


def test_subset_of_the_papers_split_is_named_and_whole_split_is_the_same(tmp_path):
    put(tmp_path, "table3_qa", "story_cloze", "full", 1, {"test": {"accuracy": 0.6}}, {"test": {"examples": 1000}})
    put(tmp_path, "table2_nli", "scitail", "full", 1, {"test": {"accuracy": 0.7}},
        {"test": {"examples": 2126, "full_examples": 2126}})  # fmt: skip
    write_report(tmp_path)
    md = (tmp_path / "leaderboard.md").read_text()
    assert ("- ours test vs paper Story Cloze spring-2016 test (the paper's split, but a random subset of 1,000 of "
            "1,871 of its examples: not the same): Story Cloze") in md  # fmt: skip
    assert "- ours test vs paper SciTail test (the same split): SciTail" in md
    assert "| test (a random subset of 1,000 of 1,871) | Story Cloze spring-2016 test |" in md
    assert "| test (all 2,126) | SciTail test (same split) |" in md
    board = json.loads((tmp_path / "leaderboard.json").read_text())
    story = next(c for t in board["tables"] for c in t["cells"] if c["column"] == "Story Cloze")
    assert (story["examples"], story["split_examples"], story["same_split_as_paper"]) == (1000, 1871, False)


def test_one_class_flags_from_predictions_and_inferred_from_scores(tmp_path):
    dev = {"dev": {"examples": 277}}
    put(tmp_path, "table2_nli", "rte", "full", 1, {"dev": {"accuracy": 146 / 277}}, dev)  # the majority rate
    put(tmp_path, "table2_nli", "rte", "full", 2, {"dev": {"accuracy": 150 / 277}}, dev)
    put(tmp_path, "table2_nli", "rte", "full", 3, {"dev": {"accuracy": 131 / 277}}, dev,
        {"dev": {"prediction": [1] * 277, "gold": [0] * 146 + [1] * 131}})  # fmt: skip
    put(tmp_path, "table4_classification", "cola", "full", 1, {"dev": {"matthews": 0.0}}, {"dev": {"examples": 1000}})
    write_report(tmp_path)
    md = (tmp_path / "leaderboard.md").read_text()
    assert ("- ∅ RTE, ours (full): seed 1 of 3: probably one class (accuracy 52.7 = the share of label 0 in dev, "
            "146 of 277; inferred from the score, no predictions recorded)") in md  # fmt: skip
    assert "- ∅ RTE, ours (full): seed 3 of 3: predicts class 1 for all 277 examples (from its recorded predictions)" in md
    assert "seed 2 of 3" not in md
    assert ("- ∅ CoLA (Matthews corr.), ours (full): seed 1 of 1: probably one class (Matthews exactly 0.0, as a "
            "constant prediction gives; inferred from the score, no predictions recorded)") in md  # fmt: skip
    assert "52.7 (47.3–54.2, n=3) ∅" in md


def test_malformed_predictions_file_is_named(tmp_path):
    put(tmp_path, "table2_nli", "rte", "full", 1, {"dev": {"accuracy": 0.5}}, {"dev": {"examples": 2}},
        {"dev": {"prediction": [1], "gold": [0, 1]}})  # fmt: skip
    with pytest.raises(ValueError, match=r"predictions/table2_nli/rte/full/seed1\.json: expected"):
        write_report(tmp_path)
