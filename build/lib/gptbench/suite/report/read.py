"""Reading a results directory: run files, provenance, pre-training curves, Figure 2's points.

Stage 1 of the report (read -> tables and claims -> md/html/json/csv -> figures). Every reader
raises ValueError naming the file for malformed input.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path

STATUSES = ("done", "failed", "unavailable")


def predictions_path(run_file: Path) -> Path:
    """Where a run's per-example predictions are kept: ``runs/<table>/<task>/<variant>/seed<N>.json``
    -> ``predictions/<table>/<task>/<variant>/seed<N>.json`` in the same results directory."""
    return run_file.parents[4] / "predictions" / Path(*run_file.parts[-4:])


@dataclass(frozen=True)
class Run:
    path: Path
    seed: int
    data: dict
    predictions: dict | None = None  # {split: {"prediction": [...], "gold": [...], ...}}, if recorded


def read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a readable JSON file ({e})") from None


def read_run(path: Path) -> Run:
    """One run file; raises ValueError naming it if it is not JSON or has no valid "status"."""
    m = re.fullmatch(r"seed(\d+)\.json", path.name)
    if not m:
        raise ValueError(f"{path}: a run file must be named seed<N>.json")
    data = read_json(path)
    if not isinstance(data, dict) or data.get("status") not in STATUSES:
        raise ValueError(f'{path}: expected a JSON object whose "status" is one of {list(STATUSES)}')
    return Run(path, int(m[1]), data, read_predictions(predictions_path(path)))


def read_predictions(path: Path) -> dict | None:
    """A predictions file's splits (see gptbench.training.finetune.write_predictions), or None if
    there is none; raises ValueError naming it if a split lacks equally long "prediction" and "gold"."""
    if not path.is_file():
        return None
    data = read_json(path)
    splits = data.get("splits") if isinstance(data, dict) else None
    if not isinstance(splits, dict) or not all(
        isinstance(s, dict) and isinstance(s.get("prediction"), list) and isinstance(s.get("gold"), list)
        and len(s["prediction"]) == len(s["gold"]) > 0 for s in splits.values()):  # fmt: skip
        raise ValueError(f'{path}: expected {{"splits": {{split: {{"prediction": [...], "gold": [...]}}}}}} '
                         "with one prediction per gold label")  # fmt: skip
    return splits


def load_runs(results_dir: Path, table_ids) -> dict[tuple[str, str, str], list[Run]]:
    """(table, task, variant) -> its runs by seed, from runs/<table>/<task>/<variant>/seed<N>.json."""
    runs: dict[tuple[str, str, str], list[Run]] = {}
    for table_id in table_ids:
        for path in sorted((results_dir / "runs" / table_id).glob("*/*/seed*.json")):
            runs.setdefault((table_id, path.parent.parent.name, path.parent.name), []).append(read_run(path))
    return {key: sorted(found, key=lambda r: r.seed) for key, found in sorted(runs.items())}


def stage_wall_seconds(results_dir: Path, table_ids: list[str]) -> dict[str, float]:
    """Seconds per stage from the result files: each ``runs/<table>/`` directory's fine-tunes, in
    the paper's table order (a run two tables share, e.g. Table 5's full row and Table 4's runs,
    counts in the first), then the zero-shot curves' snapshots (``zeroshot/<arch>/step<N>.json``)."""
    runs_dir = results_dir / "runs"
    others = sorted(p.name for p in runs_dir.glob("*") if p.is_dir() and p.name not in table_ids)
    seen, stages = set(), {}
    for table_id in [*table_ids, *others]:
        for path in sorted((runs_dir / table_id).glob("*/*/seed*.json")):
            d = read_run(path).data
            identity = (d.get("task"), d.get("settings_key"), d.get("seed"))
            if d["status"] != "done" or identity in seen:
                continue
            seen.add(identity)
            stages[table_id] = stages.get(table_id, 0.0) + (d.get("wall_seconds") or 0.0)
    zero_shot = [read_json(p) for p in sorted((results_dir / "zeroshot").glob("*/step*.json"))]
    if zero_shot:
        stages["figure2_zeroshot"] = sum(z.get("wall_seconds") or 0.0 for z in zero_shot if isinstance(z, dict))
    return {stage: round(seconds, 1) for stage, seconds in stages.items()}


