"""The leaderboard as data (leaderboard.json): one cell per (table, variant, column), the tables,
the split summary and the claims. Markdown, HTML and CSV are views of it (see ``write``).

Stage 2 of the report.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from gptbench.suite.claims import check_claims
from gptbench.suite.report.read import (
    STATUSES,
    Run,
    as_list,
    load_figure2,
    load_provenance,
    load_runs,
    percent,
    split_text,
    stage_wall_seconds,
)

def fmt(x: float | None, digits: int = 1) -> str:
    return "" if x is None else f"{x:.{digits}f}"


# Variants whose row needs more than its name.
VARIANT_LABELS = {"bert": "BERT-style encoder, same budget", "bert_no_pretraining": "BERT-style encoder w/o pre-training",
                  "bert_linear_probe": "BERT-style encoder, linear probe"}  # fmt: skip



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


def run_cell(table_id: str, column: dict, variant: str, runs: list[Run], paper: float | None,
             dataset: dict | None = None) -> dict:  # fmt: skip
    """Our number for one column: the median over the seeds that scored it, with everything a reader
    needs to judge it (spread, per-seed values, last-epoch median, selection, splits, how many
    examples were scored of how many, flags, why seeds are missing). ``dataset``: the task's full
    sizes and label counts (paper.yaml's ``datasets``)."""
    dataset = dataset or {}
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
    examples, split_examples = scored_examples([r for r, _ in scored], column["split"], dataset)
    one_class = one_class_seeds(scored, column, examples == split_examples, dataset)
    if one_class:
        flags["∅"] = {f"seed{'s' * (len(seeds) > 1)} {', '.join(map(str, seeds))} of {len(scored)}: {text}"
                      for text, seeds in one_class.items()}  # fmt: skip
    cell = {
        "table": table_id, "variant": variant, "column": column["label"], "task": column["task"],
        "split": column["split"], "metric": column["metric"],
        "n": len(values), "seeds": [r.seed for r, _ in scored], "values": [percent(v) for v in values],
        "predictions": sum(r.predictions is not None for r, _ in scored),
        "median": percent(statistics.median(values)) if values else None,
        "min": percent(min(values)) if values else None,
        "max": percent(max(values)) if values else None,
        "last_epoch_median": percent(statistics.median(last)) if last else None,
        "paper": paper, "paper_split": column["paper_split"],
        "same_split_as_paper": column["same_split_as_paper"] and examples is not None and examples == split_examples,
        "examples": examples, "split_examples": split_examples,
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


def scored_examples(runs: list[Run], split, dataset: dict) -> tuple[int | None, int | None]:
    """(examples scored, examples in the whole split) for a column, summed over its splits: the
    runs' records (results.json's ``splits``: ``examples``, and ``full_examples`` in runs since
    predictions are recorded), the full size from paper.yaml's ``datasets`` where a run has none."""
    scored, full = set(), set()
    for run in runs:
        records = [(run.data.get("splits") or {}).get(s) or {} for s in as_list(split)]
        counts = [r.get("examples") for r in records]
        fulls = [r.get("full_examples", dataset.get(s)) for r, s in zip(records, as_list(split))]
        scored.add(None if None in counts else sum(counts))
        full.add(None if None in fulls else sum(fulls))
    if len(scored) != 1 or len(full) != 1:  # no run, or runs that disagree: no single count to state
        return None, None
    return scored.pop(), full.pop()


def one_class_seeds(scored: list[tuple[Run, float]], column: dict, whole_split: bool, dataset: dict) -> dict[str, list[int]]:
    """Why a seed's number looks like a one-class predictor -> the seeds: from its predictions where
    recorded, otherwise inferred from the score (the text says "probably" and how)."""
    found: dict[str, list[int]] = {}
    for run, value in scored:
        text = (one_class_from_predictions(run.predictions, column["split"]) if run.predictions is not None
                else one_class_from_score(value, column, whole_split, dataset))  # fmt: skip
        if text:
            found.setdefault(text, []).append(run.seed)
    return found


def one_class_from_predictions(predictions: dict, split) -> str | None:
    """"one class (k) for all N examples" or "a constant score", when every split of the column is."""
    found = [predictions.get(s) for s in as_list(split)]
    if any(p is None for p in found):
        return None
    distinct = {v for p in found for v in p["prediction"]}
    n = sum(len(p["prediction"]) for p in found)
    if len(distinct) != 1:
        return None
    (value,) = distinct
    kind = f"class {value}" if isinstance(value, int) else f"the constant score {value}"
    return f"predicts {kind} for all {n:,} examples (from its recorded predictions)"


SAME = 1e-6  # a recorded metric is a float32 fraction: equal to a rate within this


def one_class_from_score(value: float, column: dict, whole_split: bool, dataset: dict) -> str | None:
    """What a score alone says about a one-class predictor (runs without predictions): Matthews
    exactly 0; accuracy equal to a label's share, or F1 equal to always predicting the positive
    label, of the whole split scored (label counts from paper.yaml's ``datasets``)."""
    inferred = "inferred from the score, no predictions recorded"
    if column["metric"] == "matthews" and value == 0.0:
        return f"probably one class (Matthews exactly 0.0, as a constant prediction gives; {inferred})"
    split = column["split"]
    counts = (dataset.get("classes") or {}).get(split) if isinstance(split, str) and whole_split else None
    if not counts:
        return None
    total = sum(counts)
    if column["metric"] == "accuracy":
        for label, count in enumerate(counts):
            if abs(value - count / total) < SAME:
                return (f"probably one class (accuracy {100 * count / total:.1f} = the share of label {label} in "
                        f"{split}, {count} of {total}; {inferred})")  # fmt: skip
    if column["metric"] == "f1" and len(counts) == 2 and abs(value - 2 * counts[1] / (counts[1] + total)) < SAME:
        return (f"probably one class (F1 {100 * value:.1f} = that of predicting label 1 for all {total} examples; "
                f"{inferred})")  # fmt: skip
    return None


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






def paper_rows(spec: dict) -> dict[str, dict]:
    """variant -> {"label", "values": {column label: paper value}}; Tables 2-4 have one row, "full"."""
    if "rows" in spec:
        return {r["variant"]: {"label": f"paper: {r['label']}", "values": dict(r["values"])} for r in spec["rows"]}
    return {"full": {"label": "paper (GPT-1)", "values": {c["label"]: c["paper"] for c in spec["columns"]}}}


def build_table(table_id: str, spec: dict, runs: dict, previous_best: list[dict], datasets: dict) -> dict:
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
            run_cell(table_id, c, variant, runs.get((table_id, c["task"], variant), []), values.get(c["label"]),
                     datasets.get(c["task"]))
            for c in spec["columns"] if c.get("task")
        ]  # fmt: skip
        by_label = {c["column"]: c for c in task_cells}
        for column in spec["columns"]:
            cell = by_label.get(column["label"]) or aggregate_cell(table_id, column, variant, task_cells, values)
            table["cells"].append(cell)
    return table


def split_summary(tables: dict, built: list[dict]) -> list[str]:
    """One line per (our split, the paper's split): which columns compare what. The paper's own
    split is "the same split" only where our cells scored all of it."""
    groups: dict[tuple, dict[tuple, str]] = {}
    cells = [c for t in built for c in t["cells"] if c["task"] and c["n"]]
    for spec in tables.values():
        for c in spec["columns"]:
            if c.get("task"):
                same = ""
                if c["same_split_as_paper"]:
                    scored = {(x["examples"], x["split_examples"]) for x in cells
                              if (x["task"], x["split"], x["metric"]) == (c["task"], c["split"], c["metric"])}  # fmt: skip
                    same = " (" + "; ".join([*map(same_split_text, sorted(scored, key=str))] or ["the same split"]) + ")"
                key = (not c["same_split_as_paper"], split_text(c["split"]), c["paper_split"], same)
                groups.setdefault(key, {}).setdefault((c["task"], split_text(c["split"]), c["metric"]), c["label"])
    return [
        f"ours {ours} vs paper {theirs}{same}: {', '.join(labels.values())}"
        for (_, ours, theirs, same), labels in sorted(groups.items())
    ]


def subset_text(examples: int | None, split_examples: int | None) -> str:
    """How much of its split a cell scored: "all 277" / "a random subset of 1,000 of 1,871"."""
    if examples is None:
        return "examples scored not recorded"
    if split_examples is None:
        return f"{examples:,} examples (the split's full size not recorded)"
    if examples == split_examples:
        return f"all {examples:,}"
    return f"a random subset of {examples:,} of {split_examples:,}"


def same_split_text(counts: tuple[int | None, int | None]) -> str:
    """The paper's own split, as far as our cells scored it."""
    examples, split_examples = counts
    if examples is not None and examples == split_examples:
        return "the same split"
    if examples is None:
        return "the paper's split, but how many of its examples were scored is not recorded"
    return f"the paper's split, but {subset_text(examples, split_examples)} of its examples: not the same"


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
              "with_predictions": sum(run.predictions is not None for found in runs.values() for run in found),
              "stages": stage_wall_seconds(results_dir, list(tables))}  # fmt: skip
    datasets = paper["datasets"]
    built = [build_table(tid, spec, runs, paper["previous_best"], datasets["tasks"]) for tid, spec in tables.items()]
    figure2 = load_figure2(results_dir, paper["zero_shot_sota"])
    provenance = load_provenance(results_dir)
    return {
        "units": "percent (our fractions x 100; the paper's as printed)",
        "numbers": "median over seeds of each run's selected epoch",
        "provenance": provenance,
        "runs": counts,
        "paper_pretraining": paper["pretraining"],
        "splits": split_summary(tables, built),
        "tables": built,
        "figure2": figure2,
        "claims": check_claims(built, figure2, table5_predictions(runs, tables.get("table5_ablations")), datasets),
        "pretrain_curve": curve_summary(curves.get("transformer")),
        "pretrain_curve_lstm": curve_summary(curves.get("lstm")),
        "pretrain_curve_bert": curve_summary(curves.get("bert")),
        "encoder_comparison": encoder_comparison(provenance, runs),
    }


def table5_predictions(runs: dict[tuple[str, str, str], list[Run]], spec: dict | None) -> dict:
    """(variant, column label) -> {seed: that run's predictions}, for the Table 5 runs that recorded them."""
    found = {}
    for (table_id, task, variant), group in runs.items():
        for column in (spec or {}).get("columns", []) if table_id == "table5_ablations" else []:
            if column.get("task") == task:
                recorded = {r.seed: r.predictions for r in group if r.data["status"] == "done" and r.predictions}
                if recorded:
                    found[variant, column["label"]] = recorded
    return found


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


