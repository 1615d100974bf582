"""Sweeps on GPUs: SLURM jobs ask for the run's devices and wait for their pre-training, local
jobs get a GPU each, and DDP is refused where Lightning would re-run the sweep's command."""

import json
from pathlib import Path

import pytest
import submitit
import torch
from conftest import tiny_overrides

from gptbench.config import ConfigError
from gptbench.suite import sweep as sweep_module
from gptbench.suite.sweep import GpuShare, execute_run, expand, gpu_slots, load_table, run_sweep, visible_gpus


def write_table(path: Path, tasks, seeds) -> Path:
    path.write_text(f"kind: table\npaper_table: table2_nli\ntasks: {list(tasks)}\nseeds: {list(seeds)}\nvariants:\n  full: []\n")
    return path


class FakeJob:
    def __init__(self, job_id: str, result):
        self.job_id, self.result, self.cancelled = job_id, result, False

    def results(self):
        return [self.result]

    def cancel(self, check: bool = True):
        self.cancelled = True


class FakeSlurm:
    """submitit.AutoExecutor on a SLURM cluster, recording what is asked of it."""

    made: list["FakeSlurm"] = []

    def __init__(self, folder):
        self.parameters, self.submitted = {}, []
        FakeSlurm.made.append(self)

    def update_parameters(self, **parameters):
        self.parameters.update(parameters)

    def submit(self, fn, *args):
        self.submitted.append((fn, args))
        return FakeJob(f"{100 + len(FakeSlurm.made)}", "export")

    def map_array(self, fn, *iterables):
        self.submitted.append((fn, iterables))
        return [FakeJob(f"{200 + len(FakeSlurm.made)}_{i}", {"status": "unavailable", "reason": "fake"})
                for i in range(len(iterables[0]))]  # fmt: skip


def test_slurm_pretrains_in_a_job_of_its_own_and_asks_for_the_runs_devices(tiny_corpus, cache_dir, tmp_path, monkeypatch):
    """Before: the pre-training ran in the submitting process (a login node), no GPU was asked
    for, and cpus_per_task was the submitting host's core count."""
    FakeSlurm.made = []
    monkeypatch.setattr(submitit, "AutoExecutor", FakeSlurm)
    monkeypatch.setattr("gptbench.training.pretrain.run_pretrain", lambda cfg: pytest.fail("pre-trained in the sweep"))
    table = write_table(tmp_path / "t.yaml", ["rte"], [1, 2])
    overrides = [*tiny_overrides(tmp_path / "runs", tiny_corpus, cache_dir), "trainer.devices=2", "trainer.strategy=ddp",
                 "executor=slurm", "jobs=4", "cpus_per_task=6", "slurm={slurm_partition: gpu}",
                 f"results_dir={tmp_path / 'results'}"]  # fmt: skip
    run_sweep(str(table), "smoke", overrides)

    pretraining, finetunes = FakeSlurm.made
    asked = {"nodes": 1, "tasks_per_node": 2, "gpus_per_node": 2, "cpus_per_task": 6, "slurm_partition": "gpu"}
    assert pretraining.submitted[0][0] is sweep_module.pretrain_job
    assert asked.items() <= pretraining.parameters.items() and "slurm_dependency" not in pretraining.parameters
    assert finetunes.submitted[0][0] is execute_run and len(finetunes.submitted[0][1][0]) == 2
    assert asked.items() <= finetunes.parameters.items()
    assert finetunes.parameters["slurm_dependency"] == "afterok:101" and finetunes.parameters["slurm_array_parallelism"] == 4


