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
    predictions/<table>/<task>/<variant>/seed<N>.json
                           a run's per-example predictions on its reported splits, where recorded
                           (gptbench.training.finetune.write_predictions): the bootstrap over
                           examples and the one-class flags read them
    figure2.json           {"layers": [...], "zero_shot": [...], "notes": [...]}, see load_figure2
                           (written by gptbench.suite.figure2 from the Figure 2 sweeps' files)

Our metrics are fractions; every number shown, and every number in the JSON and CSV, is in percent
like the paper's. A cell is the median over seeds; the claims' rules are in gptbench.suite.claims. The same inputs give byte-identical Markdown,
JSON and CSV: nothing depends on the clock or on the order a directory lists its files in.

The stages are modules: ``read`` (the files), ``tables`` (cells, tables, claims: leaderboard.json),
``scales`` (other results directories' leaderboards beside this one), ``write`` (Markdown, HTML, CSV)
and ``figures`` (PNGs).
"""

from __future__ import annotations

import json
from pathlib import Path

from gptbench.io import atomic_write_bytes, atomic_write_text
from gptbench.suite.paper import load_paper_numbers
from gptbench.suite.report.figures import render_figures
from gptbench.suite.report.read import CURVE_FILES, load_figure2, load_pretrain_curve, stage_wall_seconds
from gptbench.suite.report.scales import scale_comparison
from gptbench.suite.report.tables import build_leaderboard
from gptbench.suite.report.write import (
    format_leaderboard_csv,
    format_leaderboard_html,
    format_leaderboard_markdown,
    leaderboard_blocks,
    provenance_lines,
)

__all__ = ["write_report", "build_leaderboard", "load_figure2", "stage_wall_seconds", "provenance_lines"]



def read_leaderboard(results_dir: Path, paper: dict) -> tuple[dict, dict[str, list[dict] | None]]:
    """A results directory's leaderboard (``build_leaderboard``) and its pre-training curves."""
    if not results_dir.is_dir():
        raise ValueError(f"{results_dir}: results directory not found")
    curves = {arch: load_pretrain_curve(results_dir, name) for arch, name in CURVE_FILES.items()}
    return build_leaderboard(results_dir, paper, curves), curves


def write_report(results_dir: str | Path, paper: dict | None = None, scales: list[str | Path] = ()) -> list[Path]:
    """Write the leaderboard (md, html, json, csv) and its figures into ``results_dir``.

    Reads only result files (see the module docstring) and ``paper`` (default: results/paper.yaml).
    ``scales``: other results directories (e.g. the same suite run at another scale), each read the
    same way, whose numbers and claims' verdicts the report's section "Scales" shows beside this
    directory's and the paper's (see ``scales``); without them there is no such section.
    Returns the paths written, sorted. Raises ValueError naming the file for a missing directory, a
    run file that is not JSON or lacks "status", or any other malformed input, and naming the
    directory of a scale that is missing or has no fine-tuning runs.
    """
    results_dir = Path(results_dir)
    paper = paper or load_paper_numbers()
    board, curves = read_leaderboard(results_dir, paper)
    if scales:
        others = [(Path(d), read_leaderboard(Path(d), paper)[0]) for d in scales]
        board["scales"] = scale_comparison([(results_dir, board), *others], results_dir)
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
