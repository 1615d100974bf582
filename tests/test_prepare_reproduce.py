"""`gptbench reproduce` from a prepared directory alone (compressed, only the rows the runs draw;
spaCy and ftfy unimportable, no corpus, no benchmark data) writes the results directory of the
raw-file reproduction byte for byte, but for the fields listed in PER_RUN."""

from __future__ import annotations

import json
import re
from pathlib import Path

from conftest import DATA, tiny_overrides
from test_prepare import run_blocked

# The smoke reproduction at the tests' scale, cut to one small task per table (and RACE, whose
# test split is absent here: its reason is recorded in the run's results), two variants of Table 5
# (the Transformer and the LSTM), and 8 examples per zero-shot split.
CUTS = [
    "reproduce.tasks.table2_nli=[rte]", "reproduce.tasks.table3_qa=[story_cloze,race]",
    "reproduce.tasks.table4_glue=[mrpc]", "reproduce.tasks.table5_ablations=[rte]",
    "reproduce.tasks.figure2_layers=[mnli]",
    "reproduce.overrides.table5_ablations=['variants=[full,lstm]']",
    "reproduce.overrides.figure2_layers=[finetune.max_train_examples=64]",
    "reproduce.overrides.figure2_zeroshot=[max_examples=8]", "finetune.epochs=1",
]  # fmt: skip
# What differs between any two runs of the same reproduction, whatever they read: durations and
# speeds (JSON keys, "stages" being the leaderboard's wall seconds per sweep; their renderings in
# the Markdown, HTML and CSV tables).
PER_RUN = {"wall_seconds", "tokens_per_sec", "stages"}
PER_RUN_TEXT = (re.compile(r"\b\d[\d,.]* tokens/s"), re.compile(r"\b\d[\d,.]* (s|min|h)\b"))


def _arguments(root: Path) -> list[str]:
    """The same arguments for both runs but for ``root``: the corpus, data and cache live under it
    (present for the raw run, absent for the prepared one), and so do the runs and results."""
    return [*tiny_overrides(root / "runs", root / "corpus", root / "cache"), f"finetune.data_dir={root / 'data'}",
            f"results_dir={root / 'results'}", *CUTS]  # fmt: skip


def _normalised(path: Path, roots: list[Path]):
    """A result file's content: the bytes of a figure; text with the ``roots`` as <ROOT> (where
    the run was, and for the prepared run also where its directory was prepared: its data
    sources, quoted in notes) and without the PER_RUN_TEXT; JSON without the PER_RUN keys."""
    if path.suffix == ".png":
        return path.read_bytes()
    text = path.read_text(encoding="utf-8")
    for root in roots:
        text = text.replace(str(root), "<ROOT>")
    if path.suffix == ".json":
        return _without_per_run(json.loads(text))
    for pattern in PER_RUN_TEXT:
        text = pattern.sub("<PER RUN>", text)
    return text


def _without_per_run(node):
    if isinstance(node, dict):
        return {k: _without_per_run(v) for k, v in node.items() if k not in PER_RUN}
    return [_without_per_run(v) for v in node] if isinstance(node, list) else node


def test_reproduce_from_prepared_directory_matches_raw_byte_for_byte(tmp_path, tiny_corpus, cache_dir, capsys):
    from gptbench.cli import main

    raw, prep, prepared = tmp_path / "raw", tmp_path / "prep", tmp_path / "prepared"
    raw.mkdir()
    for name, target in (("corpus", tiny_corpus), ("data", DATA), ("cache", cache_dir)):
        (raw / name).symlink_to(target)
    assert main(["reproduce", "--preset", "smoke", *_arguments(raw)]) == 0
    assert main(["prepare", "smoke", f"out={prepared}", "compress=true", *_arguments(raw)]) == 0
    print(capsys.readouterr().out.splitlines()[-1])  # its size

    prep.mkdir()
    run_blocked([["reproduce", "--preset", "smoke", *_arguments(prep)]], tmp_path,
                {"GPTBENCH_PREPARED": str(prepared), "GPTBENCH_DATA": str(prep / "data"),
                 "GPTBENCH_CORPUS": str(prep / "corpus")})  # fmt: skip
    assert not (prep / "corpus").exists() and not (prep / "data").exists()

    files = sorted(p.relative_to(raw / "results") for p in (raw / "results").rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(prep / "results") for p in (prep / "results").rglob("*") if p.is_file())
    assert {".json", ".md", ".csv", ".html", ".png"} <= {p.suffix for p in files}
    assert {"predictions", "runs", "zeroshot", "figure2.json", "leaderboard.md"} <= {p.parts[0] for p in files}
    differ = [str(p) for p in files
              if _normalised(raw / "results" / p, [raw]) != _normalised(prep / "results" / p, [prep, raw])]  # fmt: skip
    assert not differ, differ
    race = json.loads((prep / "results/runs/table3_qa/race/full/seed1234.json").read_text())
    assert race["unavailable"] == {"test": f"task race, split 'test': {raw / 'data/race/RACE/test'}: not found"}
