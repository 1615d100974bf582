"""The gpu preset's plumbing on the CPU (issue #29): `gptbench reproduce --preset gpu` at a tiny scale.

The preset's structure is kept (its six sweeps, every variant, its task seeds and training subsets,
four fine-tunes at a time in workers that each run many) and only the network, tokenizer, corpus,
pre-training, precision and evaluation subsets are made tiny (tests/conftest.py's tiny_overrides):
every table, both panels of Figure 2 and the zero-shot curves must reach the report, stating the
preset's seeds and training subsets."""

import csv
import json
from pathlib import Path

from conftest import tiny_overrides

from gptbench.cli import main

# Twelve blocks as GPT-1's (Figure 2 left keeps the preset's transfer0, 4, 8, 12), 32 wide; fp32 and
# eager on the CPU (compiled runs in shared workers: test_sweep_sharing). One epoch, and the
# evaluation subsets, holdout slices and zero-shot subsets cut below the preset's (a tiny model's
# scores need no more); its training subsets (task_overrides) and seeds (task_seeds) stay.
CPU = ["model.n_layer=12", "trainer.precision=32-true", "trainer.compile=false", "finetune.epochs=1",
       "finetune.max_eval_examples=48", "finetune.holdout_max=32", "reproduce.overrides.figure2_zeroshot=[max_examples=24]"]  # fmt: skip
MINI = Path(__file__).resolve().parents[1] / "results" / "mini"  # the published CPU scale
# task -> (seeds, training examples) of experiments/gpu.yaml's reproduce section
PLAN = {"rte": ("1234;2345;3456", "300"), "mrpc": ("1234;2345;3456", "300"), "cola": ("1234;2345;3456", "500"),
        "stsb": ("1234;2345;3456", "300"), "story_cloze": ("1234;2345;3456", "300"), "sst2": ("1234", "1000"),
        "race": ("1234", "200")}  # fmt: skip


def test_the_gpu_preset_reproduces_end_to_end_at_a_tiny_scale(tiny_corpus, cache_dir, tmp_path, capsys):
    tiny = [o for o in tiny_overrides(tmp_path / "runs", tiny_corpus, cache_dir, name="gpu")
            if not o.startswith(("finetune.max_train_examples=", "finetune.max_eval_examples="))]  # fmt: skip
    results = tmp_path / "results"
    assert main(["reproduce", "--preset", "gpu", *tiny, *CPU, f"results_dir={results}"]) == 0
    out = capsys.readouterr().out
    report = (results / "leaderboard.md").read_text()

    # Every table and both panels of Figure 2, with its figures.
    for heading in ("## Table 2", "## Table 3", "## Table 4", "## Table 5", "### Left: dev score against the number "
                    "of pre-trained layers transferred", "### Right: zero-shot score against pre-training updates",
                    "## The paper's claims, checked"):  # fmt: skip
        assert heading in report
    for figure in ("table2_nli", "table3_qa", "table4_classification", "table5_ablations", "figure2", "pretrain_curve"):
        assert (results / "figures" / f"{figure}.png").is_file()
    left = report[report.index("### Left"):report.index("### Right")]
    assert [line.split(" | ")[0] for line in left.splitlines() if line.startswith("| ") and line[2].isdigit()] == [
        "| 0", "| 4", "| 8", "| 12"]  # the preset's transfer0, 4, 8, 12 of 12 blocks  # fmt: skip
    curves = {(z["architecture"], z["step"]) for z in (json.loads(p.read_text()) for p in (results / "zeroshot").rglob("*.json"))}
    assert curves == {(a, s) for a in ("transformer", "lstm") for s in (0, 4, 12)}  # every kept snapshot of both

    # Every row of Table 5 (the linear probes and the encoder's included), each cell with the
    # preset's seeds and training subset, stated in leaderboard.csv and the per-cell tables.
    cells = [c for c in csv.DictReader(open(results / "leaderboard.csv")) if c["status"] == "done"]
    assert {c["variant"] for c in cells if c["table"] == "table5_ablations"} == {
        "full", "no_pretraining", "no_aux_lm", "lstm", "linear_probe", "bert", "bert_no_pretraining", "bert_linear_probe"}  # fmt: skip
    assert {c["table"] for c in cells} == {"table2_nli", "table3_qa", "table4_classification", "table5_ablations"}
    assert {c["task"] for c in cells} == set(PLAN)  # every task with data here
    for c in cells:
        assert (c["seeds"], c["train_examples"]) == PLAN[c["task"]], c
    assert "| 300 examples | 1234, 2345, 3456 |" in report and "| 1,000 examples | 1234 |" in report

    # The fine-tunes shared their workers (no GPU here: the busy fraction is neither printed nor recorded).
    statuses = [json.loads(p.read_text()) for p in (results / "runs").rglob("seed*.json")]
    assert max(s.get("worker_run", 0) for s in statuses) > 1 and "(local, 4 at a time)" in out
    provenance = json.loads((results / "provenance.json").read_text())
    assert "gpu_busy" not in provenance and provenance["software"]["gpus"] == [] and "GPU busy" not in out

    # The report at two scales (the README's `gptbench report results/gpu --scales results/mini`):
    # this run and mini side by side, each with its parameters and pre-training tokens.
    assert main(["report", str(results), "--scales", str(MINI)]) == 0
    scales = (results / "leaderboard.md").read_text().split("## Scales")[1]
    assert "(gpu, mini;" in scales and "6,820,096 parameters" in scales and "10,649,600 tokens" in scales
    assert f"{provenance['pretrain']['tokens_seen']:,} tokens" in scales
