"""The paper's qualitative claims (Section 5), each checked against our numbers.

Reads the leaderboard data that :mod:`gptbench.suite.report` builds (Table 5's cells with their
per-seed values, the runs' recorded predictions, Figure 2's points), never a run directory. Each
claim gets a verdict (shown, partly, not shown, not tested) and the numbers behind it, with their
intervals: the rules are TABLE5_RULE and FIGURE2_RULE, which the report prints. A difference of
medians is not evidence by itself: an effect counts only where its interval excludes 0.

Scores are percent, as in the report; a comparison needs both rows (missing cells are skipped
and the evidence says how many columns there were).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

import numpy as np

from gptbench.suite.intervals import (
    ColumnPredictions,
    Interval,
    SplitPredictions,
    bootstrap_effects,
    mean_seed_interval,
    percentile_interval,
    seed_interval,
)

CLAIMS = (
    ("pretraining", "Pre-training helps every task (Table 5: full vs no pre-training)"),
    ("lstm", "The Transformer beats the LSTM on average under the same framework (Table 5: full vs LSTM)"),
    ("aux_lm", "The auxiliary LM objective helps the larger datasets, not the smaller ones (Table 5: full vs no aux LM)"),
    ("layers", "Each transferred layer helps (Figure 2 left: the score grows with the blocks transferred)"),
    ("zero_shot", "Zero-shot performance rises steadily with pre-training, more steadily for the Transformer "
                  "than for the LSTM (Figure 2 right)"),
    ("probe_floor", "Ours, not the paper's: every fine-tune scores at least its linear probe, the same pre-trained "
                    "network frozen with only the task head trained (Table 5: full vs linear probe)"),
)  # fmt: skip


# The rules, as the report states them.
TABLE5_RULE = (
    "Table 5 claims compare two rows column by column, paired: the effect is the mean over the seeds both "
    "rows ran of (row − other row), with a 95% t interval over those seeds (3 seeds give a wide one: the t "
    "quantile is 4.30) and, where both rows recorded per-example predictions, a 95% paired bootstrap over the "
    "evaluation examples (1,000 resamples, seed 0, the same examples for both rows). A column is for the paper "
    "when every interval it has excludes 0 in the paper's direction, against it when every one excludes 0 the "
    "other way, and otherwise no evidence either way (an interval including 0 is not a win; one seed without "
    "predictions has no interval). The mean effect over the columns has the same intervals (columns "
    "independent). Shown: for the paper on most columns present, against it on none, and the mean effect for "
    "it. Partly: for it on at least one column. Not shown: on none. Not tested: no column has both rows, or "
    "none has an interval."
)  # fmt: skip
FIGURE2_RULE = (
    "Figure 2's points are one seed each, with no interval: a trend among them cannot be told from seed-to-seed "
    "noise, so those verdicts are at most partly."
)  # fmt: skip

FOR, AGAINST, NEITHER = "for", "against", "no evidence either way"


def verdict(agree: int, total: int) -> str:
    if total == 0:
        return "not tested"
    return "shown" if agree == total else ("partly" if agree else "not shown")


def _fmt(x: float) -> str:
    return f"{x:.1f}"


def _signed(x: float) -> str:
    return f"{x:+.1f}".replace("-", "\u2212")


def _interval(ci: Interval) -> str:
    return f"[{_signed(ci[0])}, {_signed(ci[1])}]"


def ranks(xs: list[float]) -> list[float]:
    """Ranks from 0, ties sharing their mean rank."""
    order = sorted(range(len(xs)), key=xs.__getitem__)
    out = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2
        i = j + 1
    return out


def spearman(xs: list[float], ys: list[float]) -> float | None:
    """Spearman's rank correlation; None when either side is constant or has < 3 points."""
    if len(xs) < 3 or len(set(xs)) < 2 or len(set(ys)) < 2:
        return None
    return statistics.correlation(ranks(xs), ranks(ys))