def load_provenance(results_dir: Path) -> dict | None:
    path = results_dir / "provenance.json"
    if not path.is_file():
        return None
    data = read_json(path)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return data


CURVE_FILES = {"transformer": "pretrain_curve.csv", "lstm": "pretrain_curve_lstm.csv", "bert": "pretrain_curve_bert.csv"}


def load_pretrain_curve(results_dir: Path, name: str = "pretrain_curve.csv") -> list[dict] | None:
    """A pre-training curve file (``CURVE_FILES``) as rows of floats (None where a value is
    empty), or None if absent."""
    path = results_dir / name
    if not path.is_file():
        return None
    try:
        reader = csv.DictReader(io.StringIO(path.read_text(encoding="utf-8")))
        if not reader.fieldnames or not {"step", "train_loss"} <= set(reader.fieldnames):
            raise ValueError("expected the header step,train_loss,val_loss,val_ppl")
        rows = [{k: float(v) if v not in ("", None) else None for k, v in row.items()} for row in reader]
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ValueError(f"{path}: {e}") from None
    return sorted(rows, key=lambda r: r["step"])


def load_figure2(results_dir: Path, zero_shot_sota: dict) -> dict | None:
    """figure2.json, or None if absent. Its schema (scores are fractions, like the runs')::

        {"layers":    [{"task": "mnli", "split": "dev_matched", "n_layers": 0, "score": 0.61,
                        "train_score": 0.63}, ...],                       # left: layers transferred
         "zero_shot": [{"model": "transformer", "task": "sst2", "step": 100, "score": 0.52}, ...]}

    Either list may be missing. Zero-shot scores are normalised like the paper's (0 = random
    guessing, 1 = the state of the art in paper.yaml's zero_shot_sota); None where it has no
    state of the art (DPRD).
    """
    path = results_dir / "figure2.json"
    if not path.is_file():
        return None
    data = read_json(path)
    required = {"layers": ("task", "split", "n_layers", "score"), "zero_shot": ("model", "task", "step", "score")}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object with lists {list(required)}")
    for key, fields in required.items():
        points = data.get(key, [])
        if not isinstance(points, list) or not all(isinstance(p, dict) and all(f in p for f in fields) for p in points):
            raise ValueError(f"{path}: {key!r} must be a list of objects with {list(fields)}")
    layers = [
        {"task": p["task"], "split": p["split"], "n_layers": p["n_layers"], "score": percent(p["score"]),
         "train_score": percent(p.get("train_score")), "seeds": p.get("seeds")}
        for p in data.get("layers", [])
    ]  # fmt: skip
    zero_shot = []
    for p in data.get("zero_shot", []):
        score, sota = percent(p["score"]), zero_shot_sota.get(p["task"]) or {}
        normalised = None
        if sota.get("sota") is not None:
            normalised = round((score - sota["random_baseline"]) / (sota["sota"] - sota["random_baseline"]), 4)
        zero_shot.append({"model": p["model"], "task": p["task"], "step": p["step"], "score": score,
                          "normalised": normalised})  # fmt: skip
    notes = data.get("notes", [])
    if not isinstance(notes, list) or not all(isinstance(n, str) for n in notes):
        raise ValueError(f"{path}: 'notes' must be a list of strings")
    return {
        "layers": sorted(layers, key=lambda p: (p["task"], p["split"], p["n_layers"])),
        "zero_shot": sorted(zero_shot, key=lambda p: (p["model"], p["task"], p["step"])),
        "notes": notes,
    }




def percent(x: float | None) -> float | None:
    """A fraction as percent, rounded so that float noise cannot reach the outputs."""
    return None if x is None else round(100 * x, 4)


def as_list(split) -> list[str]:
    return split if isinstance(split, list) else [split]


def split_text(split) -> str:
    return split if isinstance(split, str) else " + ".join(split) + " (mean)"


