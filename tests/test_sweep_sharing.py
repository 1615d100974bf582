"""Fine-tunes sharing one GPU (issue #29): workers that run many runs, and the GPU's busy fraction.

No GPU here: the busy sampler is tested with fake readers and nvidia-smi's real output format, and
the worker reuse on the CPU, where it must give the numbers of fresh processes bit for bit."""

import json
import time
from pathlib import Path

import pytest
from conftest import compiles_on_cpu, pretrained_model

from gptbench.suite import sweep
from gptbench.suite.sweep import GpuShare, Progress, expand, graph_key, load_table, next_run
from gptbench.suite.utilization import BusySampler, busy_line, parse_nvidia_smi

NVIDIA_SMI = "0, GPU-1f0c2e7a-aaaa-bbbb-cccc-000000000000, 37\n1, GPU-9d3b-dddd, [N/A]\n"


def test_nvidia_smi_rows_by_index_or_uuid():
    assert parse_nvidia_smi(NVIDIA_SMI, ["0"]) == {"0": 37.0}
    assert parse_nvidia_smi(NVIDIA_SMI, ["GPU-1f0c2e7a-aaaa-bbbb-cccc-000000000000"]) == {
        "GPU-1f0c2e7a-aaaa-bbbb-cccc-000000000000": 37.0}  # fmt: skip
    assert parse_nvidia_smi(NVIDIA_SMI, ["1"]) is None  # "[N/A]": not a reading
    assert parse_nvidia_smi(NVIDIA_SMI, ["2"]) is None  # not listed


def test_busy_sampler_averages_each_device_over_its_samples():
    with BusySampler(lambda: {"0": 40.0, "1": 80.0}, interval=0.01) as sampler:
        time.sleep(0.2)
    summary = sampler.summary()
    assert summary["busy_by_device"] == {"0": 0.4, "1": 0.8} and summary["busy"] == pytest.approx(0.6)
    assert summary["samples"] >= 5 and summary["interval_s"] == 0.01 and summary["seconds"] >= 0.2
    assert busy_line("table4_glue", summary).startswith("table4_glue: GPU busy 60% of 0 s of fine-tuning (GPU 0 40%, GPU 1 80%")


@pytest.mark.parametrize("read", [None, lambda: None], ids=["no reader", "unreadable"])
def test_busy_sampler_without_readings_measures_nothing(read):
    """No GPU, or no way to read it: no summary (None), never a measured 0%."""
    with BusySampler(read, interval=0.01) as sampler:
        time.sleep(0.05)
    assert sampler.summary() is None
    assert "not measured" in busy_line("t", None)


def test_sweep_records_the_busy_fraction_only_where_it_ran_on_gpus(tmp_path, monkeypatch, capsys):
    """Runs on GPU slots: sampled while they run, printed and kept in provenance.json (beside what
    is there); CPU slots: nothing sampled, printed or recorded."""
    monkeypatch.setattr(sweep, "_run_local", lambda *args: time.sleep(0.1))
    monkeypatch.setattr(sweep, "nvidia_smi_reader", lambda devices: (lambda: {d: 25.0 for d in devices}))
    monkeypatch.setattr(sweep, "SAMPLE_INTERVAL_S", 0.01)
    (tmp_path / "provenance.json").write_text(json.dumps({"preset": "gpu"}))
    run = object()
    sweep._run_local_measured("table2_nli", [run], tmp_path, [GpuShare("0", 2), GpuShare("0", 2)], Progress(1, 0, 2), 8)
    recorded = json.loads((tmp_path / "provenance.json").read_text())
    busy = recorded["gpu_busy"]["table2_nli"]
    assert recorded["preset"] == "gpu" and busy["busy"] == 0.25 and busy["busy_by_device"] == {"0": 0.25}
    assert (busy["jobs"], busy["worker_runs"], busy["runs"]) == (2, 8, 1)
    assert "table2_nli: GPU busy 25%" in capsys.readouterr().out

    sweep._run_local_measured("table3_qa", [run], tmp_path, [None, None], Progress(1, 0, 2), 8)
    assert set(json.loads((tmp_path / "provenance.json").read_text())["gpu_busy"]) == {"table2_nli"}
    assert "GPU busy" not in capsys.readouterr().out


def test_a_free_slot_takes_its_own_graph_key_then_one_nobody_runs():
    a1, a2, b1, c1 = "a1", "a2", "b1", "c1"
    keys = {a1: "A", a2: "A", b1: "B", c1: "C"}
    assert next_run([b1, a1, a2], keys, last="A", busy={"B"}) == a1  # its compiled graphs are reused
    assert next_run([b1, c1], keys, last="A", busy={"B"}) == c1  # B is another worker's
    assert next_run([b1], keys, last="A", busy={"B"}) == b1  # nothing else left
    assert next_run([b1, c1], keys, last=None, busy=set()) == b1


