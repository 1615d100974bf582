"""gptbench.suite.report on synthetic result files: cells, spread, missing and failed runs, flags,
averages, Table 5 and Figure 2, determinism and malformed inputs."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from gptbench.suite.report import stage_wall_seconds, write_report

PROVENANCE = {
    "preset": "smoke",
    "model": {"n_layer": 4, "n_embd": 128, "n_head": 4, "n_ctx": 64, "vocab_size": 3000},
    "parameters": 1190000,
    "tokenizer": "trained BPE, 3000 tokens",
    "corpus": {"books": 20, "bytes": 2500000, "train_tokens": 1640000},
    "pretrain": {"steps": 800, "tokens_seen": 1638400, "val_loss": 5.25, "val_ppl": 190.5, "wall_seconds": 150.2,
                 "tokens_per_sec": 3000.0},
    "git_commit": "abc1234",
    "machine": "Linux x86_64, 2 CPU cores",
    "wall_seconds": {"pretrain": 150.2, "finetune": 400.1},
}  # fmt: skip


def done(task: str, seed: int, metrics: dict, *, variant: str = "full", last: dict | None = None,
         protocol: str = "holdout", substitutions: dict | None = None, unavailable: dict | None = None) -> dict:
    split = {"holdout": "holdout", "dev": "dev", "last": None}[protocol]
    return {"status": "done", "task": task, "variant": variant, "seed": seed, "metrics": metrics,
            "metrics_last_epoch": last or metrics,
            "selection": {"protocol": protocol, "split": split, "metric": "accuracy", "best_epoch": 1},
            "substitutions": substitutions or {}, "unavailable": unavailable or {}, "wall_seconds": 21.0}  # fmt: skip


def put(results: Path, table: str, run: dict) -> Path:
    path = results / "runs" / table / run["task"] / run["variant"] / f"seed{run['seed']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(run))
    return path


@pytest.fixture
def results(tmp_path) -> Path:
    """A small sweep: RTE over three seeds, MNLI data absent, a failed QNLI run, SNLI trained on
    dev, CoLA selected on dev, SST-2 over two seeds, a pre-training curve and provenance."""
    r = tmp_path / "results"
    r.mkdir()
    (r / "provenance.json").write_text(json.dumps(PROVENANCE))
    (r / "pretrain_curve.csv").write_text("step,train_loss,val_loss,val_ppl\n0,8.0,,\n400,6.0,6.1,445.9\n800,5.2,5.25,190.5\n")
    for seed, acc, last in [(1, 0.50, 0.49), (2, 0.53, 0.52), (3, 0.56, 0.57)]:
        put(r, "table2_nli", done("rte", seed, {"dev": {"accuracy": acc}}, last={"dev": {"accuracy": last}},
                                  unavailable={"test": "GLUE test labels are private"}))  # fmt: skip
    put(r, "table2_nli", {"status": "unavailable", "task": "mnli", "variant": "full", "seed": 1,
                          "reason": "glue/MNLI/train.tsv: not found"})  # fmt: skip
    put(r, "table2_nli", {"status": "failed", "task": "qnli", "variant": "full", "seed": 1,
                          "error": "RuntimeError: out of memory"})  # fmt: skip
    put(r, "table2_nli", done("snli", 1, {"test": {"accuracy": 0.70}}, substitutions={"train": "dev", "holdout": "test"}))
    put(r, "table4_classification", done("cola", 1, {"dev": {"matthews": 0.10}}, protocol="dev"))
    put(r, "table4_classification", done("sst2", 1, {"dev": {"accuracy": 0.80}}))
    put(r, "table4_classification", done("sst2", 2, {"dev": {"accuracy": 0.82}}))
    return r


def cells(results: Path) -> dict[tuple[str, str, str], dict]:
    board = json.loads((results / "leaderboard.json").read_text())
    return {(t["id"], c["variant"], c["column"]): c for t in board["tables"] for c in t["cells"]}


def md_row(md: str, section: str, first_cell: str) -> list[str]:
    """The cells of the first table row starting with ``first_cell`` in the section ``section``."""
    body = md.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    for line in filter(lambda line: line.startswith("|"), body.splitlines()):
        parts = [p.strip() for p in line.strip().strip("|").split(" | ")]
        if parts[0] == first_cell:
            return parts[1:]
    raise AssertionError(f"no row {first_cell!r} in {section!r}")


def test_writes_every_output(results):
    written = write_report(results)
    names = {p.relative_to(results).as_posix() for p in written}
    assert names == {"leaderboard.md", "leaderboard.html", "leaderboard.json", "leaderboard.csv",
                     "figures/table2_nli.png", "figures/table3_qa.png", "figures/table4_classification.png",
                     "figures/pretrain_curve.png"}  # fmt: skip
    assert written == sorted(written)
    for p in written:
        if p.suffix == ".png":
            assert p.read_bytes().startswith(b"\x89PNG")


def test_median_with_spread_and_difference(results):
    write_report(results)
    rte = cells(results)["table2_nli", "full", "RTE"]
    assert (rte["median"], rte["min"], rte["max"], rte["n"], rte["seeds"]) == (53.0, 50.0, 56.0, 3, [1, 2, 3])
    assert rte["paper"] == 56.0 and rte["diff"] == -3.0
    assert rte["last_epoch_median"] == 52.0
    assert rte["selection"] == ["holdout"] and rte["flags"] == {}
    md = (results / "leaderboard.md").read_text()
    header = md_row(md, "Table 2 — natural language inference", "")
    ours = dict(zip(header, md_row(md, "Table 2 — natural language inference", "ours (full)")))
    delta = dict(zip(header, md_row(md, "Table 2 — natural language inference", "Δ ours − paper")))
    paper = dict(zip(header, md_row(md, "Table 2 — natural language inference", "paper (GPT-1)")))
    best = dict(zip(header, md_row(md, "Table 2 — natural language inference", "previous best")))
    assert ours["RTE"] == "53.0 (50.0–56.0, n=3)"
    assert delta["RTE"] == "−3.0"
    assert paper["RTE"] == "56.0" and best["RTE"] == "61.7"
    # the details row: last epoch, selection protocol, our split against the paper's
    assert ("| RTE | ours (full) | 53.0 (50.0–56.0, n=3) | 52.0 | −3.0 | holdout | dev (examples scored not recorded) | "
            "GLUE test server |  |") in md  # fmt: skip


def test_missing_and_failed_cells_show_a_dash_and_the_reason(results):
    write_report(results)
    c = cells(results)
    mnli, qnli, scitail = c["table2_nli", "full", "MNLI-m"], c["table2_nli", "full", "QNLI"], c["table2_nli", "full", "SciTail"]
    assert mnli["median"] is None and mnli["status"] == "unavailable" and mnli["diff"] is None
    assert mnli["problems"] == [{"kind": "unavailable", "reason": "data absent here: glue/MNLI/train.tsv: not found", "seeds": [1]}]
    assert qnli["status"] == "failed"
    assert qnli["problems"][0]["reason"] == "run failed: RuntimeError: out of memory"
    assert scitail["status"] == "not_run" and scitail["n"] == 0
    md = (results / "leaderboard.md").read_text()
    header = md_row(md, "Table 2 — natural language inference", "")
    ours = dict(zip(header, md_row(md, "Table 2 — natural language inference", "ours (full)")))
    assert (ours["MNLI-m"], ours["QNLI"], ours["SciTail"]) == ("— (data absent)", "— (run failed)", "— (not run)")
    assert "seed 1: data absent here: glue/MNLI/train.tsv: not found" in md
    assert "seed 1: run failed: RuntimeError: out of memory" in md
    assert "0.0 (" not in md  # a missing cell is never a zero


def test_a_seed_that_failed_beside_ones_that_scored(results):
    put(results, "table4_classification", {"status": "failed", "task": "sst2", "variant": "full", "seed": 3, "error": "NaN loss"})
    write_report(results)
    sst2 = cells(results)["table4_classification", "full", "SST-2"]
    assert (sst2["median"], sst2["n"], sst2["status"]) == (81.0, 2, "done")
    assert sst2["problems"] == [{"kind": "failed", "reason": "run failed: NaN loss", "seeds": [3]}]
    assert "seed 3: run failed: NaN loss" in (results / "leaderboard.md").read_text()


def test_a_done_run_without_the_metric_gives_the_runs_reason(results):
    put(results, "table3_qa", done("race", 1, {"dev": {"accuracy": 0.40}}, unavailable={"test": "no test set"}))
    write_report(results)
    c = cells(results)
    assert c["table3_qa", "full", "RACE"]["median"] == 40.0
    assert c["table3_qa", "full", "RACE"]["diff"] == -19.0
    assert c["table3_qa", "full", "RACE-m"]["status"] == "no_metric"
    assert c["table3_qa", "full", "RACE-m"]["problems"][0]["reason"] == "no middle/accuracy on dev in the run's metrics"
    assert c["table3_qa", "full", "Story Cloze"]["status"] == "not_run"


def test_substitution_and_selection_flags(results):
    write_report(results)
    c = cells(results)
    snli, cola = c["table2_nli", "full", "SNLI"], c["table4_classification", "full", "CoLA (Matthews corr.)"]
    assert snli["flags"] == {"†": ["trained on dev, selected on test"], "‡": ["selected on the reported split (test)"]}
    assert cola["flags"] == {"‡": ["selected on the reported split (dev)"]}
    assert (cola["median"], cola["diff"]) == (10.0, -35.4)
    md = (results / "leaderboard.md").read_text()
    header = md_row(md, "Table 2 — natural language inference", "")
    assert dict(zip(header, md_row(md, "Table 2 — natural language inference", "ours (full)")))["SNLI"] == "70.0 † ‡"
    assert "- † SNLI, ours (full): trained on dev, selected on test" in md
    assert "- ‡ CoLA (Matthews corr.), ours (full): selected on the reported split (dev)" in md


def test_trained_on_the_reported_split_is_flagged(tmp_path):
    put(tmp_path, "table2_nli", done("rte", 1, {"dev": {"accuracy": 0.9}}, substitutions={"train": "dev"}))
    write_report(tmp_path)
    assert cells(tmp_path)["table2_nli", "full", "RTE"]["flags"] == {"†": ["trained on dev"], "§": ["trained on the reported split (dev)"]}


def test_glue_score_is_our_mean_and_not_compared(results):
    write_report(results)
    glue = cells(results)["table4_classification", "full", "GLUE score"]
    assert glue["median"] == 45.5  # mean of CoLA 10.0 and SST-2 81.0
    assert glue["columns"] == ["CoLA (Matthews corr.)", "SST-2"]
    assert glue["paper"] == 72.8 and glue["diff"] is None
    assert glue["note"].startswith("unweighted mean of the 2 of 5 columns (CoLA (Matthews corr.), SST-2) present here")
    assert "not computed the same way" in glue["note"]
    md = (results / "leaderboard.md").read_text()
    section = "Table 4 — classification and similarity (GLUE test server)"
    header = md_row(md, section, "")
    assert dict(zip(header, md_row(md, section, "ours (full)")))["GLUE score"] == "45.5 (mean of 2)"
    assert dict(zip(header, md_row(md, section, "Δ ours − paper")))["GLUE score"] == "n/a (not comparable)"
    assert dict(zip(header, md_row(md, section, "previous best")))["GLUE score"] == "68.9"


def test_table5_and_figure2_placeholders(results):
    write_report(results)
    md = (results / "leaderboard.md").read_text()
    assert "## Table 5 — ablations\n\nnot run yet (the analysis sweeps fill this)\n" in md
    assert "## Figure 2\n\nnot run yet (the analysis sweeps fill this)\n" in md
    board = json.loads((results / "leaderboard.json").read_text())
    assert board["tables"][3]["status"] == "not_run" and board["figure2"] is None
    assert not (results / "figures" / "table5_ablations.png").exists()


def test_table5_rows_mnli_mean_and_average_over_shared_columns(tmp_path):
    for variant, cola, mnli_m, mnli_mm in [("full", 0.40, 0.80, 0.70), ("no_pretraining", 0.10, 0.60, 0.62),
                                           ("linear_probe", 0.45, 0.50, 0.52)]:  # fmt: skip
        metrics = {"dev": {"matthews": cola}} if cola is not None else {}
        put(tmp_path, "table5_ablations", done("cola", 1, metrics, variant=variant))
        put(tmp_path, "table5_ablations", done("mnli", 1, {"dev_matched": {"accuracy": mnli_m},
                                                           "dev_mismatched": {"accuracy": mnli_mm}}, variant=variant))  # fmt: skip
    write_report(tmp_path)
    c = cells(tmp_path)
    assert c["table5_ablations", "full", "MNLI"]["median"] == 75.0  # (80 + 70) / 2
    assert c["table5_ablations", "full", "MNLI"]["diff"] == pytest.approx(-6.8)  # paper 81.8
    avg = c["table5_ablations", "full", "Avg"]
    assert avg["columns"] == ["CoLA", "MNLI"] and avg["median"] == 57.5  # (40 + 75) / 2
    assert avg["paper"] == 74.7 and avg["paper_same_columns"] == 63.6  # (45.4 + 81.8) / 2
    assert avg["diff"] == pytest.approx(-6.1)
    assert avg["note"].startswith("unweighted mean of the 2 of 8 columns (CoLA, MNLI) present for both sides; "
                                  "Δ against the paper's mean over the same columns (63.60); the paper prints 74.7")
    assert c["table5_ablations", "no_pretraining", "Avg"]["median"] == 35.5  # (10 + 61) / 2
    assert c["table5_ablations", "no_pretraining", "Avg"]["paper_same_columns"] == 47.3  # (18.9 + 75.7) / 2
    assert c["table5_ablations", "lstm", "CoLA"]["status"] == "not_run"
    assert c["table5_ablations", "lstm", "Avg"]["median"] is None
    md = (tmp_path / "leaderboard.md").read_text()
    header = md_row(md, "Table 5 — ablations", "")
    assert dict(zip(header, md_row(md, "Table 5 — ablations", "ours (full)")))["Avg"] == "57.5 (mean of 2)"
    assert dict(zip(header, md_row(md, "Table 5 — ablations", "Δ ours − paper")))["Avg"] == "−6.1"
    assert dict(zip(header, md_row(md, "Table 5 — ablations", "paper: Transformer w/o pre-training")))["Avg"] == "59.9"
    assert dict(zip(header, md_row(md, "Table 5 — ablations", "ours (lstm)")))["Avg"] == "— (no column)"
    assert (tmp_path / "figures" / "table5_ablations.png").is_file()
    claims = {c["id"]: c for c in json.loads((tmp_path / "leaderboard.json").read_text())["claims"]}
    # one seed and no predictions: no interval, so the medians' differences decide nothing
    assert claims["pretraining"]["verdict"] == "not tested" and claims["lstm"]["verdict"] == "not tested"
    probe = c["table5_ablations", "linear_probe", "Avg"]
    assert probe["median"] == 48.0 and probe["diff"] is None and probe["note"].endswith("(the paper has no such row)")
    assert claims["probe_floor"]["verdict"] == "not tested"
    assert claims["probe_floor"]["evidence"].startswith(
        "fine-tune − probe: for the paper on 0 of 2 columns present, against it on 0, no evidence either way on 2; "
        "mean effect +9.5, no interval (CoLA, MNLI: 1 seed, no predictions): no evidence either way. CoLA 40.0 vs "
        "45.0 (medians; paired mean −5.0, no interval: 1 seed, no predictions: no evidence either way)")  # fmt: skip
    assert ("| Pre-training helps every task (Table 5: full vs no pre-training) | not tested | full − no pre-training: "
            "for the paper on 0 of 2 columns present") in md


def test_figure2_from_its_json(results):
    (results / "figure2.json").write_text(json.dumps({
        "layers": [{"task": "mnli", "split": "dev_matched", "n_layers": n, "score": s, "train_score": s + 0.05}
                   for n, s in [(0, 0.40), (4, 0.50)]],
        "zero_shot": [{"model": "transformer", "task": "sst2", "step": 100, "score": 0.7160},
                      {"model": "transformer", "task": "dprd", "step": 100, "score": 0.55}],
        "notes": ["rte stands in for mnli, whose data is absent here"],
    }))  # fmt: skip
    write_report(results)
    md = (results / "leaderboard.md").read_text()
    assert "- rte stands in for mnli, whose data is absent here" in md
    assert md_row(md, "Figure 2", "4") == ["50.0", "55.0"]
    assert md_row(md, "Figure 2", "100") == ["raw 55.0%", "0.50"]  # dprd, then sst2: (71.6 - 50) / (93.2 - 50)
    assert (results / "figures" / "figure2.png").is_file()


def test_header_shows_provenance_and_what_the_numbers_are(results):
    write_report(results)
    md = (results / "leaderboard.md").read_text()
    assert "- preset: smoke" in md
    assert "- model: n_layer=4, n_embd=128, n_head=4, n_ctx=64, vocab_size=3000" in md
    assert "- parameters: 1,190,000 (1.19M; the paper's model: 116,534,784)" in md
    assert "- corpus: 20 books, 2,500,000 bytes, 1,640,000 training tokens" in md
    assert ("- pre-training: 800 steps, 1,638,400 tokens seen, validation loss 5.250, validation perplexity 190.5, "
            "3,000 tokens/s, wall time 2.5 min (the paper's perplexity, 18.4, is per BPE token on BooksCorpus") in md
    assert ("- fine-tuning runs: 9 (7 done, 1 failed, 1 unavailable); wall time summed over them 2.5 min; wall time "
            "per stage (a run shared by two tables counted once): table2_nli 84.0 s, table4_classification 63.0 s") in md
    assert "- wall time: finetune 6.7 min, pretrain 2.5 min" in md
    assert "- git commit: abc1234" in md and "- machine: Linux x86_64, 2 CPU cores" in md
    assert "the median over seeds" in md
    assert "- ours dev vs paper GLUE test server: QNLI, RTE, CoLA (Matthews corr.), SST-2" in md
    assert ("- ours test vs paper SNLI test (the paper's split, but how many of its examples were scored is not "
            "recorded): SNLI") in md  # fmt: skip
    assert "last validation at step 800: loss 5.250, perplexity 190.5" in md


def test_wall_time_per_stage_counts_a_shared_run_once(tmp_path):
    r = tmp_path / "results"
    for table in ("table4_classification", "table5_ablations"):  # Table 5's full row reuses Table 4's run
        put(r, table, done("sst2", 1, {"dev": {"accuracy": 0.8}}) | {"settings_key": "k1"})
    put(r, "table5_ablations", done("sst2", 1, {"dev": {"accuracy": 0.6}}, variant="no_pretraining")
        | {"settings_key": "k2", "wall_seconds": 30.0})  # fmt: skip
    put(r, "figure2_layers", done("race", 1, {"dev": {"accuracy": 0.3}}, variant="transfer0") | {"settings_key": "k3"})
    for step, seconds in ((0, 5.0), (10, 7.5)):
        (r / "zeroshot" / "transformer").mkdir(parents=True, exist_ok=True)
        (r / "zeroshot" / "transformer" / f"step{step}.json").write_text(json.dumps({"wall_seconds": seconds}))
    stages = stage_wall_seconds(r, ["table2_nli", "table4_classification", "table5_ablations"])
    assert stages == {"table4_classification": 21.0, "table5_ablations": 30.0, "figure2_layers": 21.0,
                      "figure2_zeroshot": 12.5}  # fmt: skip


def test_missing_provenance_is_said(tmp_path):
    write_report(tmp_path)
    md = (tmp_path / "leaderboard.md").read_text()
    assert "- provenance.json: not found" in md and "pretrain_curve.csv: not found" in md
    assert "- fine-tuning runs: none yet" in md


def test_provenance_shows_what_exists(tmp_path):
    (tmp_path / "provenance.json").write_text(json.dumps({
        "preset": "mini", "git_commit": None, "corpus": {"path": "/data/books", "val_books": 2, "val_tokens": 5000},
        "pretrain": {"steps": 10, "run": "runs/x"}, "extra": [1]}))  # fmt: skip
    write_report(tmp_path)
    md = (tmp_path / "leaderboard.md").read_text()
    assert "- corpus: 2 validation books, 5,000 validation tokens, from /data/books\n" in md
    assert "- pre-training: 10 steps, run=\"runs/x\"\n" in md
    assert "- extra=[1]\n" in md
    assert "git commit" not in md and "model:" not in md and "parameters:" not in md


def test_csv_has_one_row_per_cell(results):
    write_report(results)
    rows = list(csv.DictReader(io.StringIO((results / "leaderboard.csv").read_text())))
    assert len(rows) == 6 + 4 + 6  # Tables 2, 3 and 4, the full row; Table 5 not run
    rte = next(r for r in rows if r["column"] == "RTE")
    assert (rte["median"], rte["min"], rte["max"], rte["n"], rte["diff"], rte["last_epoch_median"]) == \
           ("53.0", "50.0", "56.0", "3", "-3.0", "52.0")  # fmt: skip
    assert (rte["split"], rte["paper_split"], rte["selection"], rte["seeds"]) == ("dev", "GLUE test server", "holdout", "1;2;3")
    snli = next(r for r in rows if r["column"] == "SNLI")
    assert snli["flags"] == "† trained on dev, selected on test; ‡ selected on the reported split (test)"


def test_deterministic(results):
    write_report(results)
    first = {p: p.read_bytes() for p in results.rglob("*") if p.is_file() and p.parent.name != "runs"}
    write_report(results)
    for name in ("leaderboard.md", "leaderboard.json", "leaderboard.csv", "leaderboard.html", "figures/table2_nli.png"):
        assert (results / name).read_bytes() == first[results / name], name


def test_html_is_self_contained(results):
    write_report(results)
    page = (results / "leaderboard.html").read_text()
    assert page.count('src="data:image/png;base64,') == 4  # Tables 2-4 and the pre-training curve
    assert "<style>" in page and "figures/" not in page
    assert "<td>53.0 (50.0–56.0, n=3)</td>" in page


def test_malformed_run_file_is_named(results):
    bad = results / "runs" / "table2_nli" / "rte" / "full" / "seed9.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match=str(bad)):
        write_report(results)
    bad.write_text(json.dumps({"task": "rte"}))
    with pytest.raises(ValueError, match=rf"{bad}.*status"):
        write_report(results)


def test_missing_results_dir(tmp_path):
    with pytest.raises(ValueError, match="nowhere"):
        write_report(tmp_path / "nowhere")


@pytest.mark.parametrize("name, text", [("pretrain_curve.csv", "step,train_loss\n10,abc\n"),
                                        ("figure2.json", '{"layers": [{"task": "mnli"}]}'),
                                        ("provenance.json", "[1, 2]")])  # fmt: skip
def test_malformed_optional_inputs_are_named(results, name, text):
    (results / name).write_text(text)
    with pytest.raises(ValueError, match=str(results / name)):
        write_report(results)


def test_encoder_row_says_what_is_equal_and_what_differs(results):
    """The BERT-style encoder's runs (variant "bert") get their own labelled row; the line under the
    table compares parameters and tokens from provenance, and the fine-tuning settings run by run
    with the full twin (here lm_coef differs, as in BERT's recipe, and lr differs in one run)."""
    provenance = {**PROVENANCE, "bert_pretrain": {"n_layer": 4, "n_embd": 128, "objective": "masked LM",
                                                  "parameters": 1214000, "steps": 800, "tokens_seen": 1638400}}
    (results / "provenance.json").write_text(json.dumps(provenance))
    (results / "pretrain_curve_bert.csv").write_text("step,train_loss,val_loss,val_ppl\n0,8.1,,\n800,6.3,6.32,555.1\n")
    (results / "figure2.json").write_text(json.dumps({"zero_shot": [{"model": "transformer", "task": "sst2",
                                                                     "step": 800, "score": 0.6}]}))  # fmt: skip
    settings = {"lr": 3e-4, "epochs": 3, "lm_coef": 0.5}
    for seed, acc in [(1, 0.50), (2, 0.53), (3, 0.56)]:  # the full row's runs, now with their settings
        put(results, "table2_nli", done("rte", seed, {"dev": {"accuracy": acc}}) | {"finetune": settings})
        encoder = {**settings, "lm_coef": 0, "lr": 1e-4 if seed == 3 else 3e-4, "seed": seed}  # null in the twin
        put(results, "table2_nli", done("rte", seed, {"dev": {"accuracy": acc + 0.02}}, variant="bert")
            | {"finetune": encoder})  # fmt: skip
    write_report(results)
    md = (results / "leaderboard.md").read_text()
    assert md_row(md, "Table 2 — natural language inference", "ours (BERT-style encoder, same budget)")[-1] == (
        "55.0 (52.0–58.0, n=3)")
    line = next(p for p in md.split("\n\n") if p.startswith("BERT-style encoder, same budget: equal — "))
    assert "the parameter count within 2.0% (1,214,000 vs the Transformer's 1,190,000" in line
    assert "pre-training tokens (1,638,400 vs 1,638,400, 800 vs 800 steps)" in line.split("Differs")[0]
    assert "3 runs compared with their twin; they differ only in lm_coef ['0.5 -> 0']; lr ['0.0003 -> 0.0001']" in line
    assert "attention (bidirectional vs causal)" in line and "Table 5's no_aux_lm row" in line
    assert md.count("BERT-style encoder, same budget: equal") == 1  # only under the tables that have the row
    assert "The BERT-style encoder is left out of this panel" in md.split("## Figure 2")[1]
    assert "The BERT-style encoder (dotted in the figure): 2 logged steps" in md
    assert "masked-token loss 6.320, masked-token perplexity 555.1" in md
    board = json.loads((results / "leaderboard.json").read_text())
    assert board["pretrain_curve_bert"]["last_step"] == 800 and board["encoder_comparison"] == line


def test_no_encoder_no_encoder_lines(results):
    write_report(results)
    md = (results / "leaderboard.md").read_text()
    assert "BERT-style encoder" not in md
