"""Sweeps: expansion, idempotence, failure records, submitit, and kill -9 at any moment."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import pretrained_model
from rescoring import rescored_accuracy, saved_model

from gptbench.config import ConfigError, load_config
from gptbench.suite.paper import load_paper_numbers
from gptbench.suite.sweep import expand, load_table, run_sweep, split_overrides
from gptbench.training.common import checkpoint_step, latest_checkpoint

PAUSE_HOOK = Path(__file__).resolve().parent / "pause_hook"


def test_paper_tables_expand_into_runs():
    table = load_table("table4_glue")
    assert table.paper_table == "table4_classification" and table.tasks == ("cola", "sst2", "mrpc", "stsb", "qqp")
    sweep, experiment = split_overrides(["seeds=[1,2,3]", "jobs=2", "finetune.epochs=1"])
    assert sweep == {"seeds": [1, 2, 3], "jobs": 2} and experiment == ["finetune.epochs=1"]
    runs = expand(table, "smoke", experiment, seeds=sweep["seeds"], variants=["full"])
    assert len(runs) == 15 and runs[0].id == "table4_glue/cola/full/seed1" and runs[-1].id == "table4_glue/qqp/full/seed3"
    assert runs[0].config().finetune.seed == 1 and runs[0].config().finetune.epochs == 1
    assert runs[0].config().seed == runs[-1].config().seed  # one pre-training for every run
    encoder = ("architecture=bert", "finetune.lm_coef=0")  # BERT's recipe at the same budget (issue #15)
    for name in ("table2_nli", "table3_qa", "table4_glue"):
        assert load_table(name).variants == {"full": (), "bert": encoder}
    bert = expand(table, "smoke", [], tasks=["mrpc"], variants=["bert"])[0].config()
    assert bert.architecture == "bert" and bert.finetune.lm_coef == 0 and bert.seed == runs[0].config().seed
    ablations = load_table("table5_ablations")
    paper_rows = {row["variant"]: row["overrides"] for row in load_paper_numbers()["tables"]["table5_ablations"]["rows"]}
    for variant, overrides in ablations.variants.items():  # the same ablations as the paper's rows
        if variant in paper_rows:  # not: our floor under the fine-tunes, BERT's recipe and its two twins
            assert list(overrides) == paper_rows[variant], variant
    ours = {"linear_probe", "bert", "bert_no_pretraining", "bert_linear_probe"}
    assert set(ablations.variants) == {*paper_rows, *ours} and ablations.variants["bert"] == encoder
    for twin, setting in (("bert_no_pretraining", "init"), ("bert_linear_probe", "freeze_body")):
        config = expand(ablations, "smoke", [], tasks=["rte"], variants=[twin])[0].config()
        assert config.architecture == "bert" and getattr(config.finetune, setting) == getattr(
            expand(ablations, "smoke", [], tasks=["rte"], variants=[twin.replace("bert_", "")])[0].config().finetune, setting)
    probe = expand(ablations, "smoke", [], tasks=["rte"], variants=["linear_probe"])[0].config()
    assert probe.finetune.freeze_body and probe.finetune.lm_coef == 0 and probe.finetune.lr == 1e-2
    scratch = expand(ablations, "smoke", [], tasks=["rte"], variants=["no_pretraining"])[0].config()
    assert scratch.finetune.init == "none" and scratch.finetune.lm_coef == 0.5
    with pytest.raises(ConfigError, match="is a sweep file, not a preset"):
        load_config("table4_glue")
    with pytest.raises(ConfigError, match=r"\['wnli'\] are not tasks or variants"):
        expand(table, "smoke", [], tasks=["wnli"])
    with pytest.raises(ConfigError, match="finetune.lr"):
        expand(table, "smoke", ["finetune.lr=-1"])  # every run's config is checked before any work


def write_table(path: Path, tasks, seeds, variants) -> Path:
    lines = ["kind: table", "paper_table: table2_nli", f"tasks: {list(tasks)}", f"seeds: {list(seeds)}", "variants:"]
    lines += [f"  {name}: {json.dumps(list(overrides))}" for name, overrides in variants.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def statuses(results: Path) -> dict:
    return {str(p.relative_to(results / "runs")): json.loads(p.read_text()) for p in sorted((results / "runs").rglob("*.json"))}


def test_sweep_records_done_unavailable_failed_and_skips_finished_runs(pretrained, tmp_path, capsys):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{}")  # a checkpoint directory whose config lacks every key
    table = write_table(tmp_path / "t.yaml", ["rte", "mnli"], [7],
                        {"full": [], "broken": [f"finetune.init={broken}", "tokenizer.kind=gpt1"]})
    results = tmp_path / "results"
    args = [*pretrained, "finetune.epochs=1", f"results_dir={results}"]
    run_sweep(str(table), "smoke", args)
    got = statuses(results)
    assert sorted(got) == ["table2_nli/mnli/broken/seed7.json", "table2_nli/mnli/full/seed7.json",
                           "table2_nli/rte/broken/seed7.json", "table2_nli/rte/full/seed7.json"]  # fmt: skip
    assert got["table2_nli/rte/full/seed7.json"]["status"] == "done" and got["table2_nli/rte/full/seed7.json"]["seed"] == 7
    done = got["table2_nli/rte/full/seed7.json"]  # the run's saved model, re-scored by scikit-learn, agrees
    rescored = rescored_accuracy(saved_model(pretrained_model(pretrained).parents[1], done), done, "dev")
    assert done["metrics"]["dev"]["accuracy"] == pytest.approx(rescored, abs=1e-6)
    assert got["table2_nli/mnli/full/seed7.json"]["status"] == "unavailable"
    assert "MNLI/train.tsv: not found" in got["table2_nli/mnli/full/seed7.json"]["reason"]
    failed = got["table2_nli/rte/broken/seed7.json"]
    assert failed["status"] == "failed" and "config.json: missing key" in failed["error"]
    assert "Traceback" in Path(failed["log"]).read_text()  # the whole story is in the run's log
    assert (results / "provenance.json").is_file() and (results / "pretrain_curve.csv").is_file()
    out = capsys.readouterr().out
    assert "[4/4 runs, 1 failed]" in out and "t/mnli/full/seed7: unavailable" in out

    done_at = (results / "runs/table2_nli/rte/full/seed7.json").stat().st_mtime_ns
    run_sweep(str(table), "smoke", args)  # done runs are skipped, the others retried
    assert "4 runs, 1 already done, 2 without their data here, 1 to run" in capsys.readouterr().out
    assert (results / "runs/table2_nli/rte/full/seed7.json").stat().st_mtime_ns == done_at


def test_submitit_executor_runs_the_same_code(pretrained, tmp_path):
    table = write_table(tmp_path / "s.yaml", ["rte"], [3], {"full": []})
    results = tmp_path / "results"
    run_sweep(str(table), "smoke", [*pretrained, "finetune.epochs=1", f"results_dir={results}",
                                    "executor=submitit_local"])  # fmt: skip
    status = statuses(results)["table2_nli/rte/full/seed3.json"]
    assert status["status"] == "done" and status["selection"]["protocol"] == "holdout"


def test_jobs_run_side_by_side_with_the_cores_divided(pretrained, tmp_path):
    table = write_table(tmp_path / "j.yaml", ["rte"], [4, 5], {"full": []})
    results = tmp_path / "results"
    run_sweep(str(table), "smoke", [*pretrained, "finetune.epochs=1", f"results_dir={results}", "jobs=2"])
    got = statuses(results)
    assert [s["status"] for s in got.values()] == ["done", "done"]
    assert {s["torch_threads"] for s in got.values()} == {max(1, (os.cpu_count() or 1) // 2)}
    for status in got.values():  # two runs at once kept apart: each status is its own saved model's score
        rescored = rescored_accuracy(saved_model(pretrained_model(pretrained).parents[1], status), status, "dev")
        assert status["metrics"]["dev"]["accuracy"] == pytest.approx(rescored, abs=1e-6), status["seed"]


def test_kill_9_mid_sweep_then_rerun_equals_an_uninterrupted_sweep(pretrained, tmp_path):
    """kill -9 of the whole sweep while its second run is mid-training, then a rerun: the results of
    a sweep never interrupted, and no half-written file. The moment does not depend on the machine's
    speed: tests/pause_hook holds the second run after step 15 of its 30 (mid-way through its second
    epoch, after the first epoch's checkpoint at step 10) and says so with a marker file."""
    init = f"finetune.init={pretrained_model(pretrained)}"
    table = write_table(tmp_path / "k.yaml", ["rte"], [1, 2], {"full": []})
    base = [*pretrained, init, "finetune.epochs=3", "finetune.max_train_examples=160"]

    def sweep(name: str, results: Path, pause: str | None = None) -> subprocess.Popen:
        cmd = [sys.executable, "-m", "gptbench.cli", "sweep", str(table), "smoke", *base, f"name={name}",
               f"results_dir={results}"]  # fmt: skip
        env = dict(os.environ)
        if pause:
            path = [str(PAUSE_HOOK), *filter(None, [env.get("PYTHONPATH")])]
            env |= {"GPTBENCH_TEST_PAUSE": pause, "PYTHONPATH": os.pathsep.join(path)}
        return subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env=env)  # fmt: skip

    straight = tmp_path / "straight"
    assert sweep("straight", straight).wait(timeout=600) == 0

    killed, paused = tmp_path / "killed", tmp_path / "paused"
    process = sweep("killed", killed, pause=f"2:15:{paused}")
    deadline = time.time() + 600
    while not paused.is_file():
        assert process.poll() is None, f"the sweep exited ({process.returncode}) before its second run reached step 15"
        assert time.time() < deadline, "the second run did not reach step 15 in 600 s"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)  # the sweep and its workers, with no chance to clean up
    process.wait()
    assert sorted(statuses(killed)) == ["table2_nli/rte/full/seed1.json"]  # the first run done, not the second
    killed_runs = pretrained_model(pretrained).parents[2] / "killed" / "finetune" / "rte"
    (checkpoints,) = killed_runs.glob("*/seed2/checkpoints")
    assert checkpoint_step(latest_checkpoint(checkpoints)) == 10  # the rerun resumes there
    assert sweep("killed", killed).wait(timeout=600) == 0

    a, b = statuses(straight), statuses(killed)
    assert sorted(a) == sorted(b) == ["table2_nli/rte/full/seed1.json", "table2_nli/rte/full/seed2.json"]
    for run in a:
        assert a[run]["metrics"] == b[run]["metrics"] and a[run]["selection"] == b[run]["selection"], run
    leftovers = [p for p in killed.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []  # no half-written result


def test_sigterm_to_the_sweep_stops_its_worker_which_saves_and_resumes(pretrained, tmp_path):
    init = f"finetune.init={pretrained_model(pretrained)}"
    table = write_table(tmp_path / "t.yaml", ["rte"], [1], {"full": []})
    results = tmp_path / "results"
    cmd = [sys.executable, "-m", "gptbench.cli", "sweep", str(table), "smoke", *pretrained, init, "name=term",
           "finetune.epochs=40", "finetune.max_train_examples=160", f"results_dir={results}"]  # fmt: skip
    process = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    runs_dir = Path(next(o.split("=", 1)[1] for o in pretrained if o.startswith("runs_dir=")))
    checkpoints = runs_dir / "term" / "finetune" / "rte"
    deadline = time.time() + 300
    while not list(checkpoints.glob("*/seed1/checkpoints/epoch0-*.ckpt")) and time.time() < deadline:
        time.sleep(0.05)
    process.terminate()  # the sweep's own pid only, as `kill <pid>` does
    assert process.wait(timeout=120) == 143
    deadline = time.time() + 60  # the worker (and the forkserver) leave the process group
    while time.time() < deadline:
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        os.killpg(process.pid, signal.SIGKILL)
        raise AssertionError("a worker outlived the sweep it belonged to")
    assert list(checkpoints.glob("*/seed1/checkpoints/on_exception.ckpt"))
    assert not (results / "runs/table2_nli/rte/full/seed1.json").is_file()  # not marked failed: a rerun resumes


def test_task_seeds_give_the_small_tasks_more_seeds():
    from gptbench.config import ReproduceConfig

    plan = ReproduceConfig(task_seeds={"rte": [1, 2, 3], "cola": [7]}, tasks={"table5_ablations": ["rte", "sst2"]})
    args = plan.arguments("table5_ablations")
    assert args == ["task_seeds={rte: [1, 2, 3], cola: [7]}", "tasks=[rte,sst2]"]
    sweep, experiment = split_overrides(args)
    assert sweep["task_seeds"] == {"rte": [1, 2, 3], "cola": [7]} and experiment == []
    runs = expand(load_table("table5_ablations"), "smoke", [], sweep.get("seeds"), sweep["tasks"], ["full"],
                  task_seeds=sweep["task_seeds"])  # fmt: skip
    assert [r.id for r in runs] == ["table5_ablations/rte/full/seed1", "table5_ablations/rte/full/seed2",
                                    "table5_ablations/rte/full/seed3", "table5_ablations/sst2/full/seed1234"]  # fmt: skip
    with pytest.raises(ConfigError, match=r"task_seeds names \['nope'\], which are not tasks"):
        expand(load_table("table4_glue"), "smoke", [], task_seeds={"nope": [1]})
    with pytest.raises(ConfigError, match="expected a mapping task -> list of integer seeds"):
        expand(load_table("table4_glue"), "smoke", [], task_seeds={"rte": "1,2"})


def test_task_overrides_apply_to_that_task_before_the_sweeps_own():
    from gptbench.config import ReproduceConfig

    plan = ReproduceConfig(task_overrides={"race": ["finetune.max_train_examples=50", "finetune.epochs=2"]},
                           overrides={"table3_qa": ["finetune.max_train_examples=70"]})  # fmt: skip
    args = plan.arguments("table3_qa")
    assert args == ["task_overrides={race: [finetune.max_train_examples=50, finetune.epochs=2]}",
                    "finetune.max_train_examples=70"]  # fmt: skip
    sweep, experiment = split_overrides(args)
    runs = expand(load_table("table3_qa"), "smoke", experiment, task_overrides=sweep["task_overrides"])
    by_task = {r.task: r.config().finetune for r in runs}
    assert by_task["race"].epochs == 2 and by_task["story_cloze"].epochs == 1  # only RACE's runs take them
    assert by_task["race"].max_train_examples == by_task["story_cloze"].max_train_examples == 70  # the sweep's win
    runs = expand(load_table("table3_qa"), "smoke", [], task_overrides=sweep["task_overrides"])
    assert {r.task: r.config().finetune.max_train_examples for r in runs} == {"race": 50, "story_cloze": 1500}
    with pytest.raises(ConfigError, match=r"task_overrides names \['nope'\], which are not tasks"):
        expand(load_table("table3_qa"), "smoke", [], task_overrides={"nope": ["finetune.epochs=2"]})
    with pytest.raises(ConfigError, match="expected a mapping task -> list of key=value overrides"):
        expand(load_table("table3_qa"), "smoke", [], task_overrides={"race": "finetune.epochs=2"})