def test_graph_keys_group_runs_whose_compiled_graphs_match():
    runs = expand(load_table("table5_ablations"), "smoke", [], seeds=[1, 2], tasks=["rte", "cola"])
    key = {(r.variant, r.task, r.seed): graph_key(r.config()) for r in runs}
    assert key["full", "rte", 1] == key["full", "rte", 2] == key["no_pretraining", "rte", 1]  # seeds, init: same graphs
    assert len({key["full", "rte", 1], key["full", "cola", 1], key["no_aux_lm", "rte", 1], key["lstm", "rte", 1],
                key["linear_probe", "rte", 1], key["bert", "rte", 1]}) == 6  # fmt: skip


def _outputs(results_dir: Path, runs) -> list[tuple]:
    """Each run's scores and selection, its predictions and its exported model (the files' bytes)."""
    outputs = []
    for run in runs:
        status = json.loads(sweep.status_path(results_dir, run).read_text())
        assert status["status"] == "done", status.get("error")
        stage = run.config().run_dir / "finetune" / status["task"] / status["settings_key"] / f"seed{run.seed}"
        here = str(run.config().runs_dir).encode()  # the model card names the run's directory
        weights = sorted((p.relative_to(stage).as_posix(), p.read_bytes().replace(here, b"RUNS"))
                         for p in (stage / "model").rglob("*") if p.is_file())  # fmt: skip
        outputs.append((status["metrics"], status["selection"], (stage / "predictions.json").read_text(), weights))
    return outputs


@pytest.mark.parametrize("compile", [False, pytest.param(True, marks=compiles_on_cpu)], ids=["eager", "compiled"])
def test_two_runs_in_one_worker_equal_two_fresh_processes_bit_for_bit(pretrained, tmp_path, compile):
    """Two fine-tunes of one graph key (two seeds) in one reused worker give the numbers, the
    predictions and the weights of the same two in fresh processes, byte for byte; the second
    reuses the first's compiled graphs."""
    outputs, worker_runs, graphs = {}, {}, {}
    for reuse in (1, 2):  # from the tiny pre-trained model (the same for eager and compiled fine-tunes)
        overrides = [*pretrained, f"runs_dir={tmp_path / f'runs{reuse}'}", f"finetune.init={pretrained_model(pretrained)}",
                     f"trainer.compile={str(compile).lower()}", "finetune.max_train_examples=48", "finetune.epochs=1"]  # fmt: skip
        runs = expand(load_table("table4_glue"), "smoke", overrides, seeds=[1, 2], tasks=["cola"], variants=["full"])
        results = tmp_path / f"results{reuse}"
        sweep._run_local(runs, results, [None], Progress(len(runs), 0, 1), worker_runs=reuse)
        outputs[reuse] = _outputs(results, runs)
        statuses = [json.loads(sweep.status_path(results, r).read_text()) for r in runs]
        worker_runs[reuse] = [s["worker_run"] for s in statuses]
        graphs[reuse] = [s.get("graphs_compiled") for s in statuses]
    assert worker_runs == {1: [1, 1], 2: [1, 2]}  # fresh processes; then both runs in one worker
    if compile:  # a fresh process compiles the step again; the reused worker's graphs serve the second run
        assert graphs[1][1] > 0 and graphs[2] == [graphs[1][0], 0]
    for reused, fresh in zip(outputs[2], outputs[1]):
        assert reused[:3] == fresh[:3]  # scores, selection, predictions
        assert [name for name, _ in reused[3]] == [name for name, _ in fresh[3]]
        for (name, a), (_, b) in zip(reused[3], fresh[3]):
            assert a == b, name


def test_provenance_records_the_software_and_keeps_the_busy_fraction(pretrained, tmp_path):
    """provenance.json says which torch, CUDA, cuDNN and GPUs made the numbers (bit-exactness holds
    only with the same), and rewriting it after a pre-training keeps the sweeps' busy fractions."""
    import torch

    from gptbench.config import load_config
    from gptbench.suite.report.write import provenance_lines, software_line
    from gptbench.suite.results import write_pretrain_results

    busy = {"table2_nli": {"busy": 0.5, "seconds": 90.0, "jobs": 4}}
    (tmp_path / "provenance.json").write_text(json.dumps({"gpu_busy": busy}))
    write_pretrain_results(load_config("smoke", pretrained), tmp_path)
    provenance = json.loads((tmp_path / "provenance.json").read_text())
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    assert provenance["software"] == {"torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": cudnn, "gpus": []}
    assert provenance["gpu_busy"] == busy
    lines = provenance_lines(provenance, {"parameters": 116_534_784, "perplexity": 18.4, "corpus": "BooksCorpus"})
    assert f"software: torch {torch.__version__}, CUDA none (a CPU build), no GPU" in lines
    assert "GPU busy while the fine-tunes ran (nvidia-smi's utilization.gpu, sampled): table2_nli 50% of 90.0 s " \
           "(4 runs at a time)" in lines  # fmt: skip
    gpu = {"torch": "2.11.0+cu128", "cuda": "12.8", "cudnn": 91002, "gpus": ["NVIDIA H200"]}
    assert software_line(gpu) == "torch 2.11.0+cu128, CUDA 12.8, cuDNN 91002, GPU NVIDIA H200"
