"""Figure 2 of the paper: its two sweeps, and ``figure2.json`` assembled from their result files.

- Left (``experiments/figure2_layers.yaml``, a table sweep with one variant per number of
  transferred blocks, ``transfer0`` ... ``transfer<n_layer>``): each run's reported dev score and
  its score on the examples it trained on (``finetune.score_train``), from the status files in
  ``runs/figure2_layers/<task>/transfer<k>/seed<N>.json``.
- Right (``experiments/figure2_zeroshot.yaml``, ``kind: zero_shot_curve``): the four zero-shot
  heuristics on every snapshot a pre-training kept (``pretrain.keep_steps``), for each
  architecture; one result file per snapshot, ``zeroshot/<architecture>/step<N>.json``, written
  atomically and skipped when it exists with the same settings, so the sweep resumes. With
  ``prepared=`` the scored examples come encoded from the prepared directory.

``write_figure2(results_dir)`` turns both into ``figure2.json`` (the report's input, see
:func:`gptbench.suite.report.load_figure2`): medians over seeds, fractions, and notes (which task
stood in for MNLI, which runs failed).
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from gptbench.config import EXPERIMENTS_DIR, ConfigError, ExperimentConfig, TrainerConfig, experiment_files, load_config
from gptbench.io import atomic_write_json
from gptbench.models import NEXT_TOKEN_ARCHITECTURES
from gptbench.run_identity import pretrain_dir, pretrain_settings, settings_key

LAYERS_TABLE = "figure2_layers"


# ---- the zero-shot curve (Figure 2, right) ---------------------------------------------------
@dataclass(frozen=True)
class ZeroShotCurve:
    """A ``kind: zero_shot_curve`` file of experiments/."""

    name: str
    architectures: tuple[str, ...]
    tasks: tuple[str, ...]
    max_examples: int | None  # per split: a fixed random subset (seed 0); null = the whole split


def load_zero_shot_curve(name: str) -> ZeroShotCurve:
    from gptbench.evaluation.zeroshot import ZERO_SHOT_TASKS

    path = Path(name) if Path(name).is_file() else EXPERIMENTS_DIR / f"{name}.yaml"
    node = OmegaConf.to_container(OmegaConf.load(path)) if path.is_file() else None
    if not isinstance(node, dict) or node.get("kind") != "zero_shot_curve":
        raise ConfigError(f"{name}: not a zero-shot curve file (zero-shot curves: {experiment_files('zero_shot_curve')})")
    archs, tasks = tuple(node.get("architectures") or ()), tuple(node.get("tasks") or ())
    max_examples = node.get("max_examples")
    if not archs or set(archs) - set(NEXT_TOKEN_ARCHITECTURES):
        raise ConfigError(f"{path}: architectures={list(archs)}: expected a non-empty list of "
                          f"{list(NEXT_TOKEN_ARCHITECTURES)} (the heuristics read next-token probabilities, which "
                          "the BERT encoder does not define)")  # fmt: skip
    if not tasks or set(tasks) - set(ZERO_SHOT_TASKS):
        raise ConfigError(f"{path}: tasks={list(tasks)}: expected a non-empty list of {list(ZERO_SHOT_TASKS)}")
    if max_examples is not None and (not isinstance(max_examples, int) or max_examples <= 0):
        raise ConfigError(f"{path}: max_examples={max_examples!r}: expected a positive integer or null")
    return ZeroShotCurve(path.stem, archs, tasks, max_examples)


@dataclass(frozen=True)
class CurveRun:
    """A zero-shot curve as a sweep runs it: the tasks, the subset size, each architecture's config."""

    curve: ZeroShotCurve
    tasks: tuple[str, ...]
    max_examples: int | None
    configs: dict[str, ExperimentConfig]


def curve_run(name: str, preset: str, overrides: list[str], tasks=None, max_examples: int | None = None) -> CurveRun:
    """The curve ``name`` on ``preset``; ``tasks`` and ``max_examples`` default to the curve file's."""
    curve = load_zero_shot_curve(name)
    configs = {arch: load_config(preset, [*overrides, f"architecture={arch}"]) for arch in curve.architectures}
    return CurveRun(curve, tuple(tasks or curve.tasks), max_examples or curve.max_examples, configs)


def evaluation_device(trainer: TrainerConfig) -> str:
    """The device the run's accelerator setting names (``auto``: a GPU when there is one)."""
    import torch

    accelerator = trainer.accelerator
    if accelerator == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return {"gpu": "cuda"}.get(accelerator, accelerator)


