"""Sweeps: a paper table x a preset -> runs (task x variant x seed), executed idempotently.

``gptbench sweep table4_glue smoke seeds=[1,2,3]`` expands ``experiments/table4_glue.yaml`` on
the ``smoke`` preset, pre-trains once (shared by every fine-tune that uses it), then runs each
fine-tune in a worker process (forked from a server that imported the training stack once): one
after another, or ``jobs=N`` at a time (threads divided so N jobs never oversubscribe the cores;
on a machine with GPUs, job slot i runs on GPU i mod G, ``gpus=[..]`` choosing them and
``share_gpus=true`` allowing more slots than GPUs). A slot's worker runs one run and exits, or with
``worker_runs=K`` up to K runs (the CUDA context, libraries and compiled graphs made once; a run's
numbers are those of a fresh process). While fine-tunes run on GPUs the sweep samples how busy
they are (:mod:`gptbench.suite.utilization`), prints it and records it in provenance.json. With
``executor=slurm`` (submitit) each pre-training is a job of its own and the fine-tunes that start
from it a job array that waits for it, each job asking for the run's devices (``trainer.devices``
GPUs and as many tasks, per node) and ``cpus_per_task=`` CPUs; ``executor=submitit_local`` runs
the same code on this machine. A run on several devices (DDP) is refused outside SLURM: Lightning
would start its other processes by running the whole sweep's command again.

Each run leaves one status file, written atomically, in ``<results_dir>/runs/<paper table>/
<task>/<variant>/seed<seed>.json``: ``done`` (the run's results), ``failed`` (its error) or
``unavailable`` (its data is absent here, and why). Re-running the sweep skips runs that are done
with the same settings, resumes interrupted ones from their last checkpoint and retries the rest.

A table may generate its variants (``layer_sweep``: one per number of transferred blocks, Figure 2
left) and name ``fallbacks`` for a task whose data is absent (the largest training set present
stands in, noted in its status files). A ``kind: zero_shot_curve`` file is run by
:mod:`gptbench.suite.figure2` instead (Figure 2 right).
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import signal
import sys
import threading
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from omegaconf import OmegaConf

from gptbench.config import EXPERIMENTS_DIR, ConfigError, ExperimentConfig, experiment_files, load_config
from gptbench.io import atomic_write_json
from gptbench.run_identity import finetune_settings, settings_key
from gptbench.suite.figure2 import LAYERS_TABLE, run_zero_shot_curve, write_figure2
from gptbench.suite.utilization import BusySampler, busy_line, nvidia_smi_reader

SWEEP_KEYS = ("seeds", "task_seeds", "task_overrides", "tasks", "variants", "jobs", "executor", "results_dir", "max_examples",
              "gpus", "share_gpus", "worker_runs", "cpus_per_task", "slurm")
EXECUTORS = ("local", "slurm", "submitit_local")
SAMPLE_INTERVAL_S = 1.0  # how often the GPUs' utilisation is read while fine-tunes run on them


@dataclass(frozen=True)
class Table:
    """A sweep file of experiments/ (``kind: table``)."""

    name: str
    paper_table: str  # its key in results/paper.yaml (or figure2_layers), where its statuses are kept
    tasks: tuple[str, ...]
    seeds: tuple[int, ...]
    variants: dict[str, tuple[str, ...]] = field(hash=False)  # variant -> overrides
    # One variant per number of transferred blocks, transfer0 ... transfer<n_layer> of the preset
    # (Figure 2, left), each with these overrides besides finetune.n_transfer.
    layer_sweep: tuple[str, ...] | None = None
    # task -> tasks that stand in for it, in order of preference, where its data is absent: the
    # one with the largest training split present is run and the substitution noted.
    fallbacks: dict[str, tuple[str, ...]] = field(default_factory=dict, hash=False)

    def with_layers(self, n_layer: int) -> "Table":
        """The table with its per-layer variants for a network of ``n_layer`` blocks."""
        if self.layer_sweep is None:
            return self
        variants = {f"transfer{k}": (*self.layer_sweep, f"finetune.n_transfer={k}") for k in range(n_layer + 1)}
        return replace(self, variants=variants)


def load_table(name: str) -> Table:
    path = Path(name) if Path(name).is_file() else EXPERIMENTS_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"sweep table {name!r}: no such file and no table of that name (tables: {experiment_files('table')})")
    node = OmegaConf.to_container(OmegaConf.load(path))
    if not isinstance(node, dict) or node.get("kind") != "table":
        raise ConfigError(f"{path}: not a sweep table (expected 'kind: table')")
    for key in ("paper_table", "tasks", "seeds"):
        if key not in node:
            raise ConfigError(f"{path}: missing key {key!r}")
    layer_sweep = node.get("layer_sweep")
    variants = node.get("variants") if layer_sweep is None else {}
    if layer_sweep is None and (not isinstance(variants, dict) or not variants):
        raise ConfigError(f"{path}: 'variants' must map a variant name to a list of key=value overrides")
    if layer_sweep is not None and (not isinstance(layer_sweep, list) or "variants" in node):
        raise ConfigError(f"{path}: 'layer_sweep' is a list of overrides for every transfer<k> variant, "
                          "and replaces 'variants'")  # fmt: skip
    fallbacks = node.get("fallbacks") or {}
    if not isinstance(fallbacks, dict) or not all(isinstance(v, list) for v in fallbacks.values()):
        raise ConfigError(f"{path}: 'fallbacks' must map a task to a list of tasks that may stand in for it")
    return Table(path.stem, node["paper_table"], tuple(node["tasks"]), tuple(int(s) for s in node["seeds"]),
                 {v: tuple(o or ()) for v, o in variants.items()},
                 None if layer_sweep is None else tuple(layer_sweep),
                 {t: tuple(f) for t, f in fallbacks.items()})  # fmt: skip


@dataclass(frozen=True)
class Run:
    table: str  # the sweep file
    paper_table: str  # the paper's table it fills (results/paper.yaml), where its status is kept
    task: str
    variant: str
    seed: int
    preset: str
    overrides: tuple[str, ...]  # the sweep's, the variant's, then this run's own
    note: str | None = None  # recorded in its status file, e.g. which task it stands in for

    @property
    def id(self) -> str:
        return f"{self.table}/{self.task}/{self.variant}/seed{self.seed}"

    def config(self) -> ExperimentConfig:
        return load_config(self.preset, [*self.overrides, "resume=true"])


def split_overrides(overrides: list[str]) -> tuple[dict, list[str]]:
    """(sweep keys, experiment overrides) from ``key=value`` arguments."""
    sweep, experiment = {}, []
    for o in overrides:
        key, _, value = o.partition("=")
        if key in SWEEP_KEYS:
            sweep[key] = OmegaConf.to_container(OmegaConf.from_dotlist([f"x={value}"]))["x"]
        else:
            experiment.append(o)
    return sweep, experiment


def expand(table: Table, preset: str, overrides: list[str], seeds=None, tasks=None, variants=None,
           stand_ins: dict[str, tuple[str, str]] | None = None, task_seeds: dict | None = None,
           task_overrides: dict | None = None) -> list[Run]:  # fmt: skip
    """Every run of the table on the preset: variant x task x seed, in that order. ``stand_ins``
    maps a task of the table to (the task run in its place, why); ``task_seeds`` gives some tasks
    their own seeds (e.g. more seeds for the small tasks), the others take ``seeds``;
    ``task_overrides`` gives the runs of a task (the one actually run) overrides of their own,
    e.g. a smaller training subset for RACE, applied before the sweep's and the variant's."""
    task_seeds = _task_seeds(table, task_seeds)
    task_overrides = _task_overrides(table, task_overrides)
    table = table.with_layers(load_config(preset, overrides).model.n_layer)
    unknown = sorted(set(tasks or ()) - set(table.tasks)) + sorted(set(variants or ()) - set(table.variants))
    if unknown:
        raise ConfigError(f"sweep {table.name}: {unknown} are not tasks or variants of the table")
    runs = []
    for variant in variants or table.variants:
        for task in tasks or table.tasks:
            run_task, note = (stand_ins or {}).get(task, (task, None))
            for seed in task_seeds.get(task) or seeds or table.seeds:
                own = [f"finetune.task={run_task}", f"finetune.seed={seed}"]
                runs.append(Run(table.name, table.paper_table, run_task, variant, int(seed), preset,
                                (*task_overrides.get(run_task, ()), *overrides, *table.variants[variant], *own),
                                note))  # fmt: skip
    for run in runs:
        run.config()  # every configuration is valid before any work starts
    return runs


def _task_seeds(table: Table, task_seeds) -> dict[str, list[int]]:
    """``task_seeds={rte: [1, 2, 3], ...}``, checked: known tasks, lists of integer seeds."""
    return _per_task(table, "task_seeds", task_seeds, lambda s: isinstance(s, int),
                     "list of integer seeds, e.g. task_seeds='{rte: [1, 2, 3]}'")  # fmt: skip


def _task_overrides(table: Table, task_overrides) -> dict[str, list[str]]:
    """``task_overrides={race: [finetune.max_train_examples=500], ...}``, checked: known tasks,
    lists of ``key=value`` overrides (each is validated with the run's configuration)."""
    return _per_task(table, "task_overrides", task_overrides, lambda o: isinstance(o, str) and "=" in o,
                     "list of key=value overrides, e.g. task_overrides='{race: [finetune.max_train_examples=500]}'")  # fmt: skip


def _per_task(table: Table, key: str, value, valid_item: Callable[[object], bool], expected: str) -> dict[str, list]:
    """A sweep key mapping tasks to non-empty lists of valid items, or a ConfigError naming it."""
    from gptbench.tasks import TASKS

    if not value:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, list) and v and all(map(valid_item, v))
                                              for v in value.values()):  # fmt: skip
        raise ConfigError(f"sweep {table.name}: {key}={value!r}: expected a mapping task -> {expected}")
    unknown = sorted(set(value) - set(TASKS))
    if unknown:
        raise ConfigError(f"sweep {table.name}: {key} names {unknown}, which are not tasks")
    return value


