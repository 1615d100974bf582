"""The report's scale comparison (``gptbench report DIR --scales DIR ...``) on two synthetic results
directories whose cells, pre-training and claims differ in known ways."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from test_report import PROVENANCE, done, put

from gptbench.cli import main
from gptbench.suite.report import write_report

TABLE4 = "Table 4 — classification and similarity (GLUE test server)"
TABLE5 = "Table 5 — ablations"


def sst2(seed: int, accuracy: float, examples: int, variant: str = "full") -> dict:
    """A done SST-2 run scored on ``examples`` of the 872 dev examples."""
    run = done("sst2", seed, {"dev": {"accuracy": accuracy}}, variant=variant)
    return run | {"splits": {"dev": {"examples": examples, "full_examples": 872}}}


def scale(root: Path, name: str, parameters: int, tokens: int, accuracies: list[float], examples: int) -> Path:
    """A results directory: provenance (preset ``name``), SST-2 in Table 4 and Table 5's full row over
    3 seeds, and Table 5's no-pre-training row 20 points lower."""
    r = root / name
    r.mkdir(parents=True)
    provenance = PROVENANCE | {"preset": name, "parameters": parameters, "machine": f"{name} machine",
                               "pretrain": PROVENANCE["pretrain"] | {"tokens_seen": tokens}}  # fmt: skip
    (r / "provenance.json").write_text(json.dumps(provenance))
    for seed, acc in enumerate(accuracies, 1):
        put(r, "table4_classification", sst2(seed, acc, examples))
        put(r, "table5_ablations", sst2(seed, acc, examples))
        put(r, "table5_ablations", sst2(seed, acc - 0.20, examples, "no_pretraining"))
    return r


@pytest.fixture
def scales(tmp_path) -> tuple[Path, Path]:
    """mini (1.19M parameters, 1.6M tokens, SST-2 on all of dev, no Figure 2) and gpu (116.5M
    parameters, 26.2M tokens, SST-2 on 500 examples, Figure 2's left panel rising with each block)."""
    mini = scale(tmp_path / "results", "mini", 1_190_000, 1_638_400, [0.60, 0.62, 0.64], 872)
    gpu = scale(tmp_path / "results", "gpu", 116_534_784, 26_214_400, [0.80, 0.81, 0.82], 500)
    layers = [{"task": "mnli", "split": "dev_matched", "n_layers": n, "score": s, "seeds": 3}
              for n, s in [(0, 0.40), (6, 0.50), (12, 0.60)]]  # fmt: skip
    (gpu / "figure2.json").write_text(json.dumps({"layers": layers}))
    return mini, gpu


def table_rows(md: str, heading: str) -> list[list[str]]:
    """The body rows of the first table under ``heading`` (e.g. "### Table 5 — ablations")."""
    body = md.split(f"\n{heading}\n", 1)[1].split("\n#", 1)[0]
    lines = [line for line in body.splitlines() if line.startswith("|")]
    return [[p.strip() for p in line.strip().strip("|").split(" | ")] for line in lines[2:]]


def section_rows(md: str, heading: str) -> dict[str, list[str]]:
    """``table_rows`` keyed by their first two cells ("row / column", "scale / directory")."""
    return {" / ".join(r[:2]): r[2:] for r in table_rows(md, heading)}


def test_every_cell_at_every_scale_with_its_subset_beside_the_paper(scales):
    mini, gpu = scales
    write_report(mini, scales=[gpu])
    md = (mini / "leaderboard.md").read_text()
    # row, column -> our split, mini, gpu, paper, paper split
    table4 = section_rows(md, f"### {TABLE4}")
    assert table4["ours (full) / SST-2"] == [
        "dev", "62.0 (60.0–64.0, n=3), all 872", "81.0 (80.0–82.0, n=3), a random subset of 500 of 872", "91.3",
        "GLUE test server"]  # fmt: skip
    table5 = section_rows(md, f"### {TABLE5}")
    assert table5["ours (no_pretraining) / SST2"] == [
        "dev", "42.0 (40.0–44.0, n=3), all 872", "61.0 (60.0–62.0, n=3), a random subset of 500 of 872", "84.0",
        "GLUE test server"]  # fmt: skip
    assert table5["ours (full) / Avg"][1:4] == ["62.0 (mean of 1)", "81.0 (mean of 1)", "74.7"]
    assert table5["ours (full) / QQP"][1:3] == ["— (not run)", "— (not run)"]


