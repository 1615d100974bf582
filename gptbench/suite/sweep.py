"""Sweeps: a paper table x a preset -> runs (task x variant x seed), executed idempotently.

``gptbench sweep table4_glue smoke seeds=[1,2,3]`` expands ``experiments/table4_glue.yaml`` on
the ``smoke`` preset, pre-trains once (shared by every fine-tune that uses it), then runs each
fine-tune in a fresh process (forked from a server that imported the training stack once): one after another, ``jobs=N`` at a time (threads divided so N jobs
never oversubscribe the cores), or as one submitit job array (``executor=slurm``;
``executor=submitit_local`` runs the same code on this machine).

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

SWEEP_KEYS = ("seeds", "task_seeds", "task_overrides", "tasks", "variants", "jobs", "executor", "results_dir", "max_examples")
EXECUTORS = ("local", "slurm", "submitit_local")


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


def execute_run(run: Run, results_dir: str, threads: int | None = None) -> dict:
    """One fine-tune in this process, its output in its log file; writes and returns its status.
    Top-level and picklable: the same function runs in a local process pool and in submitit jobs."""
    import torch

    from gptbench.suite.results import copy_predictions
    from gptbench.training.finetune import run_finetune
    from gptbench.tasks import SplitUnavailable

    if threads:
        torch.set_num_threads(threads)
    cfg = run.config()
    base = {"table": run.table, "task": run.task, "variant": run.variant, "seed": run.seed,
            "request_key": request_key(cfg), "overrides": list(run.overrides),
            **({"note": run.note} if run.note else {})}  # fmt: skip
    log = log_path(cfg, run)
    start = time.perf_counter()
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
    if status["status"] == "done":
        copy_predictions(cfg, status, status_path(Path(results_dir), run))
    atomic_write_json(status_path(Path(results_dir), run), status)
    return status


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


def stand_ins(table: Table, preset: str, overrides: list[str]) -> dict[str, tuple[str, str]]:
    """For each task of the table whose data is absent here and that has fallbacks: the fallback
    with the largest training split present, and a note saying so."""
    from gptbench.data.task_data import read_split
    from gptbench.tasks import get_task

    chosen = {}
    for task, candidates in table.fallbacks.items():
        why = absent_data(load_config(preset, [*overrides, f"finetune.task={task}"]))
        if why is None:
            continue
        sizes = {}
        for candidate in candidates:
            cfg = load_config(preset, [*overrides, f"finetune.task={candidate}"])
            if absent_data(cfg) is None:
                spec, f = get_task(candidate), cfg.finetune
                root = Path(f.data_dir) if f.data_dir else None
                sizes[candidate] = len(read_split(spec, spec.train_split, root, f.splits.get(spec.train_split))[0])
        if sizes:
            best = max(sizes, key=lambda t: (sizes[t], -candidates.index(t)))
            chosen[task] = (best, f"{best} stands in for {task}, whose data is absent here ({why}): the largest "
                                  f"training set present among {list(candidates)} ({sizes[best]:,} examples)")  # fmt: skip
    return chosen


def run_sweep(table_name: str, preset: str, overrides: list[str]) -> Path:
    """Expand and execute a sweep (a table, or a zero-shot curve); returns its results directory."""
    from gptbench.training.pretrain import run_pretrain
    from gptbench.suite.results import write_pretrain_results

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
    jobs, executor = int(sweep.get("jobs", 1)), sweep.get("executor", "local")
    if jobs < 1 or executor not in EXECUTORS:
        raise ConfigError(f"jobs={jobs}, executor={executor!r}: expected jobs >= 1 and executor in {EXECUTORS}")
    first = runs[0].config()
    results_dir = Path(sweep.get("results_dir") or Path("results") / first.name)

    for cfg in _pretrainings(runs):
        run_pretrain(cfg)  # done once; a finished pre-training is reused
        write_pretrain_results(cfg, results_dir)
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
        _run_local(todo, results_dir, jobs, progress)
    else:
        _run_submitit(todo, results_dir, jobs, executor, first, progress)
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
def _stopping_workers_on_sigterm(pool: ProcessPoolExecutor):
    """SIGTERM to the sweep (``kill <pid>``, a scheduler's preemption) reaches its runs: each worker
    is sent SIGTERM too, saves ``on_exception.ckpt`` and exits, then the sweep exits with 143 and a
    rerun resumes them. Without this the workers, children of the forkserver rather than of the
    sweep, would train on orphaned. (Ctrl-C already reaches the whole process group.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        for process in list((pool._processes or {}).values()):  # the executor keeps no public list
            process.terminate()
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run_local(runs: list[Run], results_dir: Path, jobs: int, progress: Progress) -> None:
    """Each run in a fresh process (a crash stays in its run), ``jobs`` at a time."""
    threads = max(1, (os.cpu_count() or 1) // jobs)
    context = fresh_process_context()
    pending, started = list(runs), {}
    with ProcessPoolExecutor(jobs, mp_context=context, max_tasks_per_child=1) as pool, _stopping_workers_on_sigterm(pool):
        while pending or started:
            while pending and len(started) < jobs:
                run = pending.pop(0)
                print(f"  running {run.id}", flush=True)
                started[pool.submit(execute_run, run, str(results_dir), threads)] = (run, time.perf_counter())
            finished, _ = wait(started, return_when=FIRST_COMPLETED)
            for future in finished:
                run, t0 = started.pop(future)
                try:
                    status = future.result()
                except Exception as e:  # the worker process died (killed, out of memory)
                    status = {"table": run.table, "task": run.task, "variant": run.variant, "seed": run.seed,
                              "status": "failed", "error": f"worker process died: {type(e).__name__}: {e}"}  # fmt: skip
                    atomic_write_json(status_path(results_dir, run), status)
                progress.finished(run, status, time.perf_counter() - t0)


def _run_submitit(runs: list[Run], results_dir: Path, jobs: int, executor_name: str, cfg: ExperimentConfig,
                  progress: Progress) -> None:  # fmt: skip
    """One job array for the sweep; each job writes its own status file on the shared folder."""
    import submitit

    folder = cfg.run_dir / "submitit"
    if executor_name == "slurm":
        executor = submitit.AutoExecutor(folder=folder)
        executor.update_parameters(slurm_array_parallelism=jobs, timeout_min=24 * 60, cpus_per_task=os.cpu_count())
    else:
        executor = submitit.LocalExecutor(folder=folder)
        executor.update_parameters(timeout_min=24 * 60)
    if not runs:
        return
    t0 = time.perf_counter()
    job_list = executor.map_array(execute_run, runs, [str(results_dir.resolve())] * len(runs), [None] * len(runs))
    print(f"  submitted {len(job_list)} jobs ({job_list[0].job_id.split('_')[0]}) to {folder}", flush=True)
    for run, job in zip(runs, job_list):
        try:
            status = job.result()
        except Exception as e:
            status = {"table": run.table, "task": run.task, "variant": run.variant, "seed": run.seed,
                      "status": "failed", "error": f"job {job.job_id} failed: {str(e).splitlines()[0]}"}  # fmt: skip
            atomic_write_json(status_path(results_dir, run), status)
        progress.finished(run, status, time.perf_counter() - t0)