def request_key(cfg: ExperimentConfig) -> str:
    """The identity of a requested fine-tune (settings + seed), known without reading data."""
    return settings_key({**finetune_settings(cfg), "seed": cfg.finetune_seed})


def status_path(results_dir: Path, run: Run) -> Path:
    return results_dir / "runs" / run.paper_table / run.task / run.variant / f"seed{run.seed}.json"


def log_path(cfg: ExperimentConfig, run: Run) -> Path:
    return cfg.run_dir / "sweep_logs" / f"{run.id}.log"


def is_done(results_dir: Path, run: Run) -> bool:
    path = status_path(results_dir, run)
    if not path.is_file():
        return False
    status = json.loads(path.read_text())
    return status.get("status") == "done" and status.get("request_key") == request_key(run.config())


def absent_data(cfg: ExperimentConfig) -> str | None:
    """Why a fine-tune cannot run here for lack of data (its training or reported splits), found
    without reading the data; None when everything it needs is present."""
    from gptbench.data.task_data import absent_reason
    from gptbench.tasks import get_task

    task, f = get_task(cfg.finetune.task), cfg.finetune
    root = Path(f.data_dir) if f.data_dir else None
    splits = (task.train_split, *task.eval_splits)
    if cfg.prepared:  # absent where the directory was prepared
        from gptbench.data.prepared import open_prepared

        reasons = (open_prepared(cfg.prepared).absent_reason(task.name, s, f.splits.get(s)) for s in splits)
    else:
        reasons = (absent_reason(task, split, root, f.splits) for split in splits)
    return next((why for why in reasons if why), None)