def test_pretraining_of_each_scale_and_the_paper(scales):
    mini, gpu = scales
    provenance = json.loads((gpu / "provenance.json").read_text())
    software = {"torch": "2.11.0+cu128", "cuda": "12.8", "cudnn": 91002, "gpus": ["NVIDIA H200"]}
    (gpu / "provenance.json").write_text(json.dumps(provenance | {"software": software}))
    write_report(mini, scales=[gpu])
    summary = section_rows((mini / "leaderboard.md").read_text(), "## Scales")
    assert summary["mini / ."][0] == ("1,190,000 parameters, 1,638,400 tokens, 800 steps, validation perplexity "
                                      "190.5")  # fmt: skip
    assert summary["gpu / ../gpu"][0].startswith("116,534,784 parameters, 26,214,400 tokens, 800 steps")
    # 3 seeds x (Table 4, Table 5 full, no pre-training); the machine with the GPU provenance records
    assert summary["gpu / ../gpu"][3:] == ["9", "gpu machine, GPU NVIDIA H200"]
    assert summary["mini / ."][3:] == ["9", "mini machine"]  # no software recorded: the CPU line alone
    assert summary["paper (GPT-1) / "][0].startswith("116,534,784 parameters, tokens not recorded")
    board = json.loads((mini / "leaderboard.json").read_text())
    assert [s["name"] for s in board["scales"]["scales"]] == ["mini", "gpu"]
    assert board["scales"]["scales"][1]["networks"] == {
        "transformer": {"parameters": 116_534_784, "tokens_seen": 26_214_400, "steps": 800, "val_ppl": 190.5}}


def test_each_claims_verdict_at_each_scale_is_that_scales_own(scales):
    mini, gpu = scales
    own = {}
    for d in (mini, gpu):  # each directory's own report, without scales
        write_report(d)
        own[d.name] = {c["claim"]: c["verdict"] for c in json.loads((d / "leaderboard.json").read_text())["claims"]}
    write_report(mini, scales=[gpu])
    rows = table_rows((mini / "leaderboard.md").read_text(), "### The paper's claims at each scale")

    def shown_at(*verdicts: str) -> str:
        return ", ".join(s for s, v in zip(["mini", "gpu"], verdicts) if v == "shown") or "none"

    assert {r[0]: r[1:] for r in rows} == {
        claim: [own["mini"][claim], own["gpu"][claim], shown_at(own["mini"][claim], own["gpu"][claim])]
        for claim in own["mini"]}  # fmt: skip
    layers = "Each transferred layer helps (Figure 2 left: the score grows with the blocks transferred)"
    assert {r[0]: r[1:] for r in rows}[layers] == ["not tested", "shown", "gpu"]


def test_csv_has_each_cell_at_each_scale_and_json_the_comparison(scales):
    mini, gpu = scales
    write_report(mini, scales=[gpu])
    rows = list(csv.DictReader(io.StringIO((mini / "leaderboard.csv").read_text())))
    key = ("table4_classification", "full", "SST-2")
    sst2_rows = {r["scale"]: r for r in rows if (r["table"], r["variant"], r["column"]) == key}
    assert {s: (r["median"], r["examples"], r["split"], r["paper"]) for s, r in sst2_rows.items()} == {
        "mini": ("62.0", "872", "dev", "91.3"), "gpu": ("81.0", "500", "dev", "91.3")}
    assert len(rows) == 2 * len([c for t in json.loads((mini / "leaderboard.json").read_text())["tables"]
                                 for c in t["cells"]])  # fmt: skip
    html = (mini / "leaderboard.html").read_text()
    assert "<h2>Scales</h2>" in html and "a random subset of 500 of 872" in html


def test_without_scales_the_report_is_unchanged(scales):
    mini, gpu = scales
    write_report(mini)
    before = {name: (mini / name).read_bytes() for name in ("leaderboard.md", "leaderboard.csv", "leaderboard.json")}
    write_report(mini, scales=[gpu])
    assert (mini / "leaderboard.md").read_bytes() != before["leaderboard.md"]
    write_report(mini)
    assert {name: (mini / name).read_bytes() for name in before} == before
    assert "## Scales" not in before["leaderboard.md"].decode()
    assert "scales" not in json.loads(before["leaderboard.json"])


def test_a_missing_or_empty_scale_is_named(scales, tmp_path, capsys):
    mini, gpu = scales
    with pytest.raises(ValueError, match=f"{tmp_path / 'nope'}: results directory not found"):
        write_report(mini, scales=[tmp_path / "nope"])
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "provenance.json").write_text(json.dumps(PROVENANCE))
    with pytest.raises(ValueError, match=f"{empty}: no fine-tuning run files"):
        write_report(mini, scales=[empty])
    with pytest.raises(ValueError, match=f"{mini}: its scale is named 'mini'.*like {mini}'s"):
        write_report(mini, scales=[gpu, mini])
    assert main(["report", str(mini), "--scales", str(gpu), str(tmp_path / "nope")]) == 2
    assert f"{tmp_path / 'nope'}: results directory not found" in capsys.readouterr().err