def _table5_pairs(table5: dict | None, variant: str) -> list[tuple[dict, dict]]:
    """(full cell, ``variant`` cell) for every task column where both have a number."""
    if not table5 or table5.get("status") != "ok":
        return []
    cells = {(c["variant"], c["column"]): c for c in table5["cells"] if c["task"]}
    return [(cells["full", label], cells[variant, label]) for label in table5["columns"]
            if cells.get(("full", label), {}).get("median") is not None
            and cells.get((variant, label), {}).get("median") is not None]  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Paired effects with their intervals


@dataclass
class Effect:
    """Row a − row b on one column, paired over the seeds both ran."""

    a: dict  # the cells
    b: dict
    differences: list[float]  # per common seed, in points
    seed_ci: Interval | None = None
    example_ci: Interval | None = None
    samples: np.ndarray | None = field(default=None, repr=False)  # bootstrap effects, when predictions

    @property
    def value(self) -> float | None:
        return statistics.mean(self.differences) if self.differences else None

    @property
    def side(self) -> str:
        return side_of([ci for ci in (self.seed_ci, self.example_ci) if ci])


def side_of(intervals: list[Interval]) -> str:
    """For the paper (every interval above 0), against it (every one below), or neither."""
    if intervals and all(lo > 0 for lo, _ in intervals):
        return FOR
    if intervals and all(hi < 0 for _, hi in intervals):
        return AGAINST
    return NEITHER


def column_predictions(a: dict, b: dict, seeds: list[int], predictions: dict) -> ColumnPredictions | None:
    """Both rows' recorded predictions on the column's splits for every common seed, or None if any
    is missing (or the rows were scored on different examples: no pairing)."""
    if "/" in a["metric"]:  # a sub-population's metric: not recorded per example yet
        return None
    rows = [predictions.get((c["variant"], c["column"])) or {} for c in (a, b)]
    splits = []
    for split in [a["split"]] if isinstance(a["split"], str) else a["split"]:
        found = [[(row.get(seed) or {}).get(split) for seed in seeds] for row in rows]
        if any(p is None for preds in found for p in preds):
            return None
        gold = np.asarray(found[0][0]["gold"])
        if any(not np.array_equal(np.asarray(p["gold"]), gold) for preds in found for p in preds):
            return None
        splits.append(SplitPredictions(gold, *([np.asarray(p["prediction"]) for p in preds] for preds in found)))
    return ColumnPredictions(a["metric"], splits)


def paired_effects(pairs: list[tuple[dict, dict]], predictions: dict) -> list[Effect]:
    effects = []
    for a, b in pairs:
        seeds = [s for s in a["seeds"] if s in b["seeds"]]
        values = [{s: v for s, v in zip(c["seeds"], c["values"])} for c in (a, b)]
        differences = [values[0][s] - values[1][s] for s in seeds]
        effects.append(Effect(a, b, differences, seed_interval(differences)))
    columns = [(e, column_predictions(e.a, e.b, [s for s in e.a["seeds"] if s in e.b["seeds"]], predictions))
               for e in effects if e.differences]  # fmt: skip
    columns = [(e, c) for e, c in columns if c is not None]
    if columns:
        samples = bootstrap_effects([c for _, c in columns])
        for j, (e, _) in enumerate(columns):
            e.samples, e.example_ci = samples[:, j], percentile_interval(samples[:, j])
    return effects


@dataclass
class MeanEffect:
    value: float
    seed_ci: Interval | None
    example_ci: Interval | None

    @property
    def side(self) -> str:
        return side_of([ci for ci in (self.seed_ci, self.example_ci) if ci])


def mean_effect(effects: list[Effect]) -> MeanEffect | None:
    paired = [e for e in effects if e.differences]
    if not paired:
        return None
    example_ci = None
    if all(e.samples is not None for e in paired):
        example_ci = percentile_interval(np.mean([e.samples for e in paired], axis=0))
    return MeanEffect(statistics.mean(e.value for e in paired), mean_seed_interval([e.differences for e in paired]),
                      example_ci)  # fmt: skip