@dataclass(frozen=True)
class GpuShare:
    """The GPU a local job runs on (its ``CUDA_VISIBLE_DEVICES``) and how many jobs share it."""

    device: str
    sharing: int = 1


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as ``CUDA_VISIBLE_DEVICES`` names them (a job's own
    ``CUDA_VISIBLE_DEVICES`` must name them the same way, not by their index here)."""
    import torch

    if not torch.cuda.is_available():
        return []
    listed = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    return listed or [str(i) for i in range(torch.cuda.device_count())]


def gpu_slots(jobs: int, gpus: list[str], share: bool) -> list[GpuShare | None]:
    """The GPU of each of the ``jobs`` local job slots: slot i gets ``gpus[i mod len(gpus)]``.
    More slots than GPUs would put two runs on one GPU, which only ``share_gpus=true`` allows
    (each then gets an equal share of its memory); no GPUs: the slots run on the CPU."""
    if not gpus:
        return [None] * jobs
    if jobs > len(gpus) and not share:
        raise ConfigError(f"jobs={jobs} on {len(gpus)} GPU(s) {gpus}: some runs would share a GPU; pass "
                          f"share_gpus=true to allow it, jobs<={len(gpus)}, or gpus=[...] to choose the devices")  # fmt: skip
    return [GpuShare(gpus[i % len(gpus)], len(range(i % len(gpus), jobs, len(gpus)))) for i in range(jobs)]


def job_rank() -> int:
    """This process's rank among the processes of one job: srun starts one task per device for a
    DDP run (``tasks_per_node`` = ``trainer.devices``), each running the job's function; 0 alone."""
    return int(os.environ.get("SLURM_PROCID", "0"))


def graph_key(cfg: ExperimentConfig) -> str:
    """What the compiled graphs of a fine-tune's training step depend on: the network, the task (its
    head and inputs), which parts train and which losses, the precision. Runs of one key (seeds,
    transferred blocks, learning rates) reuse one worker's graphs."""
    from gptbench.run_identity import network_settings

    f, t = cfg.finetune, cfg.trainer
    return settings_key({**network_settings(cfg), "task": f.task, "freeze_body": f.freeze_body, "aux_lm": f.lm_coef > 0,
                         "precision": t.precision, "compile": t.compile})  # fmt: skip


