"""The leaderboard: our results beside the paper's Tables 2-5, regenerated from result files alone.

``write_report(results_dir)`` reads what the sweep runner left in ``results_dir`` (no training, no
model) and writes ``leaderboard.md``, ``leaderboard.html`` (figures embedded), ``leaderboard.json``,
``leaderboard.csv`` (one row per cell) and PNG figures under ``figures/``. Input layout, every file
optional but the directory::

    provenance.json        {"preset", "model", "parameters", "tokenizer", "corpus", "pretrain",
                            "lstm_pretrain", "bert_pretrain", "git_commit", "machine",
                            "wall_seconds"}: shown as far as present
    pretrain_curve.csv     step,train_loss,val_loss,val_ppl (val_* empty on rows without validation)
    pretrain_curve_lstm.csv, pretrain_curve_bert.csv
                           the same for the LSTM of Table 5 and the BERT-style encoder, if pre-trained
    runs/<table>/<task>/<variant>/seed<N>.json
                           one fine-tuning run, "status" done | failed | unavailable; <table> is a
                           table id of results/paper.yaml, <variant> "full", "bert" (the encoder,
                           "BERT-style encoder, same budget") or a Table 5 variant
    figure2.json           {"layers": [...], "zero_shot": [...], "notes": [...]}, see load_figure2
                           (written by gptbench.suite.figure2 from the Figure 2 sweeps' files)

Our metrics are fractions; every number shown, and every number in the JSON and CSV, is in percent
like the paper's. A cell is the median over seeds. The same inputs give byte-identical Markdown,
JSON and CSV: nothing depends on the clock or on the order a directory lists its files in.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import re
import statistics
from dataclasses import dataclass
from pathlib import Path

import matplotlib.style
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from gptbench.io import atomic_write_bytes, atomic_write_text
from gptbench.suite.claims import check_claims
from gptbench.suite.paper import load_paper_numbers

STATUSES = ("done", "failed", "unavailable")
NOT_RUN_YET = "not run yet (the analysis sweeps fill this)"
MINUS = "\u2212"
# A cell's flags: why its number is not a clean held-out score. The footnotes say which cell.
FLAGS = {
    "†": "a split was substituted",
    "‡": "selected on the reported split (model selection saw these numbers, so they are optimistic)",
    "§": "trained on the reported split",
}
PROBLEM_TAGS = {"not_run": "not run", "unavailable": "data absent", "failed": "run failed", "no_metric": "not scored"}
CSV_FIELDS = ("table", "variant", "column", "task", "split", "metric", "status", "n", "seeds", "median", "min",
              "max", "last_epoch_median", "paper", "diff", "paper_split", "same_split_as_paper", "selection",
              "flags", "note")  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Reading the results directory


@dataclass(frozen=True)
class Run:
    path: Path
    seed: int
    data: dict


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
    return Run(path, int(m[1]), data)


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


# ---------------------------------------------------------------------------------------------
# Cells: one (table, variant, column) each


def percent(x: float | None) -> float | None:
    """A fraction as percent, rounded so that float noise cannot reach the outputs."""
    return None if x is None else round(100 * x, 4)


def as_list(split) -> list[str]:
    return split if isinstance(split, list) else [split]


def split_text(split) -> str:
    return split if isinstance(split, str) else " + ".join(split) + " (mean)"


def metric_value(metrics: dict, split, metric: str) -> float | None:
    """``metrics[split][metric]``, or the mean over a list of splits (Table 5's MNLI); None if absent."""
    values = [(metrics.get(s) or {}).get(metric) for s in as_list(split)]
    return None if any(v is None for v in values) else sum(values) / len(values)


def describe_substitutions(substitutions: dict, selection_split: str | None) -> str:
    """{"train": "dev", "dev": "test"} with selection on dev -> "trained on dev, selected on test"."""
    parts = []
    for split, source in sorted(substitutions.items(), key=lambda kv: (kv[0] != "train", kv[0])):
        if split == "train":
            parts.append(f"trained on {source}")
        elif split == selection_split:
            parts.append(f"selected on {source}")
        else:
            parts.append(f"{split} replaced by {source}")
    return ", ".join(parts)


def run_flags(run: Run, split) -> dict[str, str]:
    """Flag symbol -> explanation, for a done run reported on ``split``.

    A substitution can make the reported split the one the model was selected or trained on, so
    both are checked on the splits actually used (``{"dev": "test"}`` reports test as "dev").
    """
    subs = run.data.get("substitutions") or {}
    selected_on = (run.data.get("selection") or {}).get("split")

    def used(name: str) -> str:
        return subs.get(name, name)

    reported = {used(s) for s in as_list(split)}
    flags = {}
    if subs:
        flags["†"] = describe_substitutions(subs, selected_on)
    if selected_on is not None and used(selected_on) in reported:
        flags["‡"] = f"selected on the reported split ({used(selected_on)})"
    if used("train") in reported:
        flags["§"] = f"trained on the reported split ({used('train')})"
    return flags


def run_problem(run: Run, column: dict) -> tuple[str, str] | None:
    """(kind, reason) when this run gives no number for the column, else None."""
    d = run.data
    if d["status"] == "failed":
        return "failed", f"run failed: {d.get('error') or 'no error recorded'}"
    if d["status"] == "unavailable":
        return "unavailable", f"data absent here: {d.get('reason') or 'no reason recorded'}"
    if metric_value(d.get("metrics") or {}, column["split"], column["metric"]) is not None:
        return None
    absent = [(d.get("unavailable") or {}).get(s) for s in as_list(column["split"])]
    if any(absent):
        return "unavailable", "data absent here: " + "; ".join(a for a in absent if a)
    return "no_metric", f"no {column['metric']} on {split_text(column['split'])} in the run's metrics"


def group_problems(problems: list[tuple[int, str, str]]) -> list[dict]:
    """[(seed, kind, reason)] -> [{"kind", "reason", "seeds"}], one entry per distinct reason."""
    grouped: dict[tuple[str, str], list[int]] = {}
    for seed, kind, reason in problems:
        grouped.setdefault((kind, reason), []).append(seed)
    return [{"kind": k, "reason": r, "seeds": sorted(s)} for (k, r), s in sorted(grouped.items())]


def run_cell(table_id: str, column: dict, variant: str, runs: list[Run], paper: float | None) -> dict:
    """Our number for one column: the median over the seeds that scored it, with everything a reader
    needs to judge it (spread, last-epoch median, selection, splits, flags, why seeds are missing)."""
    scored, last, problems, flags = [], [], [], {}
    for run in runs:
        problem = run_problem(run, column)
        if problem:
            problems.append((run.seed, *problem))
            continue
        scored.append((run, metric_value(run.data.get("metrics") or {}, column["split"], column["metric"])))
        last_value = metric_value(run.data.get("metrics_last_epoch") or {}, column["split"], column["metric"])
        if last_value is not None:
            last.append(last_value)
        for symbol, text in run_flags(run, column["split"]).items():
            flags.setdefault(symbol, set()).add(text)
    values = [v for _, v in scored]
    cell = {
        "table": table_id, "variant": variant, "column": column["label"], "task": column["task"],
        "split": column["split"], "metric": column["metric"],
        "n": len(values), "seeds": [r.seed for r, _ in scored],
        "median": percent(statistics.median(values)) if values else None,
        "min": percent(min(values)) if values else None,
        "max": percent(max(values)) if values else None,
        "last_epoch_median": percent(statistics.median(last)) if last else None,
        "paper": paper, "paper_split": column["paper_split"], "same_split_as_paper": column["same_split_as_paper"],
        "train_examples": train_examples([r for r, _ in scored]),
        "selection": sorted({(r.data.get("selection") or {}).get("protocol") or "unrecorded" for r, _ in scored}),
        "flags": {symbol: sorted(texts) for symbol, texts in sorted(flags.items())},
        "problems": group_problems(problems),
        "note": None,
    }  # fmt: skip
    if not runs:
        where = f"runs/{table_id}/{column['task']}/{variant}/"
        cell["problems"] = [{"kind": "not_run", "reason": f"no run file under {where}", "seeds": []}]
    kinds = sorted({p["kind"] for p in cell["problems"]})
    cell["status"] = "done" if values else "+".join(kinds)
    cell["diff"] = round(cell["median"] - paper, 4) if values and paper is not None else None
    return cell


def train_examples(runs: list[Run]) -> int | None:
    """The median number of training examples of the runs (as their results.json record it)."""
    sizes = [((r.data.get("splits") or {}).get("train") or {}).get("examples") for r in runs]
    sizes = [n for n in sizes if isinstance(n, int)]
    return int(statistics.median(sizes)) if sizes else None


def aggregate_cell(table_id: str, column: dict, variant: str, task_cells: list[dict], paper_values: dict) -> dict:
    """An average column. ``metric: mean`` (Table 5's Avg) averages the columns present on both
    sides and recomputes the paper's mean over the same ones; any other (the GLUE score) averages
    our columns present and is not comparable with the paper's leaderboard average."""
    printed = paper_values.get(column["label"])
    # A row of ours the paper does not have (the linear probe) averages what is here, as its own.
    comparable = column["metric"] == "mean" and any(c["paper"] is not None for c in task_cells)
    present = [c for c in task_cells if c["median"] is not None and (c["paper"] is not None or not comparable)]
    labels = [c["column"] for c in present]
    ours = round(statistics.mean(c["median"] for c in present), 4) if present else None
    which = f"{len(present)} of {len(task_cells)} columns" + (f" ({', '.join(labels)})" if labels else "")
    paper_same = round(statistics.mean(c["paper"] for c in present), 4) if comparable and present else None
    if comparable:
        note = (f"unweighted mean of the {which} present for both sides; Δ against the paper's mean over the "
                f"same columns ({fmt(paper_same, 2)}); the paper prints {printed} over all {len(task_cells)}"
                if present else "no column has a result on both sides")  # fmt: skip
    else:
        note = f"unweighted mean of the {which} present here"
        if column["metric"] == "mean":
            note += " (the paper has no such row)"
        elif printed is not None:
            note += (f"; the paper's {printed} is the GLUE leaderboard's average over all GLUE tasks (test "
                     "server): not computed the same way, so no difference is given")
    return {
        "table": table_id, "variant": variant, "column": column["label"], "task": None, "split": None,
        "metric": column["metric"], "status": "aggregate", "n": None, "seeds": [], "median": ours, "min": None,
        "max": None, "last_epoch_median": None, "paper": printed, "paper_same_columns": paper_same,
        "diff": round(ours - paper_same, 4) if ours is not None and paper_same is not None else None,
        "paper_split": column["paper_split"], "same_split_as_paper": column["same_split_as_paper"],
        "selection": [], "flags": {}, "problems": [], "columns": labels, "note": note,
    }  # fmt: skip


# ---------------------------------------------------------------------------------------------
# The leaderboard as data (leaderboard.json); Markdown, HTML and CSV are views of it


def paper_rows(spec: dict) -> dict[str, dict]:
    """variant -> {"label", "values": {column label: paper value}}; Tables 2-4 have one row, "full"."""
    if "rows" in spec:
        return {r["variant"]: {"label": f"paper: {r['label']}", "values": dict(r["values"])} for r in spec["rows"]}
    return {"full": {"label": "paper (GPT-1)", "values": {c["label"]: c["paper"] for c in spec["columns"]}}}


def build_table(table_id: str, spec: dict, runs: dict, previous_best: list[dict]) -> dict:
    papers = paper_rows(spec)
    found = sorted({variant for (t, _, variant) in runs if t == table_id})
    table = {"id": table_id, "title": spec["title"], "columns": [c["label"] for c in spec["columns"]],
             "paper_rows": papers, "variants": [], "cells": [],
             "previous_best": {p["label"]: {"value": p["paper"], "model": p["model"]}
                               for p in previous_best if p["table"] == table_id}}  # fmt: skip
    if "rows" in spec and not found:  # Table 5: only the analysis sweeps run its variants
        table["status"] = "not_run"
        return table
    table["status"] = "ok"
    table["variants"] = list(dict.fromkeys([*papers, *found]))
    for variant in table["variants"]:
        values = papers.get(variant, {}).get("values", {})
        task_cells = [
            run_cell(table_id, c, variant, runs.get((table_id, c["task"], variant), []), values.get(c["label"]))
            for c in spec["columns"] if c.get("task")
        ]  # fmt: skip
        by_label = {c["column"]: c for c in task_cells}
        for column in spec["columns"]:
            cell = by_label.get(column["label"]) or aggregate_cell(table_id, column, variant, task_cells, values)
            table["cells"].append(cell)
    return table


def split_summary(tables: dict) -> list[str]:
    """One line per (our split, the paper's split): which columns compare what."""
    groups: dict[tuple, dict[tuple, str]] = {}
    for spec in tables.values():
        for c in spec["columns"]:
            if c.get("task"):
                key = (not c["same_split_as_paper"], split_text(c["split"]), c["paper_split"])
                groups.setdefault(key, {}).setdefault((c["task"], split_text(c["split"]), c["metric"]), c["label"])
    return [
        f"ours {ours} vs paper {theirs}{' (the same split)' if not differs else ''}: {', '.join(labels.values())}"
        for (differs, ours, theirs), labels in sorted(groups.items())
    ]


def curve_summary(curve: list[dict] | None) -> dict | None:
    if not curve:
        return None
    validated = [r for r in curve if r.get("val_loss") is not None]
    last_val = None
    if validated:
        last_val = {k: validated[-1].get(k) for k in ("step", "val_loss", "val_ppl")}
    trained = [r for r in curve if r.get("train_loss") is not None]  # the final row may be validation only
    last = trained[-1] if trained else {"step": curve[-1]["step"], "train_loss": None}
    return {"rows": len(curve), "last_step": last["step"], "last_train_loss": last["train_loss"],
            "last_val": last_val}


def build_leaderboard(results_dir: Path, paper: dict, curves: dict[str, list[dict] | None]) -> dict:
    """Everything the report shows, as plain JSON-ready data (percent throughout)."""
    tables = paper["tables"]
    runs = load_runs(results_dir, tables)
    every = [run.data for found in runs.values() for run in found]
    counts = {"files": len(every), **{s: sum(d["status"] == s for d in every) for s in STATUSES},
              "wall_seconds": round(sum(d.get("wall_seconds") or 0 for d in every), 1),
              "stages": stage_wall_seconds(results_dir, list(tables))}  # fmt: skip
    built = [build_table(tid, spec, runs, paper["previous_best"]) for tid, spec in tables.items()]
    figure2 = load_figure2(results_dir, paper["zero_shot_sota"])
    provenance = load_provenance(results_dir)
    return {
        "units": "percent (our fractions x 100; the paper's as printed)",
        "numbers": "median over seeds of each run's selected epoch",
        "provenance": provenance,
        "runs": counts,
        "paper_pretraining": paper["pretraining"],
        "splits": split_summary(tables),
        "tables": built,
        "figure2": figure2,
        "claims": check_claims(built, figure2),
        "pretrain_curve": curve_summary(curves.get("transformer")),
        "pretrain_curve_lstm": curve_summary(curves.get("lstm")),
        "pretrain_curve_bert": curve_summary(curves.get("bert")),
        "encoder_comparison": encoder_comparison(provenance, runs),
    }


# ---------------------------------------------------------------------------------------------
# Formatting numbers and cells


def fmt(x: float | None, digits: int = 1) -> str:
    return "" if x is None else f"{x:.{digits}f}"


def fmt_diff(x: float | None) -> str:
    """+1.8 / −1.8 (a real minus sign) / 0.0."""
    if x is None:
        return ""
    text = f"{abs(x):.1f}"
    return "0.0" if text == "0.0" else ("+" if x > 0 else MINUS) + text


def cell_text(cell: dict) -> str:
    """54.2 (52.3–56.0, n=3) †, or — (data absent) when no seed scored it."""
    if cell["median"] is None and cell["status"] == "aggregate":
        return "— (no column)"
    if cell["median"] is None:
        return "— (" + "; ".join(dict.fromkeys(PROBLEM_TAGS[p["kind"]] for p in cell["problems"])) + ")"
    if cell["status"] == "aggregate":
        return f"{fmt(cell['median'])} (mean of {len(cell['columns'])})"
    text = fmt(cell["median"])
    if cell["n"] > 1:
        text += f" ({fmt(cell['min'])}–{fmt(cell['max'])}, n={cell['n']})"
    return " ".join([text, *cell["flags"]])


def diff_text(cell: dict) -> str:
    if cell["status"] == "aggregate" and cell["metric"] != "mean" and cell["median"] is not None:
        return "n/a (not comparable)"
    return fmt_diff(cell["diff"])


def cell_note(cell: dict) -> str:
    """Why a cell is missing, which seeds are missing from it, or how an average is formed."""
    if cell["note"]:
        return cell["note"]
    return "; ".join((f"seed {', '.join(map(str, p['seeds']))}: " if p["seeds"] else "") + p["reason"]
                     for p in cell["problems"])  # fmt: skip


def fmt_seconds(s: float) -> str:
    if s < 120:
        return f"{s:.1f} s"
    return f"{s / 60:.1f} min" if s < 7200 else f"{s / 3600:.1f} h"


def fmt_extras(d: dict, known) -> list[str]:
    """The keys a formatter does not know, as key=value, so nothing in provenance.json is hidden."""
    return [f"{k}={json.dumps(v, sort_keys=True)}" for k, v in sorted(d.items()) if k not in known]


# How provenance.json's sections are shown: key -> a format string or a function of the value.
MODEL_FORMATS = {k: k + "={}" for k in ("n_layer", "n_embd", "n_head", "n_ctx", "vocab_size")}
CORPUS_FORMATS = {"books": "{:,} books", "bytes": "{:,} bytes", "max_bytes": "at most {:,} bytes",
                  "val_books": "{:,} validation books", "train_tokens": "{:,} training tokens",
                  "val_tokens": "{:,} validation tokens", "path": "from {}"}  # fmt: skip
PRETRAIN_FORMATS = {"steps": "{:,} steps", "tokens_seen": "{:,} tokens seen", "val_loss": "validation loss {:.3f}",
                    "val_ppl": "validation perplexity {:.1f}", "tokens_per_sec": "{:,.0f} tokens/s",
                    "wall_seconds": lambda s: f"wall time {fmt_seconds(s)}"}  # fmt: skip
LSTM_FORMATS = {"n_layer": "{} layer(s)", "n_hidden": "{:,} units", "parameters": "{:,} parameters", **PRETRAIN_FORMATS}
BERT_FORMATS = {"n_layer": "{} layers", "n_embd": "width {}", "parameters": "{:,} parameters", "objective": "{}",
                **PRETRAIN_FORMATS, "val_loss": "masked-LM validation loss {:.3f}",
                "val_ppl": "masked-LM validation perplexity {:.1f} (not comparable with a left-to-right one)"}  # fmt: skip
PROVENANCE_KEYS = ("preset", "model", "parameters", "tokenizer", "corpus", "pretrain", "lstm_pretrain", "bert_pretrain",
                   "wall_seconds", "git_commit", "machine")  # fmt: skip


def described(d: dict, formats: dict) -> str:
    """``d``'s values through ``formats``, in that order, then its other keys; None values left out."""
    d = {k: v for k, v in d.items() if v is not None}
    shown = [f(d[k]) if callable(f) else f.format(d[k]) for k, f in formats.items() if k in d]
    return ", ".join(shown + fmt_extras(d, formats))


def provenance_lines(p: dict | None, paper_pretraining: dict) -> list[str]:
    """What was run, as far as provenance.json says; keys it lacks (or sets to null) are left out."""
    if p is None:
        return ["provenance.json: not found"]
    p = {k: v for k, v in p.items() if v is not None}
    lines = [f"preset: {p['preset']}"] if "preset" in p else []
    if isinstance(p.get("model"), dict):
        lines.append("model: " + described(p["model"], MODEL_FORMATS))
    if "parameters" in p:
        lines.append(f"parameters: {p['parameters']:,} ({p['parameters'] / 1e6:.2f}M; "
                     f"the paper's model: {paper_pretraining['parameters']:,})")  # fmt: skip
    if "tokenizer" in p:
        lines.append(f"tokenizer: {p['tokenizer']}")
    if isinstance(p.get("corpus"), dict):
        lines.append("corpus: " + described(p["corpus"], CORPUS_FORMATS))
    if isinstance(p.get("pretrain"), dict):
        line = "pre-training: " + described(p["pretrain"], PRETRAIN_FORMATS)
        if "val_ppl" in p["pretrain"]:
            line += (f" (the paper's perplexity, {paper_pretraining['perplexity']}, is per BPE token on "
                     f"{paper_pretraining['corpus']}: another corpus, tokenizer and model size)")  # fmt: skip
        lines.append(line)
    if isinstance(p.get("lstm_pretrain"), dict):
        lines.append("LSTM pre-training (Table 5, Figure 2): " + described(p["lstm_pretrain"], LSTM_FORMATS))
    if isinstance(p.get("bert_pretrain"), dict):
        lines.append("BERT-style encoder pre-training (same corpus, tokenizer and windows): "
                     + described(p["bert_pretrain"], BERT_FORMATS))  # fmt: skip
    if isinstance(p.get("wall_seconds"), dict):
        stages = sorted(p["wall_seconds"].items())
        lines.append("wall time: " + ", ".join(f"{stage} {fmt_seconds(s)}" for stage, s in stages))
    if "git_commit" in p:
        lines.append(f"git commit: {p['git_commit']}")
    if "machine" in p:
        lines.append(f"machine: {p['machine']}")
    return lines + fmt_extras(p, PROVENANCE_KEYS)


def runs_line(counts: dict) -> str:
    if not counts["files"]:
        return "fine-tuning runs: none yet (no runs/<table>/<task>/<variant>/seed<N>.json)"
    statuses = ", ".join(f"{counts[s]} {s}" for s in STATUSES)
    wall = fmt_seconds(counts["wall_seconds"])
    line = f"fine-tuning runs: {counts['files']} ({statuses}); wall time summed over them {wall}"
    if counts.get("stages"):
        line += ("; wall time per stage (a run shared by two tables counted once): "
                 + ", ".join(f"{stage} {fmt_seconds(s)}" for stage, s in counts["stages"].items()))  # fmt: skip
    return line


# ---------------------------------------------------------------------------------------------
# Document blocks, rendered to Markdown and to HTML


@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Para:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: list[str]


@dataclass(frozen=True)
class Table:
    header: list[str]
    rows: list[list[str]]


@dataclass(frozen=True)
class Image:
    path: str  # relative to the results directory
    alt: str


# Variants whose row needs more than its name.
VARIANT_LABELS = {"bert": "BERT-style encoder, same budget", "bert_no_pretraining": "BERT-style encoder w/o pre-training",
                  "bert_linear_probe": "BERT-style encoder, linear probe"}  # fmt: skip


def ours_label(variant: str) -> str:
    return f"ours ({VARIANT_LABELS.get(variant, variant)})"


def encoder_comparison(provenance: dict | None, runs: dict[tuple[str, str, str], list[Run]]) -> str | None:
    """What the BERT-style encoder's rows share with the Transformer's and what differs, from
    provenance.json and the run files (fine-tuning settings compared run by run with the ``full``
    twin of the same table, task and seed); None when no encoder was pre-trained."""
    bert, gpt = (provenance or {}).get("bert_pretrain"), (provenance or {}).get("pretrain") or {}
    if not isinstance(bert, dict):
        return None
    equal, differs = ["the corpus, its windows and the tokenizer"], []
    if provenance.get("parameters") and bert.get("parameters"):
        b, g = bert["parameters"], provenance["parameters"]
        equal.append(f"the parameter count within {abs(b - g) / g:.1%} ({b:,} vs the Transformer's {g:,}: segment "
                     "embeddings, an embedding LayerNorm, the MLM transform and the pooler)")  # fmt: skip
    tokens = bert.get("tokens_seen"), gpt.get("tokens_seen")
    if None not in tokens:
        (equal if tokens[0] == tokens[1] else differs).append(
            f"pre-training tokens ({tokens[0]:,} vs {tokens[1]:,}, {bert.get('steps')} vs {gpt.get('steps')} steps)")
    changed: dict[str, set] = {}
    twins = 0
    for (table_id, task, variant), found in runs.items():
        full = {r.seed: r.data for r in runs.get((table_id, task, "full"), [])} if variant == "bert" else {}
        for run in found:
            twin = full.get(run.seed)
            if twin is None or not isinstance(run.data.get("finetune"), dict) or not isinstance(twin.get("finetune"), dict):
                continue
            twins += 1
            # The twin has the same seed by construction; the "seed" key may read null (the experiment's seed).
            for key in sorted((set(run.data["finetune"]) | set(twin["finetune"])) - {"seed"}):
                if run.data["finetune"].get(key) != twin["finetune"].get(key):
                    changed.setdefault(key, set()).add(f"{twin['finetune'].get(key)} -> {run.data['finetune'].get(key)}")
    if twins:
        same = "the fine-tuning settings, selection protocol and seeds of the full row"
        equal.append(same + (f" ({twins} runs compared with their twin" +
                             (f"; they differ only in {'; '.join(f'{k} {sorted(v)}' for k, v in changed.items())})"
                              if changed else ")")))  # fmt: skip
    differs += ["the objective (masked tokens: 15% of positions, 80/10/10, no next-sentence prediction; vs the next "
                "token)", "attention (bidirectional vs causal)",
                "the read-out (the tanh pooler at [CLS] vs the state at the extract token)",
                "the input format ([CLS] a [SEP] b [SEP] with segment ids; similarity in one order, not both)"]
    if "lm_coef" in changed:
        differs.append("no auxiliary LM loss (BERT's recipe), so for the objective and direction alone read it beside "
                       "Table 5's no_aux_lm row")  # fmt: skip
    return f"{VARIANT_LABELS['bert']}: equal — {'; '.join(equal)}. Differs — {'; '.join(differs)}."


def table_blocks(table: dict, figures: dict[str, bytes], encoder_line: str | None = None) -> list:
    blocks = [Heading(2, table["title"])]
    if table["status"] == "not_run":
        return blocks + [Para(NOT_RUN_YET)]
    cells = {(c["variant"], c["column"]): c for c in table["cells"]}
    rows = []
    for variant in table["variants"]:
        ours = [cells[variant, label] for label in table["columns"]]
        rows.append([ours_label(variant), *map(cell_text, ours)])
        if variant in table["paper_rows"]:
            rows.append(["Δ ours − paper", *map(diff_text, ours)])
            paper = table["paper_rows"][variant]
            rows.append([paper["label"], *(fmt(paper["values"].get(label)) for label in table["columns"])])
    if table["previous_best"]:
        rows.append(["previous best", *(fmt((table["previous_best"].get(label) or {}).get("value"))
                                        for label in table["columns"])])  # fmt: skip
    blocks.append(Table(["", *table["columns"]], rows))
    if "bert" in table["variants"] and encoder_line:
        blocks.append(Para(encoder_line))

    details = [[c["column"], ours_label(c["variant"]), cell_text(c), fmt(c["last_epoch_median"]), diff_text(c),
                ", ".join(c["selection"]), split_text(c["split"]) if c["split"] else "",
                c["paper_split"] + (" (same split)" if c["same_split_as_paper"] else ""), cell_note(c)]
               for c in table["cells"] if c["status"] != "not_run"]  # fmt: skip
    header = ["column", "row", "ours", "last epoch", "Δ", "selection", "our split", "paper split", "notes"]
    if details:
        blocks += [Para("Per cell (cells not run are left out; leaderboard.csv has them all):"), Table(header, details)]

    footnotes = [f"{symbol} {c['column']}, {ours_label(c['variant'])}: {text}"
                 for c in table["cells"] for symbol, texts in c["flags"].items() for text in texts]  # fmt: skip
    if footnotes:
        blocks.append(Bullets(footnotes))
    if table["previous_best"]:
        blocks.append(Para("Previous best, as the paper prints it: " + "; ".join(
            f"{label} {fmt(p['value'])}" + (f" ({p['model']})" if p["model"] else "")
            for label, p in table["previous_best"].items())))  # fmt: skip
    path = f"figures/{table['id']}.png"
    if path in figures:
        blocks.append(Image(path, f"{table['title']}: ours vs paper"))
    return blocks


ENCODER_LEFT_OUT = ("The BERT-style encoder is left out of this panel: the heuristics read next-token probabilities, "
                    "which a masked-token encoder does not define.")  # fmt: skip


def figure2_blocks(figure2: dict | None, figures: dict[str, bytes], encoder_pretrained: bool = False) -> list:
    blocks = [Heading(2, "Figure 2")]
    if figure2 is None:
        return blocks + [Para(NOT_RUN_YET)]
    blocks.append(Heading(3, "Left: dev score against the number of pre-trained layers transferred"))
    if figure2["layers"]:
        keys = list(dict.fromkeys((p["task"], p["split"]) for p in figure2["layers"]))
        points = {(p["task"], p["split"], p["n_layers"]): p for p in figure2["layers"]}
        header = ["layers", *(f"{t} {s}" for t, s in keys), *(f"{t} train" for t, _ in keys)]
        rows = []
        for n in sorted({p["n_layers"] for p in figure2["layers"]}):
            got = [points.get((t, s, n)) or {} for t, s in keys]
            rows.append([str(n), *(fmt(p.get("score")) for p in got), *(fmt(p.get("train_score")) for p in got)])
        blocks.append(Table(header, rows))
    else:
        blocks.append(Para(NOT_RUN_YET))
    blocks.append(Heading(3, "Right: zero-shot score against pre-training updates"))
    if figure2["zero_shot"]:
        keys = list(dict.fromkeys((p["task"], p["model"]) for p in figure2["zero_shot"]))
        points = {(p["task"], p["model"], p["step"]): p for p in figure2["zero_shot"]}
        rows = []
        for step in sorted({p["step"] for p in figure2["zero_shot"]}):
            got = [points.get((t, m, step)) for t, m in keys]
            rows.append([str(step), *(zero_shot_text(p) for p in got)])
        blocks.append(Table(["updates", *(f"{t} ({m})" for t, m in keys)], rows))
        blocks.append(Para("Normalised as in the paper: 0 is random guessing, 1 the state of the art recorded in "
                           "results/paper.yaml (zero_shot_sota). Where none is recorded (DPRD) the raw score "
                           "is shown, in percent, and the figure leaves it out."))  # fmt: skip
    else:
        blocks.append(Para(NOT_RUN_YET))
    if encoder_pretrained:
        blocks.append(Para(ENCODER_LEFT_OUT))
    if figure2["notes"]:
        blocks.append(Bullets(figure2["notes"]))
    if "figures/figure2.png" in figures:
        blocks.append(Image("figures/figure2.png", "Figure 2, ours"))
    return blocks


def claims_blocks(claims: list[dict]) -> list:
    """The paper's claims beside what our numbers show (see gptbench.suite.claims)."""
    rows = [[c["claim"], c["verdict"], c["evidence"]] for c in claims]
    return [
        Heading(2, "The paper's claims, checked"),
        Para("Each claim of the paper's analysis (Section 5) against the numbers above: shown (every comparison "
             "present agrees), partly, not shown, or not tested (its numbers are not here). Medians over the "
             "seeds in each cell; a single seed, or a small model, can show or hide an effect by chance, so read "
             "each verdict with the n of its cells and the preset's scale."),
        Table(["claim", "ours", "numbers"], rows),
    ]  # fmt: skip


def zero_shot_text(point: dict | None) -> str:
    if point is None:
        return ""
    return fmt(point["normalised"], 2) if point["normalised"] is not None else f"raw {fmt(point['score'])}%"


def pretraining_blocks(summary: dict | None, lstm: dict | None, bert: dict | None, figures: dict[str, bytes]) -> list:
    blocks = [Heading(2, "Pre-training")]
    if summary is None:
        return blocks + [Para("pretrain_curve.csv: not found")]
    blocks.append(Para(curve_text(summary) + "."))
    if lstm is not None:
        blocks.append(Para("The LSTM (Table 5, Figure 2): " + curve_text(lstm) + "."))
    if bert is not None:
        blocks.append(Para("The BERT-style encoder (dotted in the figure): " + curve_text(bert, "masked-token ") +
                           ". Its loss is the cross-entropy at the 15% of positions it masks, predicted from both "
                           "sides: not comparable with the left-to-right loss of the others."))  # fmt: skip
    if "figures/pretrain_curve.png" in figures:
        blocks.append(Image("figures/pretrain_curve.png", "pre-training loss and perplexity"))
    return blocks


def curve_text(summary: dict, kind: str = "") -> str:
    text = f"{summary['rows']} logged steps, the last at step {summary['last_step']:.0f}"
    if summary["last_train_loss"] is not None:
        text += f" (training loss {summary['last_train_loss']:.3f})"
    if summary["last_val"]:
        v = summary["last_val"]
        text += f"; last validation at step {v['step']:.0f}: {kind}loss {v['val_loss']:.3f}" + (
            f", {kind}perplexity {v['val_ppl']:.1f}" if v["val_ppl"] is not None else "")
    return text


def leaderboard_blocks(board: dict, figures: dict[str, bytes]) -> list:
    flags = "; ".join(f"{symbol} {meaning}" for symbol, meaning in FLAGS.items())
    blocks = [
        Heading(1, "gptbench leaderboard: GPT-1 (Radford et al. 2018) reproduced"),
        Para("Regenerated by gptbench.suite.report from the result files in this directory alone."),
        Bullets([*provenance_lines(board["provenance"], board["paper_pretraining"]), runs_line(board["runs"])]),
        Para("Our numbers: for each cell, the median over seeds of the epoch each run's selection protocol "
             "chose; metric fractions × 100, shown as percent with one decimal (Matthews and Pearson × 100 "
             "too), with (min–max, n=seeds) when more than one seed scored it. Δ = ours − paper, in points. "
             "The paper's numbers are as printed. — marks a cell no seed scored, with the reason. "
             f"Flags: {flags}; footnotes under each table say which cell. Splits:"),
        Bullets(board["splits"]),
    ]  # fmt: skip
    for table in board["tables"]:
        blocks += table_blocks(table, figures, board["encoder_comparison"])
    blocks += figure2_blocks(board["figure2"], figures, board["encoder_comparison"] is not None)
    blocks += claims_blocks(board["claims"])
    blocks += pretraining_blocks(board["pretrain_curve"], board["pretrain_curve_lstm"], board["pretrain_curve_bert"],
                                 figures)  # fmt: skip
    return blocks


def md_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def format_leaderboard_markdown(blocks: list) -> str:
    out = []
    for b in blocks:
        if isinstance(b, Heading):
            out.append(f"{'#' * b.level} {b.text}")
        elif isinstance(b, Para):
            out.append(b.text)
        elif isinstance(b, Bullets):
            out.append("\n".join(f"- {item}" for item in b.items))
        elif isinstance(b, Table):
            lines = [b.header, ["---"] * len(b.header), *b.rows]
            out.append("\n".join("| " + " | ".join(md_escape(x) for x in line) + " |" for line in lines))
        elif isinstance(b, Image):
            out.append(f"![{b.alt}]({b.path})")
    return "\n\n".join(out) + "\n"


HTML_STYLE = """body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
img { max-width: 100%; }"""


def format_leaderboard_html(blocks: list, figures: dict[str, bytes]) -> str:
    """A self-contained page: the figures are embedded as base64 PNG."""
    esc = html.escape
    out = ["<!DOCTYPE html>", '<html lang="en">', '<head><meta charset="utf-8"><title>gptbench leaderboard</title>',
           f"<style>\n{HTML_STYLE}\n</style></head>", "<body>"]  # fmt: skip
    for b in blocks:
        if isinstance(b, Heading):
            out.append(f"<h{b.level}>{esc(b.text)}</h{b.level}>")
        elif isinstance(b, Para):
            out.append(f"<p>{esc(b.text)}</p>")
        elif isinstance(b, Bullets):
            out.append("<ul>" + "".join(f"<li>{esc(item)}</li>" for item in b.items) + "</ul>")
        elif isinstance(b, Table):
            head = "".join(f"<th>{esc(x)}</th>" for x in b.header)
            body = "".join("<tr>" + "".join(f"<td>{esc(x)}</td>" for x in row) + "</tr>" for row in b.rows)
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif isinstance(b, Image):
            data = base64.b64encode(figures[b.path]).decode("ascii")
            out.append(f'<p><img alt="{esc(b.alt)}" src="data:image/png;base64,{data}"></p>')
    return "\n".join([*out, "</body>", "</html>"]) + "\n"


def format_leaderboard_csv(board: dict) -> str:
    """One row per cell of ours (task and average columns), in table, row and column order."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for table in board["tables"]:
        for c in table["cells"]:
            row = {k: "" if c.get(k) is None else c[k] for k in CSV_FIELDS}
            row |= {
                "table": table["id"], "split": split_text(c["split"]) if c["split"] else "",
                "seeds": ";".join(map(str, c["seeds"])), "selection": ";".join(c["selection"]),
                "flags": "; ".join(f"{s} {t}" for s, texts in c["flags"].items() for t in texts),
                "note": cell_note(c),
            }  # fmt: skip
            writer.writerow(row)
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------
# Figures (matplotlib's Agg canvas, default style, no Software/date metadata: reproducible PNGs)


def png_bytes(fig: Figure) -> bytes:
    buf = io.BytesIO()
    FigureCanvasAgg(fig).print_png(buf, metadata={"Software": None})
    return buf.getvalue()


def table_figure(table: dict) -> bytes:
    """One panel per variant: bars for ours (min–max whiskers when n > 1) and the paper's per task
    column; a column with no result of ours is labelled instead of drawn as 0."""
    variants = table["variants"]
    fig = Figure(figsize=(max(6.0, 1.1 * len(table["columns"])), 3.6 * len(variants)))
    for ax, variant in zip(fig.subplots(len(variants), 1, squeeze=False)[:, 0], variants):
        ours = [c for c in table["cells"] if c["variant"] == variant and c["status"] != "aggregate"]
        paper = table["paper_rows"].get(variant)
        width = 0.4 if paper else 0.8
        xs = [j - width / 2 if paper else j for j in range(len(ours))]
        drawn = [(x, c) for x, c in zip(xs, ours) if c["median"] is not None]
        ax.bar([x for x, _ in drawn], [c["median"] for _, c in drawn], width, label=ours_label(variant))
        spread = [(x, c) for x, c in drawn if c["n"] > 1]
        if spread:
            ax.errorbar([x for x, _ in spread], [c["median"] for _, c in spread], fmt="none", ecolor="black", capsize=3,
                        yerr=[[c["median"] - c["min"] for _, c in spread], [c["max"] - c["median"] for _, c in spread]])
        for x, c in zip(xs, ours):
            if c["median"] is None:
                ax.text(x, 1, "no result", rotation=90, ha="center", va="bottom", fontsize=7)
        if paper:
            values = [(j + width / 2, paper["values"].get(c["column"])) for j, c in enumerate(ours)]
            values = [(x, v) for x, v in values if v is not None]
            ax.bar([x for x, _ in values], [v for _, v in values], width, label=paper["label"])
        ax.set_xticks(range(len(ours)), [c["column"] for c in ours], rotation=15, ha="right")
        ax.set_ylabel("score (%)")
        ax.set_title(table["title"] + (f": {VARIANT_LABELS.get(variant, variant)}" if len(variants) > 1 else ""))
        ax.axhline(0, color="black", linewidth=0.5)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return png_bytes(fig)


CURVE_STYLES = {"transformer": ("-", ""), "lstm": ("--", " (LSTM)"), "bert": (":", " (BERT, masked tokens)")}


def pretrain_figure(curves: dict[str, list[dict]]) -> bytes:
    """Loss and validation perplexity; the Transformer solid, the LSTM dashed, the BERT encoder's
    masked-token loss dotted (each if run)."""
    fig = Figure(figsize=(9.0, 3.5))
    loss_ax, ppl_ax = fig.subplots(1, 2)
    for arch, curve in curves.items():
        style, name = CURVE_STYLES[arch]
        trained = [r for r in curve if r.get("train_loss") is not None]
        loss_ax.plot([r["step"] for r in trained], [r["train_loss"] for r in trained], style, color="C0", label="train" + name)
        val = [r for r in curve if r.get("val_loss") is not None]
        loss_ax.plot([r["step"] for r in val], [r["val_loss"] for r in val], style, marker="o", color="C1",
                     label="validation" + name)  # fmt: skip
        ppl = [r for r in curve if r.get("val_ppl") is not None]
        ppl_ax.plot([r["step"] for r in ppl], [r["val_ppl"] for r in ppl], style, marker="o", color="C1",
                    label="validation" + name)  # fmt: skip
    loss_ax.set(xlabel="step", ylabel="loss (nats/token)", title="pre-training loss")
    loss_ax.legend()
    ppl_ax.set(xlabel="step", ylabel="perplexity", title="validation perplexity")
    if len(curves) > 1:
        ppl_ax.legend()
    fig.tight_layout()
    return png_bytes(fig)


def figure2_figure(figure2: dict) -> bytes:
    fig = Figure(figsize=(10.0, 4.0))
    left, right = fig.subplots(1, 2)
    for task, split in dict.fromkeys((p["task"], p["split"]) for p in figure2["layers"]):
        pts = [p for p in figure2["layers"] if (p["task"], p["split"]) == (task, split)]
        line = left.plot([p["n_layers"] for p in pts], [p["score"] for p in pts], "o-", label=f"{task} {split}")[0]
        train = [p for p in pts if p["train_score"] is not None]
        if train:
            left.plot([p["n_layers"] for p in train], [p["train_score"] for p in train], "--",
                      color=line.get_color(), label=f"{task} train")  # fmt: skip
    left.set(xlabel="layers transferred", ylabel="score (%)", title="transfer")
    tasks = sorted({p["task"] for p in figure2["zero_shot"]})
    for task, model in dict.fromkeys((p["task"], p["model"]) for p in figure2["zero_shot"]):
        pts = [p for p in figure2["zero_shot"]
               if (p["task"], p["model"]) == (task, model) and p["normalised"] is not None]  # fmt: skip
        if pts:  # as in the paper: a colour per task, the LSTM dashed
            right.plot([p["step"] for p in pts], [p["normalised"] for p in pts], "--" if model == "lstm" else "-",
                       marker="o", color=f"C{tasks.index(task)}", label=f"{task} ({model})")
    right.set(xlabel="pre-training updates", ylabel="normalised zero-shot score", title="zero-shot")
    if any(p["step"] > 0 for p in figure2["zero_shot"]):
        right.set_xscale("log")
    for ax in (left, right):
        if ax.lines:
            ax.legend(fontsize=7)
    fig.tight_layout()
    return png_bytes(fig)


def render_figures(board: dict, curves: dict[str, list[dict] | None]) -> dict[str, bytes]:
    """Relative path -> PNG bytes, for every figure there is something to plot in."""
    figures = {}
    with matplotlib.style.context("default"):  # not the user's matplotlibrc
        for table in board["tables"]:
            if table["status"] == "ok":
                figures[f"figures/{table['id']}.png"] = table_figure(table)
        if board["figure2"] and (board["figure2"]["layers"] or board["figure2"]["zero_shot"]):
            figures["figures/figure2.png"] = figure2_figure(board["figure2"])
        if curves.get("transformer"):
            figures["figures/pretrain_curve.png"] = pretrain_figure({k: c for k, c in curves.items() if c})
    return figures


# ---------------------------------------------------------------------------------------------
# Entry point


def write_report(results_dir: str | Path, paper: dict | None = None) -> list[Path]:
    """Write the leaderboard (md, html, json, csv) and its figures into ``results_dir``.

    Reads only result files (see the module docstring) and ``paper`` (default: results/paper.yaml).
    Returns the paths written, sorted. Raises ValueError naming the file for a missing directory, a
    run file that is not JSON or lacks "status", or any other malformed input.
    """
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise ValueError(f"{results_dir}: results directory not found")
    paper = paper or load_paper_numbers()
    curves = {arch: load_pretrain_curve(results_dir, name) for arch, name in CURVE_FILES.items()}
    board = build_leaderboard(results_dir, paper, curves)
    figures = render_figures(board, curves)
    blocks = leaderboard_blocks(board, figures)
    outputs = {
        "leaderboard.md": format_leaderboard_markdown(blocks),
        "leaderboard.html": format_leaderboard_html(blocks, figures),
        "leaderboard.json": json.dumps(board, indent=2, sort_keys=True, ensure_ascii=False) + "\n",
        "leaderboard.csv": format_leaderboard_csv(board),
    }
    for name, text in outputs.items():
        atomic_write_text(results_dir / name, text)
    for name, data in figures.items():
        atomic_write_bytes(results_dir / name, data)
    return sorted(results_dir / name for name in [*outputs, *figures])