def intervals_text(seed_ci: Interval | None, example_ci: Interval | None, n_seeds: int) -> str:
    parts = []
    if seed_ci:
        parts.append(f"95% over {n_seeds} seeds {_interval(seed_ci)}")
    if example_ci:
        parts.append(f"over examples {_interval(example_ci)}")
    return ", ".join(parts) if parts else ("no interval: 1 seed, no predictions" if n_seeds == 1 else "no interval")


def effect_detail(e: Effect) -> str:
    if not e.differences:
        return "no seed in common: not paired"
    return f"paired mean {_signed(e.value)}, {intervals_text(e.seed_ci, e.example_ci, len(e.differences))}: {e.side}"


def effect_text(e: Effect) -> str:
    return f"{e.a['column']} {_fmt(e.a['median'])} vs {_fmt(e.b['median'])} (medians; {effect_detail(e)})"


def mean_text(m: MeanEffect | None, effects: list[Effect]) -> str:
    if m is None:
        return "no mean effect"
    if m.seed_ci is None and m.example_ci is None:
        one = [e.a["column"] for e in effects if len(e.differences) == 1]
        why = f" ({', '.join(one)}: 1 seed, no predictions)" if one else ""
        return f"mean effect {_signed(m.value)}, no interval{why}: {m.side}"
    parts = ([f"95% over seeds {_interval(m.seed_ci)}"] if m.seed_ci else []) + (
        [f"over examples {_interval(m.example_ci)}"] if m.example_ci else [])
    return f"mean effect {_signed(m.value)}, {', '.join(parts)}: {m.side}"


def judge(effects: list[Effect], mean: MeanEffect | None) -> str:
    """The Table 5 rule (TABLE5_RULE) on effects whose paper direction is positive."""
    sides = [e.side for e in effects]
    if not effects:
        return "not tested"
    if all(e.seed_ci is None and e.example_ci is None for e in effects):
        return "not tested"
    if sides.count(FOR) > len(effects) / 2 and AGAINST not in sides and mean is not None and mean.side == FOR:
        return "shown"
    return "partly" if FOR in sides else "not shown"


def tally(effects: list[Effect]) -> str:
    sides = [e.side for e in effects]
    return (f"for the paper on {sides.count(FOR)} of {len(effects)} columns present, against it on "
            f"{sides.count(AGAINST)}, no evidence either way on {sides.count(NEITHER)}")  # fmt: skip


def check_paired(table5: dict | None, variant: str, predictions: dict, names: str, missing: str) -> tuple[dict, list[Effect]]:
    pairs = _table5_pairs(table5, variant)
    if not pairs:
        return {"verdict": "not tested", "evidence": missing}, []
    effects = paired_effects(pairs, predictions)
    mean = mean_effect(effects)
    evidence = f"{names}: {tally(effects)}; {mean_text(mean, effects)}. " + "; ".join(map(effect_text, effects))
    verdict_ = judge(effects, mean)
    if verdict_ == "not tested":
        evidence += ". No column has an interval (one seed, no per-example predictions): the noise is unknown"
    return {"verdict": verdict_, "evidence": evidence}, effects


def check_pretraining(table5: dict | None, predictions: dict | None = None) -> dict:
    return check_paired(table5, "no_pretraining", predictions or {}, "full − no pre-training",
                        "no column has both rows here")[0]  # fmt: skip


def check_lstm(table5: dict | None, predictions: dict | None = None) -> dict:
    return check_paired(table5, "lstm", predictions or {}, "Transformer − LSTM",
                        "no column has both the full and the LSTM row here")[0]  # fmt: skip


def check_probe_floor(table5: dict | None, predictions: dict | None = None) -> dict:
    """A fine-tune below the linear probe on its own network's frozen features is a defect of the
    fine-tuning recipe (settings for the model's scale), not a finding."""
    result, effects = check_paired(table5, "linear_probe", predictions or {}, "fine-tune − probe",
                                   "no column has both the full and the linear-probe row here")  # fmt: skip
    below = [e.a["column"] for e in effects if e.side == AGAINST]
    if below:
        result["evidence"] += (f"; below the probe beyond noise on {', '.join(below)}: the fine-tuning settings, "
                               "not the model, limit those")  # fmt: skip
    return result