def run_zero_shot_curve(name: str, preset: str, overrides: list[str], results_dir: Path | None = None,
                        tasks=None, max_examples: int | None = None) -> Path:  # fmt: skip
    """Pre-train each architecture (reused when done), then score every kept snapshot."""
    from gptbench.data.prepared import open_prepared
    from gptbench.evaluation.loading import load_model_and_tokenizer
    from gptbench.evaluation.zeroshot import evaluate_zero_shot
    from gptbench.suite.results import write_pretrain_results
    from gptbench.tasks import SplitUnavailable
    from gptbench.training.pretrain import run_pretrain

    run = curve_run(name, preset, overrides, tasks, max_examples)
    curve, tasks, max_examples, configs = run.curve, run.tasks, run.max_examples, run.configs
    for arch, cfg in configs.items():
        if not cfg.pretrain.keep_steps:
            raise ConfigError(f"{curve.name} needs pre-training snapshots: set pretrain.keep_steps on preset {preset!r} "
                              "(e.g. log-spaced steps)")  # fmt: skip
    results_dir = Path(results_dir or Path("results") / next(iter(configs.values())).name)
    keys = {arch: settings_key({"pretrain": pretrain_settings(cfg), "tasks": list(tasks), "max_examples": max_examples})
            for arch, cfg in configs.items()}  # fmt: skip

    def done(arch: str, step: int) -> bool:
        out = results_dir / "zeroshot" / arch / f"step{step}.json"
        return out.is_file() and json.loads(out.read_text(encoding="utf-8")).get("request_key") == keys[arch]

    steps = [(arch, step) for arch, cfg in configs.items() for step in sorted(set(cfg.pretrain.keep_steps))]
    todo = [(arch, step) for arch, step in steps if not done(arch, step)]
    print(f"zero-shot curve {curve.name} on {preset}: {len(steps)} snapshots ({len(steps) - len(todo)} already "
          f"scored) x tasks {list(tasks)}; results in {results_dir}", flush=True)  # fmt: skip
    for arch in dict.fromkeys(arch for arch, _ in todo):
        run_pretrain(configs[arch])  # done once per architecture; a finished pre-training is reused
        write_pretrain_results(configs[arch], results_dir)
    for i, (arch, step) in enumerate(todo, 1):
        cfg, out, key = configs[arch], results_dir / "zeroshot" / arch / f"step{step}.json", keys[arch]
        snapshot = pretrain_dir(cfg) / "snapshots" / f"step{step}"
        start = time.perf_counter()
        model, tokenizer = load_model_and_tokenizer(snapshot, device=evaluation_device(cfg.trainer))
        prepared = open_prepared(cfg.prepared) if cfg.prepared else None
        scores, unavailable = {}, {}
        for task in tasks:
            try:
                scores |= evaluate_zero_shot(model, tokenizer, [task], cfg.finetune.data_dir, max_examples, prepared)
            except SplitUnavailable as e:
                unavailable[task] = str(e)
        atomic_write_json(out, {"architecture": arch, "step": step, "snapshot": str(snapshot), "request_key": key,
                                "max_examples": max_examples, "results": scores, "unavailable": unavailable,
                                "wall_seconds": time.perf_counter() - start})  # fmt: skip
        summary = ", ".join(f"{t} {r['score']:.3f}" for t, r in scores.items())
        print(f"[{i}/{len(todo)}] {arch} step {step}: {summary} ({time.perf_counter() - start:.0f} s)", flush=True)
    write_figure2(results_dir)
    return results_dir


# ---- figure2.json ----------------------------------------------------------------------------
def layer_points(results_dir: Path) -> tuple[list[dict], list[str]]:
    """Figure 2 left: one point per (task, blocks transferred), medians over the seeds done, and
    notes on the runs that gave no point or that stand in for another task."""
    scored: dict[tuple[str, str, int], list[tuple[float, float | None]]] = {}
    notes: list[str] = []
    for path in sorted((results_dir / "runs" / LAYERS_TABLE).glob("*/transfer*/seed*.json")):
        status = json.loads(path.read_text(encoding="utf-8"))
        if status.get("note"):
            notes.append(status["note"])
        if status.get("status") != "done":
            notes.append(f"{path.relative_to(results_dir)}: {status.get('status')} "
                         f"({status.get('error') or status.get('reason') or 'no reason recorded'})")  # fmt: skip
            continue
        metric = status["selection"]["metric"]
        split = status["reported_splits"][0]
        n_layers = int(path.parent.name.removeprefix("transfer"))
        train = (status["metrics"].get("train") or {}).get(metric)
        scored.setdefault((status["task"], split, n_layers), []).append((status["metrics"][split][metric], train))
    points = []
    for (task, split, n_layers), values in sorted(scored.items()):
        trains = [t for _, t in values if t is not None]
        points.append({"task": task, "split": split, "n_layers": n_layers, "seeds": len(values),
                       "score": statistics.median(v for v, _ in values),
                       "train_score": statistics.median(trains) if trains else None})  # fmt: skip
    return points, list(dict.fromkeys(notes))


def zero_shot_points(results_dir: Path) -> tuple[list[dict], list[str]]:
    """Figure 2 right: one point per (architecture, task, snapshot step)."""
    points, notes = [], []
    for path in sorted((results_dir / "zeroshot").glob("*/step*.json")):
        record = json.loads(path.read_text(encoding="utf-8"))
        for task, result in sorted(record["results"].items()):
            points.append({"model": record["architecture"], "task": task, "step": record["step"],
                           "score": result["score"], "metric": result["metric"], "split": result["split"],
                           "n": result["n"]})  # fmt: skip
        notes += [f"zero-shot {task}: data absent ({why})" for task, why in sorted(record.get("unavailable", {}).items())]
    return points, list(dict.fromkeys(notes))


def write_figure2(results_dir: Path) -> Path:
    """``figure2.json`` from the result files of both panels (either may be absent)."""
    layers, layer_notes = layer_points(results_dir)
    zero_shot, zero_notes = zero_shot_points(results_dir)
    path = results_dir / "figure2.json"
    atomic_write_json(path, {"layers": layers, "zero_shot": zero_shot, "notes": layer_notes + zero_notes})
    return path
