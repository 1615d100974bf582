"""`gptbench prepare`: runs from a prepared directory read nothing else and match raw-file runs bit for bit."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import DATA, tiny_overrides

from gptbench.config import load_config
from gptbench.data.prepared import PreparedError, open_prepared, prepare, reproduction_configs

ROOT = Path(__file__).resolve().parents[1]
TASK = "rte"
# Runs gptbench commands (a JSON list of argument lists, in order) in a fresh interpreter where
# spaCy and ftfy cannot be imported.
BLOCKED_CLI = """
import json, sys
sys.modules["spacy"] = None
sys.modules["ftfy"] = None
from gptbench.cli import main
for argv in json.loads(sys.argv[1]):
    code = main(argv)
    if code:
        sys.exit(code)
assert sys.modules["spacy"] is None and sys.modules["ftfy"] is None
"""


def run_blocked(commands: list[list[str]], cwd: Path, env: dict[str, str] | None = None) -> None:
    """The gptbench commands, run with spaCy and ftfy unimportable (in the processes they start
    too, e.g. a sweep's workers: modules of those names that refuse to import come first on the
    path); fails the test with the output's end."""
    blocked = cwd / "blocked-modules"
    for name in ("spacy", "ftfy"):
        (blocked / name).mkdir(parents=True, exist_ok=True)
        (blocked / name / "__init__.py").write_text(f"raise ImportError('{name} is blocked in this test')\n")
    path = os.pathsep.join(map(str, (blocked, ROOT, ROOT / "tests")))
    env = {**os.environ, **(env or {}), "PYTHONPATH": path}
    proc = subprocess.run([sys.executable, "-c", BLOCKED_CLI, json.dumps(commands)], cwd=cwd, env=env,
                          capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]


def _weights(model_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(model_dir.glob("*.safetensors"))}


def _results(runs: Path) -> Path:
    (path,) = (runs / "tiny" / "finetune" / TASK).glob("*/seed*/results.json")
    return path


@pytest.fixture(scope="module")
def prepared_dir(tmp_path_factory, tiny_corpus, cache_dir) -> Path:
    out = tmp_path_factory.mktemp("prepared") / "smoke"
    base = tiny_overrides(tmp_path_factory.mktemp("prep_runs"), tiny_corpus, cache_dir)
    size = prepare(out, reproduction_configs("smoke", base, [TASK]))
    assert size == sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return out


def test_prepared_run_matches_raw_run_with_spacy_and_raw_data_absent(prepared_dir, tmp_path, tiny_corpus, cache_dir):
    from gptbench.training.finetune import run_finetune
    from gptbench.training.pretrain import run_pretrain

    raw_runs = tmp_path / "raw"
    raw = tiny_overrides(raw_runs, tiny_corpus, cache_dir)
    raw_model = run_pretrain(load_config("smoke", raw))
    run_finetune(load_config("smoke", [*raw, f"finetune.task={TASK}"]))

    prep_runs = tmp_path / "prepared"
    # As on a compute node: no corpus or data path at all (a model card then names the prepared
    # directory as the books' source).
    args = [*tiny_overrides(prep_runs, tmp_path / "no-corpus", tmp_path / "empty-cache"),
            "corpus.path=null", "finetune.data_dir=null", f"prepared={prepared_dir}"]  # fmt: skip
    run_blocked([["pretrain", "smoke", *args], ["finetune", "smoke", f"task={TASK}", *args]], tmp_path)

    # The same run directories (run keys), the same weights, the same results.
    prep_model = prep_runs / raw_model.relative_to(raw_runs)
    assert _weights(prep_model) and _weights(prep_model) == _weights(raw_model)
    assert "the books tokenized in the prepared directory `smoke/`" in (prep_model / "README.md").read_text()
    raw_results, prep_results = _results(raw_runs), _results(prep_runs)
    assert prep_results.relative_to(prep_runs) == raw_results.relative_to(raw_runs)
    a, b = json.loads(raw_results.read_text()), json.loads(prep_results.read_text())
    for key in ("metrics", "metrics_last_epoch", "selection", "splits", "unavailable", "data_source", "settings_key"):
        assert a[key] == b[key], key
    assert _weights(raw_results.parent / "model") == _weights(prep_results.parent / "model")
    assert (raw_results.parent / "predictions.json").read_bytes() == (prep_results.parent / "predictions.json").read_bytes()