def size_text(cell: dict, full: int | None) -> str:
    trained = cell.get("train_examples")
    return (f"{cell['column']} ({f'{full:,}' if full else '?'} training examples in full, trained on "
            f"{f'{trained:,}' if trained else 'an unrecorded number'})")  # fmt: skip


def check_aux_lm(table5: dict | None, predictions: dict | None = None, datasets: dict | None = None) -> dict:
    """The paper: the auxiliary objective helps the larger datasets (NLI, QQP) and not the smaller
    ones. Larger and smaller are the tasks' FULL training sets (paper.yaml's ``datasets``); the
    test needs the larger ones to have been trained on more examples than the smaller ones here."""
    pairs = _table5_pairs(table5, "no_aux_lm")
    if not pairs:
        return {"verdict": "not tested", "evidence": "no column has both the full and the no-aux-LM row here"}
    datasets = datasets or {}
    line, full = datasets.get("larger_from"), {a["task"]: (datasets.get("tasks", {}).get(a["task"]) or {}).get("train")
                                               for a, _ in pairs}  # fmt: skip
    effects = paired_effects(pairs, predictions or {})
    larger = [e for e in effects if line and full[e.a["task"]] and full[e.a["task"]] >= line]
    smaller = [e for e in effects if line and full[e.a["task"]] and full[e.a["task"]] < line]
    per_task = "; ".join(f"{size_text(e.a, full[e.a['task']])}: {effect_detail(e)}"
                         for e in sorted(effects, key=lambda e: full[e.a["task"]] or 0))  # fmt: skip
    evidence = f"effect of the aux LM (λ 0.5 − λ 0), larger datasets from {line:,} training examples in full: {per_task}"
    most_small = max((e.a.get("train_examples") or 0 for e in smaller), default=0)
    usable = [e for e in larger if (e.a.get("train_examples") or 0) > most_small]
    if not larger:
        return {"verdict": "not tested", "evidence": evidence + "; no larger dataset has both rows here"}
    if not usable:
        return {"verdict": "not tested", "evidence": evidence + (
            f"; every larger dataset here was trained on no more examples than a smaller one ({most_small:,}): the "
            "subsampling removes the contrast of dataset sizes the claim is about")}  # fmt: skip
    mean = mean_effect(usable)
    helps_small = [e.a["column"] for e in smaller if e.side == FOR]
    larger_verdict = judge(usable, mean)
    evidence += (f"; on the larger datasets trained on more examples than any smaller one "
                 f"({', '.join(e.a['column'] for e in usable)}): {tally(usable)}, {mean_text(mean, usable)}; "
                 f"it helps beyond noise on {len(helps_small)} of the {len(smaller)} smaller ones"
                 + (f" ({', '.join(helps_small)})" if helps_small else ""))  # fmt: skip
    if larger_verdict == "not tested":
        return {"verdict": "not tested", "evidence": evidence + ": no interval on the larger datasets"}
    if larger_verdict == "shown" and not helps_small:
        return {"verdict": "shown", "evidence": evidence}
    return {"verdict": "partly" if larger_verdict in ("shown", "partly") else "not shown", "evidence": evidence}


def check_layers(figure2: dict | None) -> dict:
    points = (figure2 or {}).get("layers") or []
    curves: dict[tuple[str, str], list[dict]] = {}
    for p in points:
        curves.setdefault((p["task"], p["split"]), []).append(p)
    if not curves:
        return {"verdict": "not tested", "evidence": "Figure 2 (left) has not been run"}
    lines, agree = [], 0
    for (task, split), pts in sorted(curves.items()):
        pts = sorted(pts, key=lambda p: p["n_layers"])
        steps = list(zip(pts, pts[1:]))
        ups = sum(b["score"] > a["score"] for a, b in steps)
        agree += bool(steps) and ups == len(steps)
        lines.append(f"{task} {split}: {_fmt(pts[0]['score'])} with {pts[0]['n_layers']} blocks → {_fmt(pts[-1]['score'])} "
                     f"with {pts[-1]['n_layers']}, rising at {ups} of {len(steps)} added blocks")  # fmt: skip
    seeds = max(p.get("seeds") or 1 for p in points)
    return one_seed_cap({"verdict": verdict(agree, len(curves)), "evidence": "; ".join(lines)}, seeds)