# The graph key of the run this worker process ran last (None in a fresh process), and how many
# runs it has started (recorded in each status file as ``worker_run``: 1 = a fresh process).
_last_graph_key: str | None = None
_worker_runs = 0


def reuse_worker(cfg: ExperimentConfig) -> None:
    """Make a worker that ran other fine-tunes as good as a fresh process for the next one: the
    previous run's objects are collected; torch.compile's graphs are kept for a run of the same
    graph key (a new module of the same shape passes their guards: no recompilation, the same
    kernels) and dropped for another, so one worker never holds more than one key's graphs; and
    hitting dynamo's recompile limit fails the run instead of silently running it eagerly (which
    would give other numbers than a fresh process). A fresh process (the first run) is left as is."""
    global _last_graph_key, _worker_runs
    _worker_runs += 1
    key = graph_key(cfg)
    if _last_graph_key is not None:
        import gc

        import torch._dynamo

        gc.collect()
        torch._dynamo.config.fail_on_recompile_limit_hit = True
        if key != _last_graph_key:
            torch._dynamo.reset()
    _last_graph_key = key


def compiled_graphs() -> int:
    """How many graphs torch.compile (dynamo) has compiled in this process so far."""
    from torch._dynamo.utils import counters

    return counters["stats"]["unique_graphs"]


def execute_run(run: Run, results_dir: str, threads: int | None = None, gpu: GpuShare | None = None) -> dict:
    """One fine-tune in this process, its output in its log file; writes and returns its status.
    Top-level and picklable: the same function runs in a local process pool and in submitit jobs.
    ``gpu``: the GPU this process may use, set before CUDA starts (a reused worker keeps its slot,
    so its GPU). In a multi-task job (DDP under srun) every task trains; rank 0 writes the status
    and the others log beside it."""
    import torch

    from gptbench.suite.results import copy_predictions
    from gptbench.training.finetune import run_finetune
    from gptbench.tasks import SplitUnavailable

    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu.device
        if gpu.sharing > 1 and torch.cuda.is_available():
            torch.cuda.set_per_process_memory_fraction(1 / gpu.sharing)
    if threads:
        torch.set_num_threads(threads)
    cfg, rank = run.config(), job_rank()
    reuse_worker(cfg)
    base = {"table": run.table, "task": run.task, "variant": run.variant, "seed": run.seed,
            "request_key": request_key(cfg), "overrides": list(run.overrides),
            **({"note": run.note} if run.note else {})}  # fmt: skip
    log = log_path(cfg, run) if rank == 0 else log_path(cfg, run).with_suffix(f".rank{rank}.log")
    start, graphs = time.perf_counter(), compiled_graphs()
    with output_to(log):
        try:
            status = {**base, "status": "done", **run_finetune(cfg)}
        except SplitUnavailable as e:
            status = {**base, "status": "unavailable", "reason": str(e)}
        except Exception as e:  # recorded, and the sweep goes on with the other runs
            traceback.print_exc()
            status = {**base, "status": "failed", "error": f"{type(e).__name__}: {e}".split("\n")[0], "log": str(log)}
    status.setdefault("wall_seconds", time.perf_counter() - start)
    status["torch_threads"] = torch.get_num_threads()
    status["worker_run"] = _worker_runs
    if cfg.trainer.compile:  # 0 where a reused worker's graphs served the whole run
        status["graphs_compiled"] = compiled_graphs() - graphs
    if gpu is not None:
        status["cuda_visible_devices"] = gpu.device
    if rank == 0:
        if status["status"] == "done":
            copy_predictions(cfg, status, status_path(Path(results_dir), run))
        atomic_write_json(status_path(Path(results_dir), run), status)
    return status


def pretrain_job(cfg: ExperimentConfig, results_dir: str) -> str:
    """A pre-training as a job of its own (the fine-tunes' job array waits for it), on the
    resources its trainer settings ask for; returns the export directory."""
    from gptbench.suite.results import write_pretrain_results
    from gptbench.training.pretrain import run_pretrain

    export = run_pretrain(cfg)
    if job_rank() == 0:
        write_pretrain_results(cfg, Path(results_dir))
    return str(export)


