"""Fine-tunes record their per-example predictions (issue #25): they reproduce the run's own
metrics, their gold labels are the scored subset's, the split's full size is recorded, and the
report reads them from the results directory."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import DATA
from scipy import stats

import gptbench.training.finetune as finetune
from gptbench.config import load_config
from gptbench.data.task_data import random_subset
from gptbench.suite.report import write_report
from gptbench.suite.results import copy_predictions
from gptbench.tasks import get_task


def predictions_of(cfg, results: dict) -> dict:
    """The predictions.json beside the run's results.json (other tests fine-tune the same task
    under other settings in the same runs directory)."""
    stage = cfg.run_dir / "finetune" / results["task"] / results["settings_key"] / f"seed{cfg.finetune_seed}"
    return json.loads((stage / "predictions.json").read_text())


def test_rte_predictions_reproduce_accuracy_and_reach_the_report(pretrained, tmp_path):
    cfg = load_config("smoke", pretrained + ["finetune.task=rte", "finetune.epochs=1", "finetune.max_eval_examples=40"])
    results = finetune.run_finetune(cfg)
    dev = predictions_of(cfg, results)["splits"]["dev"]
    assert (dev["examples"], dev["full_examples"], dev["index"]) == (40, 277, list(range(40)))
    assert results["splits"]["dev"]["full_examples"] == 277 and results["splits"]["dev"]["examples"] == 40
    task = get_task("rte")  # the gold labels are those of the evaluation subset (seed 0), in its order
    records = random_subset(task.read("dev", DATA)[0], 40, 0)
    assert dev["gold"] == [r["label"] for r in records]  # label indices
    accuracy = np.mean(np.array(dev["prediction"]) == np.array(dev["gold"]))
    assert accuracy == pytest.approx(results["metrics"]["dev"]["accuracy"], abs=1e-6)

    run_file = tmp_path / "runs" / "table5_ablations" / "rte" / "full" / "seed1.json"
    run_file.parent.mkdir(parents=True)
    run_file.write_text(json.dumps({**results, "status": "done"}))
    copy_predictions(cfg, results, run_file)
    write_report(tmp_path)
    board = json.loads((tmp_path / "leaderboard.json").read_text())
    rte = next(c for t in board["tables"] if t["id"] == "table5_ablations" for c in t["cells"]
               if c["column"] == "RTE" and c["variant"] == "full")  # fmt: skip
    assert (rte["predictions"], rte["examples"], rte["split_examples"]) == (1, 40, 277)


def test_stsb_scores_reproduce_pearson(pretrained):
    cfg = load_config("smoke", pretrained + ["finetune.task=stsb", "finetune.epochs=1"])
    results = finetune.run_finetune(cfg)
    dev = predictions_of(cfg, results)["splits"]["dev"]
    assert dev["full_examples"] == 1500 and len(dev["prediction"]) == len(dev["gold"]) == 64
    pearson = stats.pearsonr(dev["prediction"], dev["gold"])[0]  # scores kept to 4 decimals
    assert pearson == pytest.approx(results["metrics"]["dev"]["pearson"], abs=1e-3)