def one_seed_cap(result: dict, seeds: int) -> dict:
    """Figure 2 with one seed per point: no interval, so no trend is "shown" (FIGURE2_RULE)."""
    if seeds > 1:
        return result
    capped = "partly" if result["verdict"] == "shown" else result["verdict"]
    note = ("one seed per point, so no interval: the seed-to-seed noise (Table 5's seeds spread by several points) "
            "is not measured and a trend inside it cannot be told from noise" +
            ("; shown without that, partly with it" if capped != result["verdict"] else ""))  # fmt: skip
    return {"verdict": capped, "evidence": f"{result['evidence']}; {note}"}


def check_zero_shot(figure2: dict | None) -> dict:
    """Rises: Spearman's ρ between updates and the score > 0 for each task. More steadily: the
    Transformer's mean ρ over tasks above the LSTM's."""
    points = (figure2 or {}).get("zero_shot") or []
    curves: dict[tuple[str, str], list[dict]] = {}
    for p in points:
        curves.setdefault((p["model"], p["task"]), []).append(p)
    if not curves:
        return {"verdict": "not tested", "evidence": "Figure 2 (right) has not been run"}
    rho: dict[str, dict[str, float | None]] = {}
    for (model, task), pts in sorted(curves.items()):
        pts = sorted(pts, key=lambda p: p["step"])
        value = [p["normalised"] if p["normalised"] is not None else p["score"] for p in pts]
        rho.setdefault(model, {})[task] = spearman([p["step"] for p in pts], value)
    lines = [f"{model}: " + ", ".join(f"{task} ρ={'n/a' if r is None else f'{r:+.2f}'}" for task, r in sorted(rs.items()))
             for model, rs in sorted(rho.items())]  # fmt: skip
    transformer = [r for r in rho.get("transformer", {}).values() if r is not None]
    rises = sum(r > 0 for r in transformer)
    checks, agree = len(transformer), rises
    text = f"Spearman's ρ between pre-training updates and each score ({'; '.join(lines)}); the Transformer's rises on {rises} of {len(transformer)} tasks"
    lstm = [r for r in rho.get("lstm", {}).values() if r is not None]
    if transformer and lstm:
        steadier = statistics.mean(transformer) > statistics.mean(lstm)
        checks, agree = checks + 1, agree + steadier
        text += (f"; mean ρ Transformer {statistics.mean(transformer):+.2f} vs LSTM {statistics.mean(lstm):+.2f}"
                 f" ({'steadier' if steadier else 'not steadier'})")  # fmt: skip
    return one_seed_cap({"verdict": verdict(agree, checks), "evidence": text}, 1)  # one run per snapshot


def check_claims(tables: list[dict], figure2: dict | None, predictions: dict | None = None,
                 datasets: dict | None = None) -> list[dict]:  # fmt: skip
    """[{"id", "claim", "verdict", "evidence"}] for the paper's five claims, in the paper's order, then
    our own floor check (fine-tunes against their linear probes). ``predictions``: (variant, column)
    -> {seed: recorded predictions} of Table 5's runs; ``datasets``: paper.yaml's full sizes."""
    table5 = next((t for t in tables if t["id"] == "table5_ablations"), None)
    predictions = predictions or {}
    checks = {"pretraining": check_pretraining(table5, predictions), "lstm": check_lstm(table5, predictions),
              "aux_lm": check_aux_lm(table5, predictions, datasets), "layers": check_layers(figure2),
              "zero_shot": check_zero_shot(figure2), "probe_floor": check_probe_floor(table5, predictions)}  # fmt: skip
    return [{"id": cid, "claim": text, **checks[cid]} for cid, text in CLAIMS]