def test_slurm_cpu_runs_ask_for_no_gpu_and_a_failed_pretraining_fails_its_runs(tiny_corpus, cache_dir, tmp_path, monkeypatch):
    FakeSlurm.made = []
    monkeypatch.setattr(submitit, "AutoExecutor", FakeSlurm)

    def failing(job_id, result):
        job = FakeJob(job_id, result)
        job.results = lambda: (_ for _ in ()).throw(RuntimeError("out of memory"))
        return job

    monkeypatch.setattr(FakeSlurm, "submit", lambda self, fn, *args: failing("101", None))
    table = write_table(tmp_path / "t.yaml", ["rte"], [1])
    results = tmp_path / "results"
    run_sweep(str(table), "smoke", [*tiny_overrides(tmp_path / "runs", tiny_corpus, cache_dir), "trainer.accelerator=cpu",
                                    "executor=slurm", f"results_dir={results}"])  # fmt: skip
    assert "gpus_per_node" not in FakeSlurm.made[1].parameters and "cpus_per_task" not in FakeSlurm.made[1].parameters
    status = json.loads((results / "runs/table2_nli/rte/full/seed1.json").read_text())
    assert status["status"] == "failed" and status["error"] == "pre-training job 101 failed: out of memory"


@pytest.mark.parametrize("executor", ["local", "submitit_local"])
def test_ddp_inside_a_local_sweep_is_refused_saying_what_to_do(tiny_corpus, cache_dir, tmp_path, executor):
    table = write_table(tmp_path / "t.yaml", ["rte"], [1])
    with pytest.raises(ConfigError, match=r"trainer.devices=2 .*\(DDP\) cannot run inside `gptbench sweep` with "
                                          rf"executor={executor}: .*Use executor=slurm"):  # fmt: skip
        run_sweep(str(table), "smoke", [*tiny_overrides(tmp_path / "runs", tiny_corpus, cache_dir), "trainer.devices=2",
                                        f"executor={executor}"])  # fmt: skip


def test_local_job_slots_get_a_gpu_each_or_a_configured_share(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert visible_gpus() == ["0", "1", "2"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,6")  # a job must name them as the parent does
    assert visible_gpus() == ["4", "6"]
    assert gpu_slots(2, ["4", "6"], share=False) == [GpuShare("4"), GpuShare("6")]
    with pytest.raises(ConfigError, match=r"jobs=3 on 2 GPU\(s\).*share_gpus=true"):
        gpu_slots(3, ["4", "6"], share=False)
    assert gpu_slots(3, ["4", "6"], share=True) == [GpuShare("4", 2), GpuShare("6", 1), GpuShare("4", 2)]
    assert gpu_slots(2, [], share=False) == [None, None]  # no GPU: the CPU, threads divided


def test_local_jobs_run_on_their_own_gpu(pretrained, tmp_path, monkeypatch):
    """Two jobs on a machine with 2 GPUs (mocked here): each run's process gets its own
    CUDA_VISIBLE_DEVICES, recorded in its status. Before: every job used cuda:0."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    table = write_table(tmp_path / "g.yaml", ["rte"], [4, 5])
    results = tmp_path / "results"
    run_sweep(str(table), "smoke", [*pretrained, "finetune.epochs=1", f"results_dir={results}", "jobs=2"])
    statuses = [json.loads(p.read_text()) for p in sorted((results / "runs").rglob("seed*.json"))]
    assert [s["status"] for s in statuses] == ["done", "done"]
    assert sorted(s["cuda_visible_devices"] for s in statuses) == ["0", "1"]


def test_only_rank_zero_of_a_multi_task_job_writes_the_status(tiny_corpus, cache_dir, tmp_path, monkeypatch):
    """Under srun every task of a DDP fine-tune runs execute_run; one status file, rank 0's."""
    monkeypatch.setattr("gptbench.training.finetune.run_finetune",
                        lambda cfg: {"metrics": {}, "task": "rte", "seed": 1, "settings_key": "k"})  # what results.json holds
    (run,) = expand(load_table(str(write_table(tmp_path / "t.yaml", ["rte"], [1]))), "smoke",
                    tiny_overrides(tmp_path / "runs", tiny_corpus, cache_dir))  # fmt: skip
    status_file = sweep_module.status_path(tmp_path / "results", run)
    monkeypatch.setenv("SLURM_PROCID", "1")
    assert execute_run(run, str(tmp_path / "results"))["status"] == "done" and not status_file.exists()
    assert sweep_module.log_path(run.config(), run).with_suffix(".rank1.log").is_file()
    monkeypatch.setenv("SLURM_PROCID", "0")
    execute_run(run, str(tmp_path / "results"))
    assert json.loads(status_file.read_text())["status"] == "done"