@contextlib.contextmanager
def output_to(log: Path):
    """Send this process's stdout and stderr (file descriptors included: progress bars, C++
    warnings) to ``log`` for the duration; the sweep's own output stays readable."""
    log.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush(), sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log, "a", encoding="utf-8") as out:
        os.dup2(out.fileno(), 1), os.dup2(out.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush(), sys.stderr.flush()
            os.dup2(saved[0], 1), os.dup2(saved[1], 2)
            os.close(saved[0]), os.close(saved[1])


class Progress:
    """Runs done / total, failures so far, the current runs, and an ETA from the runs done."""

    def __init__(self, total: int, done: int, jobs: int):
        self.total, self.done, self.jobs, self.failed = total, done, jobs, 0
        self.durations: list[float] = []

    def finished(self, run: Run, status: dict, seconds: float) -> None:
        self.done += 1
        self.durations.append(seconds)
        self.failed += status["status"] == "failed"
        outcome = {"done": _headline(status), "failed": status.get("error", ""),
                   "unavailable": f"data absent: {status.get('reason', '')}"}[status["status"]]  # fmt: skip
        left = self.total - self.done
        eta = sum(self.durations) / len(self.durations) * left / self.jobs
        print(f"[{self.done}/{self.total} runs, {self.failed} failed] {run.id}: {status['status']} in {seconds:.0f} s"
              f" ({outcome[:160]}){f'; ETA {_minutes(eta)}' if left else ''}", flush=True)  # fmt: skip


def _headline(status: dict) -> str:
    """The task's main metric on each reported split, e.g. 'dev accuracy 58.8, test accuracy 57.1'."""
    name = status.get("selection", {}).get("metric")
    return ", ".join(f"{split} {name} {100 * status['metrics'][split][name]:.1f}"
                     for split in status.get("reported_splits", []) if name in status["metrics"].get(split, {}))  # fmt: skip


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def _pretrainings(runs: list[Run]) -> list[ExperimentConfig]:
    """One config per distinct pre-training the runs fine-tune from."""
    from gptbench.run_identity import pretrain_dir

    distinct = {}
    for run in runs:
        cfg = run.config()
        if cfg.finetune.init == "pretrained":
            distinct.setdefault(pretrain_dir(cfg), cfg)
    return list(distinct.values())


def train_examples(cfg: ExperimentConfig) -> int:
    """The size of a fine-tune's full training split (with ``prepared=``: as recorded there)."""
    from gptbench.data.task_data import read_split
    from gptbench.tasks import get_task

    spec, f = get_task(cfg.finetune.task), cfg.finetune
    source = f.splits.get(spec.train_split)
    if cfg.prepared:
        from gptbench.data.prepared import open_prepared

        return open_prepared(cfg.prepared).split_size(spec.name, spec.train_split, source)
    root = Path(f.data_dir) if f.data_dir else None
    return len(read_split(spec, spec.train_split, root, source)[0])


def stand_ins(table: Table, preset: str, overrides: list[str]) -> dict[str, tuple[str, str]]:
    """For each task of the table whose data is absent here and that has fallbacks: the fallback
    with the largest training split present, and a note saying so."""
    chosen = {}
    for task, candidates in table.fallbacks.items():
        why = absent_data(load_config(preset, [*overrides, f"finetune.task={task}"]))
        if why is None:
            continue
        sizes = {}
        for candidate in candidates:
            cfg = load_config(preset, [*overrides, f"finetune.task={candidate}"])
            if absent_data(cfg) is None:
                sizes[candidate] = train_examples(cfg)
        if sizes:
            best = max(sizes, key=lambda t: (sizes[t], -candidates.index(t)))
            chosen[task] = (best, f"{best} stands in for {task}, whose data is absent here ({why}): the largest "
                                  f"training set present among {list(candidates)} ({sizes[best]:,} examples)")  # fmt: skip
    return chosen


def run_sweep(table_name: str, preset: str, overrides: list[str]) -> Path:
    """Expand and execute a sweep (a table, or a zero-shot curve); returns its results directory."""
    sweep, experiment = split_overrides(overrides)
    if table_name in experiment_files("zero_shot_curve") or _kind(table_name) == "zero_shot_curve":
        unknown = sorted(set(sweep) - {"tasks", "results_dir", "max_examples", "task_seeds", "task_overrides"})
        if unknown:
            raise ConfigError(f"sweep {table_name}: {unknown} do not apply to a zero-shot curve (it takes tasks=, "
                              "max_examples=, results_dir=)")  # fmt: skip
        return run_zero_shot_curve(table_name, preset, experiment, sweep.get("results_dir"), sweep.get("tasks"),
                                   sweep.get("max_examples"))  # fmt: skip
    if "max_examples" in sweep:
        raise ConfigError(f"sweep {table_name}: max_examples= applies to zero-shot curves only")
    table = load_table(table_name)
    runs = expand(table, preset, experiment, sweep.get("seeds"), sweep.get("tasks"), sweep.get("variants"),
                  stand_ins(table, preset, experiment), sweep.get("task_seeds"), sweep.get("task_overrides"))  # fmt: skip
    jobs, executor, worker_runs = int(sweep.get("jobs", 1)), sweep.get("executor", "local"), int(sweep.get("worker_runs", 1))
    if jobs < 1 or executor not in EXECUTORS or worker_runs < 1:
        raise ConfigError(f"jobs={jobs}, executor={executor!r}, worker_runs={worker_runs}: expected jobs >= 1, "
                          f"executor in {EXECUTORS} and worker_runs >= 1")  # fmt: skip
    first = runs[0].config()
    results_dir = Path(sweep.get("results_dir") or Path("results") / first.name)
    pretrainings = _pretrainings(runs)
    refuse_ddp_outside_slurm(table.name, executor, [*pretrainings, *(r.config() for r in runs)])
    gpus = [str(g) for g in sweep["gpus"]] if "gpus" in sweep else visible_gpus()
    slots = gpu_slots(jobs, gpus, bool(sweep.get("share_gpus", False))) if executor == "local" else []

    if executor == "local":
        for cfg in pretrainings:
            pretrain_job(cfg, str(results_dir))  # done once; a finished pre-training is reused
    todo = [r for r in runs if not is_done(results_dir, r)]
    absent = {r: why for r in todo if (why := absent_data(r.config()))}
    for run, why in absent.items():  # recorded without starting a process
        status = {"table": run.table, "task": run.task, "variant": run.variant, "seed": run.seed,
                  "status": "unavailable", "reason": why}  # fmt: skip
        atomic_write_json(status_path(results_dir, run), status)
    todo = [r for r in todo if r not in absent]
    print(f"sweep {table.name} on {preset}: {len(runs)} runs, {len(runs) - len(todo) - len(absent)} already done, "
          f"{len(absent)} without their data here, {len(todo)} to run ({executor}, {jobs} at a time); "
          f"results in {results_dir}", flush=True)  # fmt: skip
    for run, why in absent.items():
        print(f"  {run.id}: unavailable ({why})", flush=True)
    progress = Progress(len(runs), len(runs) - len(todo), jobs)
    if executor == "local":
        _run_local_measured(table.name, todo, results_dir, slots, progress, worker_runs)
    else:
        _run_submitit(todo, pretrainings, results_dir, jobs, executor, sweep, first.run_dir / "submitit", progress)
    if table.paper_table == LAYERS_TABLE:
        write_figure2(results_dir)
    return results_dir


def _kind(name: str) -> str | None:
    path = Path(name)
    return OmegaConf.load(path).get("kind") if path.is_file() and path.suffix in (".yaml", ".yml") else None


def fresh_process_context():
    """Processes that start clean but fast: forked from a server that has imported the training
    stack once (Lightning's import alone takes seconds; each run would pay it), where the platform
    has forkserver; spawned elsewhere. Either way a run shares no state with the sweep or the
    runs before it."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["gptbench.suite.sweep", "gptbench.training.finetune"])
    return context


@contextlib.contextmanager
def _stopping_workers_on_sigterm(pools: list[ProcessPoolExecutor]):
    """SIGTERM to the sweep (``kill <pid>``, a scheduler's preemption) reaches its runs: each worker
    is sent SIGTERM too, saves ``on_exception.ckpt`` and exits, then the sweep exits with 143 and a
    rerun resumes them. Without this the workers, children of the forkserver rather than of the
    sweep, would train on orphaned. (Ctrl-C already reaches the whole process group.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        for pool in pools:
            for process in list((pool._processes or {}).values()):  # the executor keeps no public list
                process.terminate()
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run_local_measured(name: str, runs: list[Run], results_dir: Path, slots: list[GpuShare | None],
                        progress: Progress, worker_runs: int) -> None:  # fmt: skip
    """:func:`_run_local`, sampling how busy the slots' GPUs are meanwhile (where there are GPUs and
    runs to run): printed, and recorded in provenance.json's ``gpu_busy`` under the sweep's name."""
    from gptbench.suite.results import record_gpu_busy

    devices = sorted({slot.device for slot in slots if slot is not None})
    if not devices or not runs:
        _run_local(runs, results_dir, slots, progress, worker_runs)
        return
    with BusySampler(nvidia_smi_reader(devices), SAMPLE_INTERVAL_S) as sampler:
        _run_local(runs, results_dir, slots, progress, worker_runs)
    busy = sampler.summary()
    print(busy_line(name, busy), flush=True)
    if busy is not None:
        record_gpu_busy(results_dir, name, {**busy, "jobs": len(slots), "worker_runs": worker_runs, "runs": len(runs)})


def next_run(pending: list[Run], keys: dict[Run, str], last: str | None, busy: set[str]) -> Run:
    """The run a free slot takes: one of the graph key its worker ran last (its compiled graphs are
    reused), else one of a key no other slot is running (so the keys spread over the workers),
    else the next in order."""
    same = next((r for r in pending if keys[r] == last), None)
    return same or next((r for r in pending if keys[r] not in busy), pending[0])


def _run_local(runs: list[Run], results_dir: Path, slots: list[GpuShare | None], progress: Progress,
               worker_runs: int = 1) -> None:  # fmt: skip
    """Each run in a worker process (a crash stays in its run), one per slot at a time, on the
    slot's GPU where there are GPUs; the CPU threads are divided between the slots. Each slot has
    its own worker, replaced by a fresh one after ``worker_runs`` runs (1: a fresh process per
    run), so a reused worker stays on its slot's GPU."""
    jobs = len(slots)
    threads = max(1, (os.cpu_count() or 1) // jobs)
    context = fresh_process_context()
    keys = {run: graph_key(run.config()) for run in runs}
    pending = list(runs)

    def worker() -> ProcessPoolExecutor:
        return ProcessPoolExecutor(1, mp_context=context, max_tasks_per_child=worker_runs)

    pools = [worker() for _ in slots]
    try:
        with _stopping_workers_on_sigterm(pools):
            _dispatch(pending, keys, pools, worker, slots, results_dir, threads, progress)
    finally:
        for pool in pools:
            pool.shutdown()


def _dispatch(pending: list[Run], keys: dict[Run, str], pools: list[ProcessPoolExecutor],
              worker: Callable[[], ProcessPoolExecutor], slots: list[GpuShare | None], results_dir: Path,
              threads: int, progress: Progress) -> None:  # fmt: skip
    """Submit the pending runs to the slots' workers as slots free up, and record each outcome; a
    slot whose worker died gets a fresh one."""
    started, free, last = {}, list(range(len(slots))), [None] * len(slots)
    while pending or started:
        while pending and free:
            slot = free.pop(0)
            run = next_run(pending, keys, last[slot], {keys[r] for r, _, _ in started.values()})
            pending.remove(run)
            last[slot] = keys[run]
            where = f" on GPU {slots[slot].device}" if slots[slot] else ""
            print(f"  running {run.id}{where}", flush=True)
            future = pools[slot].submit(execute_run, run, str(results_dir), threads, slots[slot])
            started[future] = (run, time.perf_counter(), slot)
        finished, _ = wait(started, return_when=FIRST_COMPLETED)
        for future in finished:
            run, t0, slot = started.pop(future)
            free.append(slot)
            try:
                status = future.result()
            except Exception as e:  # the worker process died (killed, out of memory)
                status = _failed(run, f"worker process died: {type(e).__name__}: {e}")
                atomic_write_json(status_path(results_dir, run), status)
                pools[slot].shutdown(wait=False)
                pools[slot], last[slot] = worker(), None
            progress.finished(run, status, time.perf_counter() - t0)

def _failed(run: Run, error: str) -> dict:
    return {"table": run.table, "task": run.task, "variant": run.variant, "seed": run.seed, "status": "failed",
            "error": error}  # fmt: skip


def refuse_ddp_outside_slurm(table: str, executor: str, configs: list[ExperimentConfig]) -> None:
    """A run on several devices (DDP) needs one process per device. SLURM starts them (srun, one
    task per device); anywhere else Lightning starts them by running this process's command line
    again, which would run the whole sweep again in each of them: refused, saying what to do."""
    wide = next((c for c in configs if c.trainer.devices * c.trainer.num_nodes > 1), None)
    if wide is None or executor == "slurm":
        return
    t = wide.trainer
    raise ConfigError(
        f"sweep {table}: trainer.devices={t.devices} trainer.num_nodes={t.num_nodes} (DDP) cannot run inside "
        f"`gptbench sweep` with executor={executor}: Lightning starts the other processes by running the command "
        "line again, which would run the whole sweep again in each of them. Use executor=slurm (each job asks for "
        "trainer.devices GPUs and one task per device), or run the stages one by one, e.g. `gptbench pretrain "
        f"PRESET trainer.devices={t.devices} trainer.strategy=ddp`, then `gptbench finetune ...` with the same "
        "overrides; or run the sweep on one device per run (trainer.devices=1) with jobs=N")  # fmt: skip


def pretrain_finished(cfg: ExperimentConfig) -> bool:
    from gptbench.run_identity import pretrain_dir

    stage = pretrain_dir(cfg)
    return (stage / "model" / "config.json").is_file() and (stage / "metrics.json").is_file()


def slurm_request(cfg: ExperimentConfig, sweep: dict) -> dict:
    """What one job of ``cfg`` asks SLURM for: a node per ``trainer.num_nodes``, one task per
    device (Lightning reads srun's tasks as its DDP processes), a GPU per device unless
    ``trainer.accelerator=cpu``, ``cpus_per_task`` as the sweep says (not the submitting host's
    count), then the sweep's ``slurm={...}`` parameters (partition, account, mem_gb, timeout_min,
    any ``slurm_<sbatch option>``)."""
    t = cfg.trainer
    request = {"timeout_min": 24 * 60, "nodes": t.num_nodes, "tasks_per_node": t.devices}
    if t.accelerator != "cpu":
        request["gpus_per_node"] = t.devices
    if sweep.get("cpus_per_task") is not None:
        request["cpus_per_task"] = int(sweep["cpus_per_task"])
    extra = sweep.get("slurm") or {}
    if not isinstance(extra, dict):
        raise ConfigError(f"slurm={extra!r}: expected a mapping of submitit parameters, e.g. slurm='{{partition: gpu}}'")
    return {**request, **extra}


def _executor(kind: str, folder: Path, cfg: ExperimentConfig, sweep: dict, jobs: int):
    """A submitit executor for jobs of ``cfg``'s shape: SLURM (see :func:`slurm_request`), or
    this machine (``submitit_local``, one process per job)."""
    import submitit

    if kind == "submitit_local":
        executor = submitit.LocalExecutor(folder=folder)
        executor.update_parameters(timeout_min=24 * 60)
        return executor
    executor = submitit.AutoExecutor(folder=folder)
    try:
        executor.update_parameters(**slurm_request(cfg, sweep), slurm_array_parallelism=jobs)
    except (NameError, AssertionError, TypeError) as e:  # submitit's errors for unknown or mistyped parameters
        raise ConfigError(f"slurm={sweep.get('slurm')}: {str(e).splitlines()[0]}") from None
    return executor


def _run_submitit(runs: list[Run], pretrainings: list[ExperimentConfig], results_dir: Path, jobs: int,
                  executor_name: str, sweep: dict, folder: Path, progress: Progress) -> None:  # fmt: skip
    """Each unfinished pre-training as a job of its own, then one job array per pre-training for
    the fine-tunes that start from it. On SLURM an array is submitted at once and waits for its
    pre-training (``--dependency=afterok``); on this machine it is submitted when the pre-training
    is done. Each job writes its own status file on the shared folder."""
    from gptbench.run_identity import pretrain_dir

    results = str(results_dir.resolve())
    pre_jobs = {}
    for cfg in pretrainings:
        if not pretrain_finished(cfg):
            pre_jobs[pretrain_dir(cfg)] = _executor(executor_name, folder, cfg, sweep, jobs).submit(pretrain_job, cfg, results)
            print(f"  submitted the pre-training {pretrain_dir(cfg).name} as job {pre_jobs[pretrain_dir(cfg)].job_id}",
                  flush=True)  # fmt: skip
        else:
            pretrain_job(cfg, results)  # finished: only its results are written (no training)
    groups: dict[Path | None, list[Run]] = {}
    for run in runs:
        cfg = run.config()
        groups.setdefault(pretrain_dir(cfg) if cfg.finetune.init == "pretrained" else None, []).append(run)
    t0 = time.perf_counter()
    arrays = []
    for key, group in groups.items():
        executor = _executor(executor_name, folder, group[0].config(), sweep, jobs)
        before = pre_jobs.get(key)
        if before is not None and executor_name == "slurm":
            executor.update_parameters(slurm_dependency=f"afterok:{before.job_id}")
        elif before is not None and _pretraining_failed(before, group, results_dir, progress, t0):
            continue
        job_list = executor.map_array(execute_run, group, [results] * len(group), [None] * len(group))
        print(f"  submitted {len(job_list)} fine-tunes as jobs {job_list[0].job_id.split('_')[0]}"
              + (f", after job {before.job_id}" if before is not None and executor_name == "slurm" else "")
              + f" ({folder})", flush=True)  # fmt: skip
        arrays.append((before, group, job_list))
    for before, group, job_list in arrays:
        if before is not None and executor_name == "slurm" and _pretraining_failed(before, group, results_dir, progress, t0):
            for job in job_list:
                job.cancel(check=False)  # they would wait for it forever
            continue
        for run, job in zip(group, job_list):
            try:
                status = job.results()[0]  # (one result per task; rank 0's has the status)
            except Exception as e:
                status = _failed(run, f"job {job.job_id} failed: {str(e).splitlines()[0]}")
                atomic_write_json(status_path(results_dir, run), status)
            progress.finished(run, status, time.perf_counter() - t0)


def _pretraining_failed(job, runs: list[Run], results_dir: Path, progress: Progress, t0: float) -> bool:
    """Wait for a pre-training job; if it failed, record its runs as failed and say so."""
    try:
        job.results()
        return False
    except Exception as e:
        error = f"pre-training job {job.job_id} failed: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
    for run in runs:
        status = _failed(run, error)
        atomic_write_json(status_path(results_dir, run), status)
        progress.finished(run, status, time.perf_counter() - t0)
    return True