def test_preparing_a_task_prepares_every_run_that_trains_on_it(tmp_path, tiny_corpus, cache_dir):
    """MNLI is absent from ../shared/data, so Figure 2's layer sweep trains on RTE in its place:
    `prepare smoke tasks=[rte]` prepares those runs too, and the absences that choose the stand-in."""
    base = tiny_overrides(tmp_path / "runs", tiny_corpus, cache_dir)
    every, rte = reproduction_configs("smoke", base, None), reproduction_configs("smoke", base, [TASK])
    trains_on_rte = [cfg for cfg in every.finetunes if cfg.finetune.task == TASK]
    assert len(trains_on_rte) > 10 and all(cfg in rte.finetunes for cfg in trains_on_rte)
    assert "figure2_layers" in [table.name for table, _, _ in rte.fallbacks]


def test_manifest_records_sources_and_smallest_dtype(prepared_dir, tiny_corpus):
    import numpy as np

    manifest = json.loads((prepared_dir / "manifest.json").read_text())
    (corpus,) = manifest["corpora"].values()
    assert np.load(prepared_dir / corpus["train"], mmap_mode="r").dtype == np.uint16  # vocabulary 400 + specials
    books = sorted(str(p.resolve()) for p in tiny_corpus.glob("*.txt"))
    assert sorted(k for k in manifest["sources"] if k.endswith(".txt")) == books
    rte = [e for e in manifest["tasks"].values() if e["task"] == TASK]
    assert {e["input_format"] for e in rte} == {"gpt", "bert"}  # Table 5's encoder variant reads BERT's layout
    assert {e["split"] for e in rte} >= {"train", "dev"}


