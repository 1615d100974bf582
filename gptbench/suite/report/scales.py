"""The scale comparison: the leaderboards of several results directories (e.g. mini on a CPU, gpu,
...) cell by cell beside the paper's, with each scale's pre-training and the claims' verdicts.

Each directory's leaderboard is built exactly as its own report builds it (``tables``); this module
only lays them side by side. Stage 2 of the report, like ``tables``.
"""

from __future__ import annotations

import os
from pathlib import Path


def scale_name(results_dir: Path, board: dict) -> str:
    """A scale's name: its provenance's preset, else the directory's name."""
    return (board["provenance"] or {}).get("preset") or results_dir.name


def network_pretraining(provenance: dict, key: str, parameters: int | None) -> dict | None:
    """{"parameters", "tokens_seen", "steps", "val_ppl"} of one pre-trained network, as far as
    provenance.json records them; None when it records no such pre-training."""
    run = provenance.get(key)
    if not isinstance(run, dict):
        return None
    return {"parameters": parameters, **{k: run.get(k) for k in ("tokens_seen", "steps", "val_ppl")}}


def scale_summary(name: str, results_dir: Path, report_dir: Path, board: dict) -> dict:
    """What a scale is: its directory (relative to the report's, so the outputs do not depend on the
    working directory), machine, networks pre-trained and fine-tuning runs."""
    p = board["provenance"] or {}
    networks = {
        "transformer": network_pretraining(p, "pretrain", p.get("parameters")),
        "lstm": network_pretraining(p, "lstm_pretrain", (p.get("lstm_pretrain") or {}).get("parameters")),
        "bert": network_pretraining(p, "bert_pretrain", (p.get("bert_pretrain") or {}).get("parameters")),
    }
    return {"name": name, "dir": Path(os.path.relpath(results_dir, report_dir)).as_posix(),
            "machine": machine_text(p), "networks": {k: v for k, v in networks.items() if v is not None},
            "runs": board["runs"]["files"]}  # fmt: skip


def machine_text(provenance: dict) -> str | None:
    """The machine a scale ran on: provenance's CPU line, then its GPUs where it records any."""
    gpus = (provenance.get("software") or {}).get("gpus")
    machine = provenance.get("machine")
    return f"{machine or 'machine not recorded'}, GPU {', '.join(gpus)}" if gpus else machine


def scale_rows(boards: list[dict]) -> list[dict]:
    """One row per (table, variant, column) present at any scale, in the first scale's order, with
    each scale's cell (None where a scale has no such cell) and the paper's value (one paper.yaml
    for every scale)."""
    rows: dict[tuple[str, str, str], dict] = {}
    for i, board in enumerate(boards):
        for table in board["tables"]:
            for cell in table["cells"]:
                key = (table["id"], cell["variant"], cell["column"])
                row = rows.setdefault(key, {"table": table["id"], "title": table["title"], "variant": cell["variant"],
                                            "column": cell["column"], "paper": cell["paper"],
                                            "paper_split": cell["paper_split"], "cells": [None] * len(boards)})  # fmt: skip
                row["cells"][i] = cell
    return list(rows.values())


def claim_rows(boards: list[dict], names: list[str]) -> list[dict]:
    """Per claim: its verdict at each scale and the scales at which it shows."""
    verdicts: dict[str, dict] = {}
    for i, board in enumerate(boards):
        for claim in board["claims"]:
            row = verdicts.setdefault(claim["id"], {"id": claim["id"], "claim": claim["claim"],
                                                    "verdicts": [None] * len(boards)})  # fmt: skip
            row["verdicts"][i] = claim["verdict"]
    for row in verdicts.values():
        row["shown_at"] = [name for name, v in zip(names, row["verdicts"]) if v == "shown"]
    return list(verdicts.values())


def scale_comparison(scales: list[tuple[Path, dict]], report_dir: Path) -> dict:
    """The comparison of ``scales`` ([(results directory, its leaderboard)], the report's own first).
    Raises ValueError naming the directory of a scale without fine-tuning runs, and the two
    directories of scales that share a name."""
    names: dict[str, Path] = {}
    for results_dir, board in scales:
        if not board["runs"]["files"]:
            raise ValueError(f"{results_dir}: no fine-tuning run files (runs/<table>/<task>/<variant>/seed<N>.json), "
                             "so no leaderboard to compare at this scale")  # fmt: skip
        name = scale_name(results_dir, board)
        if name in names:
            raise ValueError(f"{results_dir}: its scale is named {name!r} (provenance.json's preset, else the "
                             f"directory's name), like {names[name]}'s; give each scale its own")  # fmt: skip
        names[name] = results_dir
    boards = [board for _, board in scales]
    return {
        "scales": [scale_summary(name, d, report_dir, b) for name, (d, b) in zip(names, scales)],
        "rows": scale_rows(boards),
        "claims": claim_rows(boards, list(names)),
    }
