"""The paper's qualitative claims (Section 5), each checked against our numbers.

Reads the leaderboard data that :mod:`gptbench.suite.report` builds (Table 5's cells, Figure 2's
points), never a run directory. Each claim gets a verdict and the numbers behind it:

- ``shown``: every comparison present agrees with the paper;
- ``partly``: some do (the evidence says which);
- ``not shown``: none does;
- ``not tested``: the numbers it needs are not here (not run, or data absent).

Scores are percent, as in the report; a comparison needs both sides (missing cells are skipped
and the evidence says how many columns there were).
"""

from __future__ import annotations

import statistics

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


def verdict(agree: int, total: int) -> str:
    if total == 0:
        return "not tested"
    return "shown" if agree == total else ("partly" if agree else "not shown")


def _fmt(x: float) -> str:
    return f"{x:.1f}"


def _signed(x: float) -> str:
    return f"{x:+.1f}".replace("-", "\u2212")


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


def _overlap(a: dict, b: dict) -> bool:
    """Both cells scored over several seeds and their min-max ranges overlap: the difference of the
    medians is within the seeds' spread."""
    spread = all((c.get("n") or 0) >= 2 and c.get("min") is not None and c.get("max") is not None for c in (a, b))
    return spread and a["min"] <= b["max"] and b["min"] <= a["max"]


def _columns_line(pairs, names: tuple[str, str]) -> str:
    return "; ".join(f"{a['column']} {_fmt(a['median'])} vs {_fmt(b['median'])} ({_signed(a['median'] - b['median'])}"
                     + (", within the seeds' spread" if _overlap(a, b) else "") + ")"
                     for a, b in pairs) + f" ({names[0]} vs {names[1]})"  # fmt: skip


def check_pretraining(table5: dict | None) -> dict:
    pairs = _table5_pairs(table5, "no_pretraining")
    wins = sum(a["median"] > b["median"] for a, b in pairs)
    evidence = (f"full beats no pre-training on {wins} of {len(pairs)} columns present: "
                + _columns_line(pairs, ("full", "no pre-training"))) if pairs else "no column has both rows here"  # fmt: skip
    return {"verdict": verdict(wins, len(pairs)), "evidence": evidence}


def check_lstm(table5: dict | None) -> dict:
    pairs = _table5_pairs(table5, "lstm")
    if not pairs:
        return {"verdict": "not tested", "evidence": "no column has both the full and the LSTM row here"}
    full, lstm = statistics.mean(a["median"] for a, _ in pairs), statistics.mean(b["median"] for _, b in pairs)
    wins = sum(a["median"] > b["median"] for a, b in pairs)
    evidence = (f"mean over the {len(pairs)} columns present for both: Transformer {_fmt(full)} vs LSTM {_fmt(lstm)} "
                f"({_signed(full - lstm)}); the Transformer is ahead on {wins} of {len(pairs)}: "
                + _columns_line(pairs, ("Transformer", "LSTM")))  # fmt: skip
    return {"verdict": "shown" if full > lstm else "not shown", "evidence": evidence}


def check_aux_lm(table5: dict | None) -> dict:
    """The paper: the auxiliary objective helps the larger datasets (NLI, QQP) and not the smaller
    ones. Tasks are split at the median training-set size of the columns present."""
    pairs = _table5_pairs(table5, "no_aux_lm")
    if not pairs:
        return {"verdict": "not tested", "evidence": "no column has both the full and the no-aux-LM row here"}
    sized = sorted(pairs, key=lambda p: p[0].get("train_examples") or 0)
    per_task = "; ".join(f"{a['column']} ({a.get('train_examples') or '?'} training examples) "
                         f"{_signed(a['median'] - b['median'])}" for a, b in sized)  # fmt: skip
    sizes = [a.get("train_examples") for a, _ in sized]
    if None in sizes or len(set(sizes)) < 2:
        return {"verdict": "not tested", "evidence": f"effect of the aux LM (λ 0.5 − λ 0), by task: {per_task}; every task "
                "trained on the same number of examples here, so larger and smaller datasets cannot be told apart"}
    cut = statistics.median(sizes)
    larger = [(a, b) for a, b in sized if a["train_examples"] > cut]
    smaller = [(a, b) for a, b in sized if a["train_examples"] <= cut]
    agree = sum(a["median"] > b["median"] for a, b in larger) + sum(a["median"] <= b["median"] for a, b in smaller)
    evidence = (f"effect of the aux LM (λ 0.5 − λ 0), smallest training set first: {per_task}; it helps "
                f"{sum(a['median'] > b['median'] for a, b in larger)} of the {len(larger)} tasks above the median size "
                f"({cut:,.0f}) and {sum(a['median'] > b['median'] for a, b in smaller)} of the {len(smaller)} at or below it")  # fmt: skip
    return {"verdict": verdict(agree, len(sized)), "evidence": evidence}


def check_probe_floor(table5: dict | None) -> dict:
    """A fine-tune below the linear probe on its own network's frozen features is a defect of the
    fine-tuning recipe (settings for the model's scale), not a finding."""
    pairs = _table5_pairs(table5, "linear_probe")
    if not pairs:
        return {"verdict": "not tested", "evidence": "no column has both the full and the linear-probe row here"}
    ok = sum(a["median"] >= b["median"] for a, b in pairs)
    below = [a["column"] for a, b in pairs if a["median"] < b["median"]]
    evidence = (f"the full fine-tune is at or above its probe on {ok} of {len(pairs)} columns: "
                + _columns_line(pairs, ("fine-tune", "probe"))
                + (f"; below the probe on {', '.join(below)}: the fine-tuning settings, not the model, limit those"
                   if below else ""))  # fmt: skip
    return {"verdict": verdict(ok, len(pairs)), "evidence": evidence}


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
    return {"verdict": verdict(agree, len(curves)), "evidence": "; ".join(lines)}


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
    return {"verdict": verdict(agree, checks), "evidence": text}


def check_claims(tables: list[dict], figure2: dict | None) -> list[dict]:
    """[{"id", "claim", "verdict", "evidence"}] for the paper's five claims, in the paper's order, then
    our own floor check (fine-tunes against their linear probes)."""
    table5 = next((t for t in tables if t["id"] == "table5_ablations"), None)
    checks = {"pretraining": check_pretraining(table5), "lstm": check_lstm(table5), "aux_lm": check_aux_lm(table5),
              "layers": check_layers(figure2), "zero_shot": check_zero_shot(figure2),
              "probe_floor": check_probe_floor(table5)}  # fmt: skip
    return [{"id": cid, "claim": text, **checks[cid]} for cid, text in CLAIMS]