def _copy(prepared_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(prepared_dir, copy)
    return copy


def test_truncated_or_tampered_directory_is_refused_naming_the_file(prepared_dir, tmp_path):
    copy = _copy(prepared_dir, tmp_path)
    open_prepared(copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    tokens = next(rel for rel in manifest["files"] if rel.endswith("train.npy"))
    data = (copy / tokens).read_bytes()
    (copy / tokens).write_bytes(data[: len(data) // 2])
    with pytest.raises(PreparedError, match=f"{tokens} has"):
        open_prepared(copy)
    (copy / tokens).write_bytes(data[:-2] + bytes([data[-2] ^ 1, data[-1]]))  # same size, one bit flipped
    with pytest.raises(PreparedError, match=f"{tokens} does not match its sha256"):
        open_prepared(copy)
    (copy / tokens).unlink()
    with pytest.raises(PreparedError, match=f"{tokens} is missing"):
        open_prepared(copy)


def test_other_tokenizer_or_other_books_or_missing_task_are_refused(prepared_dir, tmp_path, tiny_corpus):
    from gptbench.data.tokenizer_stage import run_tokenizer
    from gptbench.training.finetune import run_finetune

    base = [*tiny_overrides(tmp_path / "runs", tmp_path / "no-corpus", tmp_path / "cache"), f"prepared={prepared_dir}"]
    with pytest.raises(PreparedError, match='its tokenizer was made with .*"vocab_size": 400.*"vocab_size": 420'):
        run_tokenizer(load_config("smoke", [*base, "tokenizer.vocab_size=420"]))
    with pytest.raises(PreparedError, match="its tokenizer was made with"):
        run_tokenizer(load_config("smoke", [*base, "tokenizer.kind=gpt1"]))

    other_books = tmp_path / "other-books"
    shutil.copytree(tiny_corpus, other_books)
    (other_books / "book0.txt").write_bytes((other_books / "book0.txt").read_bytes()[:50_000])
    with pytest.raises(PreparedError, match="made from other books"):
        run_tokenizer(load_config("smoke", [*base, f"corpus.path={other_books}"]))

    with pytest.raises(PreparedError, match="holds no task sst2 split 'train'"):
        run_finetune(load_config("smoke", [*base, "finetune.task=sst2", "finetune.init=none"]))


def test_cli_prepare_writes_the_same_directory_and_prints_its_size(prepared_dir, tmp_path, tiny_corpus, cache_dir, capsys):
    from gptbench.cli import main

    out = tmp_path / "cli"
    base = tiny_overrides(tmp_path / "runs", tiny_corpus, cache_dir)
    assert main(["prepare", "smoke", f"tasks={TASK}", f"out={out}", *base]) == 0
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    assert f"({size:,} bytes;" in capsys.readouterr().out
    files = lambda d: json.loads((d / "manifest.json").read_text())["files"]  # noqa: E731
    assert files(out) == files(prepared_dir)
    assert main(["prepare", "smoke", *base]) == 2  # out= is required
    assert "out=DIR is required" in capsys.readouterr().err


@pytest.mark.parametrize("architecture", ["lstm", "bert"])
def test_lstm_and_bert_pretrain_from_prepared_equal_raw(architecture, prepared_dir, tmp_path, tiny_corpus, cache_dir):
    """Table 5's other networks read the same prepared corpus (BERT's samples: the masked texts' pieces)."""
    from gptbench.training.pretrain import run_pretrain

    arch = [f"architecture={architecture}"]
    raw_model = run_pretrain(load_config("smoke", [*tiny_overrides(tmp_path / "raw", tiny_corpus, cache_dir), *arch]))
    prepared = [*tiny_overrides(tmp_path / "prep", tmp_path / "no-corpus", tmp_path / "no-cache"), *arch,
                f"prepared={prepared_dir}"]  # fmt: skip
    prep_model = run_pretrain(load_config("smoke", prepared))
    assert prep_model.relative_to(tmp_path / "prep") == raw_model.relative_to(tmp_path / "raw")
    assert _weights(prep_model) and _weights(prep_model) == _weights(raw_model)


def test_sweep_runs_from_prepared_directory(prepared_dir, tmp_path):
    """A sweep (the unit of `reproduce`) from the prepared directory alone: pre-training, then its fine-tunes."""
    from gptbench.suite.sweep import run_sweep

    table = tmp_path / "t.yaml"
    table.write_text(f"kind: table\npaper_table: table2_nli\ntasks: [{TASK}]\nseeds: [1234]\nvariants:\n  full: []\n")
    args = [*tiny_overrides(tmp_path / "runs", tmp_path / "no-corpus", tmp_path / "no-cache"),
            f"finetune.data_dir={tmp_path / 'no-data'}", f"prepared={prepared_dir}", "finetune.epochs=1",
            f"results_dir={tmp_path / 'results'}"]  # fmt: skip
    run_sweep(str(table), "smoke", args)
    status = json.loads((tmp_path / "results/runs/table2_nli" / TASK / "full/seed1234.json").read_text())
    assert status["status"] == "done", status


def test_zero_shot_from_prepared_equals_raw_and_refuses_other_subsets(pretrained, prepared_dir, tmp_path, capsys):
    """`gptbench zeroshot` from a prepared directory alone (spaCy and the data absent) scores the
    same encoded examples as from the raw files: the same results, to the last digit."""
    from gptbench.cli import main
    from gptbench.data.prepared import Plan
    from gptbench.evaluation.zeroshot import ZERO_SHOT_TASKS

    from conftest import pretrained_model

    out = tmp_path / "prepared"
    prepare(out, Plan([], [], [(load_config("smoke", pretrained), ZERO_SHOT_TASKS, 8)]))
    model = str(pretrained_model(pretrained))
    assert main(["zeroshot", model, "max_examples=8", f"data_dir={DATA}", f"out={tmp_path / 'raw.json'}"]) == 0
    run_blocked([["zeroshot", model, "max_examples=8", f"prepared={out}", f"out={tmp_path / 'prepared.json'}"]],
                tmp_path, {"GPTBENCH_DATA": str(tmp_path / "no-data")})  # fmt: skip
    raw = json.loads((tmp_path / "raw.json").read_text())["results"]
    assert raw == json.loads((tmp_path / "prepared.json").read_text())["results"]
    assert [raw[t]["n"] for t in ZERO_SHOT_TASKS] == [8] * 4 and raw["cola"]["n_train"] == 8

    manifest = json.loads((out / "manifest.json").read_text())
    assert {(e["task"], e["split"], e["rows"]) for e in manifest["zero_shot"].values()} == {
        ("sst2", "dev", 8), ("cola", "dev", 8), ("cola", "train", 8), ("race", "dev", 8), ("dprd", "test", 8)}
    capsys.readouterr()
    assert main(["zeroshot", model, "tasks=sst2", "max_examples=9", f"prepared={out}"]) == 2  # another subset
    assert re.search(r"zero-shot task sst2 split 'dev' holds 8 of its 872 examples, not the one at position \d+ that "
                     r"this run reads; prepare with the run's preset", capsys.readouterr().err)  # fmt: skip
    assert main(["zeroshot", model, "tasks=sst2", f"prepared={prepared_dir}"]) == 2  # prepared for RTE only
    assert "holds no zero-shot task sst2 split 'dev' for tokenizer" in capsys.readouterr().err


def test_only_drawn_rows_are_stored_and_other_positions_are_refused_unless_rows_all(prepared_dir, tmp_path, tiny_corpus,
                                                                                   cache_dir):  # fmt: skip
    """A split keeps its full length and the rows at the positions the prepared runs draw; a run
    drawing others (another seed) is refused naming the split, and runs with rows=all."""
    from gptbench.training.finetune import run_finetune

    manifest = json.loads((prepared_dir / "manifest.json").read_text())
    train = [e for e in manifest["tasks"].values() if e["task"] == TASK and e["split"] == "train"]
    for entry in train:  # 96 training examples and a holdout of 10% at most, for seed 1234
        assert entry["full_examples"] == 2490 and 96 <= entry["rows"] == len(entry["positions"]) < 2490 // 2

    other_seed = [*tiny_overrides(tmp_path / "runs", tmp_path / "no-corpus", tmp_path / "no-cache"),
                  f"finetune.data_dir={tmp_path / 'no-data'}", f"finetune.task={TASK}", "finetune.seed=3",
                  "finetune.init=none", "finetune.epochs=1"]  # fmt: skip
    with pytest.raises(PreparedError, match=rf"task {TASK} split 'train' holds \d+ of its 2,490 examples, not the one "
                                            r"at position \d+ \(and \d+ more\) that this run reads; prepare with"):  # fmt: skip
        run_finetune(load_config("smoke", [*other_seed, f"prepared={prepared_dir}"]))

    whole = tmp_path / "whole"
    base = tiny_overrides(tmp_path / "prep_runs", tiny_corpus, cache_dir)
    prepare(whole, reproduction_configs("smoke", base, [TASK]), rows="all")
    entries = json.loads((whole / "manifest.json").read_text())["tasks"].values()
    assert all(e["positions"] is None and e["rows"] == e["full_examples"] for e in entries)
    results = run_finetune(load_config("smoke", [*other_seed, f"prepared={whole}"]))
    assert results["splits"]["train"]["examples"] == 96


def test_compressed_directory_holds_the_same_arrays_and_rows(prepared_dir, tmp_path, tiny_corpus, cache_dir):
    """compress=true: the same token arrays and rows, in fewer bytes (runs from it: the
    reproduction test in test_prepare_reproduce.py)."""
    import numpy as np

    from gptbench.data.prepared import read_tokens

    small = tmp_path / "compressed"
    size = prepare(small, reproduction_configs("smoke", tiny_overrides(tmp_path / "runs", tiny_corpus, cache_dir), [TASK]),
                   compress=True)  # fmt: skip
    plain, packed = open_prepared(prepared_dir), open_prepared(small)
    assert size < sum(p.stat().st_size for p in prepared_dir.rglob("*") if p.is_file())
    (corpus,) = plain.manifest["corpora"].values()
    (small_corpus,) = packed.manifest["corpora"].values()
    for split in ("train", "val"):
        assert small_corpus[split].endswith(".npy.zst")
        a, b = read_tokens(prepared_dir / corpus[split]), read_tokens(small / small_corpus[split])
        assert a.dtype == b.dtype == np.uint16 and np.array_equal(a, b)
    assert plain.manifest["tasks"].keys() == packed.manifest["tasks"].keys()
    for key, entry in plain.manifest["tasks"].items():
        args = (entry["task"], entry["split"], entry["source"], entry["tokenizer"], entry["n_ctx"], entry["input_format"])
        rows, small_rows = plain.task_split(*args)[0], packed.task_split(*args)[0]
        assert rows.positions == small_rows.positions
        assert rows.rows.features == small_rows.rows.features and rows.rows.to_list() == small_rows.rows.to_list()
    with pytest.raises(PreparedError, match="compressed=False, this config gives True"):
        prepare(prepared_dir, reproduction_configs("smoke", tiny_overrides(tmp_path / "r", tiny_corpus, cache_dir), [TASK]),
                compress=True)  # fmt: skip
