"""The report's figures (matplotlib's Agg canvas, default style, no Software/date metadata:
reproducible PNGs).

Stage 4 of the report.
"""

from __future__ import annotations

import io

import matplotlib.style
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from gptbench.suite.report.tables import VARIANT_LABELS
from gptbench.suite.report.write import ours_label

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


