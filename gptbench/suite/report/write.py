"""The leaderboard's views: document blocks rendered to Markdown and HTML, and the CSV.

Stage 3 of the report.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
from dataclasses import dataclass

from gptbench.suite.claims import FIGURE2_RULE, TABLE5_RULE
from gptbench.suite.report.read import STATUSES, split_text
from gptbench.suite.report.tables import VARIANT_LABELS, fmt, subset_text

NOT_RUN_YET = "not run yet (the analysis sweeps fill this)"
MINUS = "\u2212"
# A cell's flags: why its number is not a clean held-out score. The footnotes say which cell.
FLAGS = {
    "†": "a split was substituted",
    "‡": "selected on the reported split (model selection saw these numbers, so they are optimistic)",
    "§": "trained on the reported split",
    "∅": "a one-class predictor: a seed predicts one class (or a constant score) for every example, from its "
         "recorded predictions, or inferred from its score (\"probably\")",
}
PROBLEM_TAGS = {"not_run": "not run", "unavailable": "data absent", "failed": "run failed", "no_metric": "not scored"}
CSV_FIELDS = ("table", "variant", "column", "task", "split", "metric", "status", "n", "seeds", "train_examples",
              "examples", "split_examples", "median", "min", "max", "last_epoch_median", "paper", "diff", "paper_split",
              "same_split_as_paper", "selection", "flags", "note")  # fmt: skip






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
                   "wall_seconds", "git_commit", "machine", "software", "gpu_busy")  # fmt: skip


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
    if isinstance(p.get("software"), dict):
        lines.append("software: " + software_line(p["software"]))
    if isinstance(p.get("gpu_busy"), dict):
        lines.append("GPU busy while the fine-tunes ran (nvidia-smi's utilization.gpu, sampled): " + ", ".join(
            f"{sweep} {100 * b['busy']:.0f}% of {fmt_seconds(b['seconds'])} ({b['jobs']} runs at a time)"
            for sweep, b in p["gpu_busy"].items()))  # fmt: skip
    return lines + fmt_extras(p, PROVENANCE_KEYS)


def software_line(s: dict) -> str:
    """torch, CUDA, cuDNN and the GPUs, e.g. 'torch 2.13.0, CUDA 12.8, cuDNN 91002, GPU NVIDIA H200'."""
    gpus = s.get("gpus") or []
    parts = [f"torch {s.get('torch')}", f"CUDA {s.get('cuda') or 'none (a CPU build)'}"]
    parts += [f"cuDNN {s['cudnn']}"] if s.get("cudnn") else []
    return ", ".join(parts + [f"GPU {', '.join(gpus)}" if gpus else "no GPU"])


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



def ours_label(variant: str) -> str:
    return f"ours ({VARIANT_LABELS.get(variant, variant)})"



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
                ", ".join(c["selection"]),
                split_text(c["split"]) + (f" ({subset_text(c['examples'], c['split_examples'])})" if c["n"] else "")
                if c["split"] else "",
                c["paper_split"] + (" (same split)" if c["same_split_as_paper"] else ""), trained_on(c), seeds_text(c),
                cell_note(c)]
               for c in table["cells"] if c["status"] != "not_run"]  # fmt: skip
    header = ["column", "row", "ours", "last epoch", "Δ", "selection", "our split", "paper split", "trained on", "seeds",
              "notes"]  # fmt: skip
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


NO_PREDICTIONS = ("No run here recorded per-example predictions (they are recorded since issue #25; these runs are "
                  "older, and re-scoring needs their checkpoints, which a results directory does not hold), so every "
                  "interval is over seeds only, and one-class cells are inferred from their scores.")  # fmt: skip


def claims_blocks(claims: list[dict], with_predictions: int = 0) -> list:
    """The paper's claims beside what our numbers show (see gptbench.suite.claims)."""
    rows = [[c["claim"], c["verdict"], c["evidence"]] for c in claims]
    return [
        Heading(2, "The paper's claims, checked"),
        Para("Each claim of the paper's analysis (Section 5) against the numbers above: shown, partly, not shown, "
             "or not tested (its numbers, or any interval on them, are not here). " + TABLE5_RULE + " " + FIGURE2_RULE
             + " A small model can still show or hide an effect, so read each verdict with the preset's scale."
             + ("" if with_predictions else " " + NO_PREDICTIONS)),
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


def scale_cell_text(cell: dict | None) -> str:
    """A cell at one scale, with how much of its split it scored: "66.7, all 872"."""
    if cell is None:
        return "— (no such cell at this scale)"
    if cell["status"] == "aggregate" or not cell["n"]:
        return cell_text(cell)
    return f"{cell_text(cell)}, {subset_text(cell['examples'], cell['split_examples'])}"


def network_text(network: dict | None) -> str:
    """A pre-trained network at one scale: parameters, tokens seen, steps, validation perplexity."""
    if network is None:
        return "—"

    def count(key: str, unit: str) -> str:
        return f"{unit} not recorded" if network[key] is None else f"{network[key]:,} {unit}"

    parts = [count("parameters", "parameters"), count("tokens_seen", "tokens")]
    if network["steps"] is not None:
        parts.append(f"{network['steps']:,} steps")
    if network["val_ppl"] is not None:
        parts.append(f"validation perplexity {network['val_ppl']:.1f}")
    return ", ".join(parts)


def scales_blocks(comparison: dict, paper_pretraining: dict) -> list:
    """The section "Scales": each scale's pre-training, every cell at every scale beside the
    paper's, and each claim's verdict at every scale."""
    names = [s["name"] for s in comparison["scales"]]
    summary = [[s["name"], s["dir"], *(network_text(s["networks"].get(k)) for k in ("transformer", "lstm", "bert")),
                str(s["runs"]), s["machine"] or "not recorded"] for s in comparison["scales"]]  # fmt: skip
    paper = (f"{paper_pretraining['parameters']:,} parameters, tokens not recorded in results/paper.yaml, validation "
             f"perplexity {paper_pretraining['perplexity']} ({paper_pretraining['perplexity_unit']}, on "
             f"{paper_pretraining['corpus']})")  # fmt: skip
    summary.append(["paper (GPT-1)", "", paper, "", "", "", ""])
    blocks = [
        Heading(2, "Scales"),
        Para(f"The same suite at {len(names)} scales ({', '.join(names)}; the first is this directory's), each "
             "scale's numbers and verdicts computed from its own directory exactly as its own report computes them. "
             "Pre-training per scale (the pre-training tokens are those the network saw; validation perplexities "
             "of different tokenizers and corpora are not comparable):"),
        Table(["scale", "directory", "Transformer", "LSTM (Table 5)", "BERT-style encoder", "fine-tuning runs",
               "machine"], summary),
        Para("Every cell at every scale: as in the tables below (median over seeds, percent, (min–max, n=seeds), "
             "flags), then how much of the split it scored; the split is the row's. The paper's numbers as printed."),
    ]  # fmt: skip
    titles = list(dict.fromkeys(row["title"] for row in comparison["rows"]))
    for title in titles:
        rows = [row for row in comparison["rows"] if row["title"] == title]
        blocks += [Heading(3, title), Table(
            ["row", "column", "our split", *names, "paper", "paper split"],
            [[ours_label(r["variant"]), r["column"], scale_split(r), *map(scale_cell_text, r["cells"]), fmt(r["paper"]),
              r["paper_split"]] for r in rows])]  # fmt: skip
    claims = [[c["claim"], *(v or "—" for v in c["verdicts"]), ", ".join(c["shown_at"]) or "none"]
              for c in comparison["claims"]]  # fmt: skip
    blocks += [Heading(3, "The paper's claims at each scale"),
               Para("Each claim's verdict (shown, partly, not shown, not tested; the rules are under \"The paper's "
                    "claims, checked\") at each scale, and the scales at which it shows."),
               Table(["claim", *names, "shown at"], claims)]  # fmt: skip
    return blocks


def scale_split(row: dict) -> str:
    """The row's split (every scale reads the same column spec), or "" for an average column."""
    split = next((c["split"] for c in row["cells"] if c is not None), None)
    return split_text(split) if split else ""


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
    if "scales" in board:
        blocks += scales_blocks(board["scales"], board["paper_pretraining"])
    for table in board["tables"]:
        blocks += table_blocks(table, figures, board["encoder_comparison"])
    blocks += figure2_blocks(board["figure2"], figures, board["encoder_comparison"] is not None)
    blocks += claims_blocks(board["claims"], board["runs"]["with_predictions"])
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


def trained_on(cell: dict) -> str:
    """The training examples of a cell's runs (their median; a subset where the preset cuts one)."""
    return f"{cell['train_examples']:,} examples" if cell.get("train_examples") else ""


def seeds_text(cell: dict) -> str:
    """The fine-tuning seeds that scored a cell."""
    return ", ".join(map(str, cell.get("seeds") or []))


def csv_row(cell: dict) -> dict:
    """A cell as a CSV row: lists joined, the split as the report writes it, the note spelled out."""
    row = {k: "" if cell.get(k) is None else cell[k] for k in CSV_FIELDS}
    return row | {
        "split": split_text(cell["split"]) if cell["split"] else "",
        "seeds": ";".join(map(str, cell["seeds"])), "selection": ";".join(cell["selection"]),
        "flags": "; ".join(f"{s} {t}" for s, texts in cell["flags"].items() for t in texts),
        "note": cell_note(cell),
    }  # fmt: skip


def format_leaderboard_csv(board: dict) -> str:
    """One row per cell of ours (task and average columns), in table, row and column order; with a
    scale comparison, one row per cell at each scale, scale by scale, a first column naming it."""
    buf = io.StringIO()
    comparison = board.get("scales")
    fields = CSV_FIELDS if comparison is None else ("scale", *CSV_FIELDS)
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    if comparison is None:
        writer.writerows(csv_row(c) for table in board["tables"] for c in table["cells"])
    else:
        for i, scale in enumerate(comparison["scales"]):
            writer.writerows({"scale": scale["name"], **csv_row(r["cells"][i])}
                             for r in comparison["rows"] if r["cells"][i] is not None)  # fmt: skip
    return buf.getvalue()
