"""The small, committed-size result files a report is made from: provenance and the pre-training
curve, exported from a run directory into ``results/<preset>/`` (the fine-tunes' status files are
written by the sweep). Nothing here trains or loads a model."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from gptbench.config import ExperimentConfig
from gptbench.io import atomic_write_json, atomic_write_text
from gptbench.provenance import git_commit, machine, software
from gptbench.run_identity import pretrain_dir

CURVE_TAGS = ("train/loss", "val/loss", "val/ppl")


def pretrain_curve(tb_dir: Path) -> list[dict]:
    """Rows {step, train_loss, val_loss, val_ppl} from the TensorBoard events of a pre-training
    (a resumed run's repeated steps keep their last value)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tb_dir), size_guidance={"scalars": 0})
    acc.Reload()
    rows: dict[int, dict] = {}
    for tag in CURVE_TAGS:
        if tag in acc.Tags()["scalars"]:
            for event in acc.Scalars(tag):
                rows.setdefault(event.step, {})[tag.replace("/", "_")] = event.value
    return [{"step": step, **rows[step]} for step in sorted(rows)]


def write_pretrain_results(cfg: ExperimentConfig, results_dir: Path) -> None:
    """``provenance.json`` and ``pretrain_curve.csv`` for the pre-training of ``cfg``; another
    network's (the LSTM, the BERT encoder) goes to provenance's ``<architecture>_pretrain`` and
    ``pretrain_curve_<architecture>.csv``, beside the Transformer's."""
    stage = pretrain_dir(cfg)
    metrics = json.loads((stage / "metrics.json").read_text())
    pretrain = {"steps": metrics["steps"], "tokens_seen": metrics["train_tokens"], "val_loss": metrics["val_loss"],
                "val_ppl": metrics["val_ppl"], "wall_seconds": metrics["wall_seconds"],
                "tokens_per_sec": metrics["train_tokens"] / max(metrics["wall_seconds"], 1e-9), "run": str(stage)}  # fmt: skip
    path = results_dir / "provenance.json"
    existing = json.loads(path.read_text()) if path.is_file() else {}
    if cfg.architecture != "transformer":
        shape = ({"n_layer": cfg.lstm.n_layer, "n_hidden": cfg.lstm.n_hidden} if cfg.architecture == "lstm" else
                 {"n_layer": cfg.model.n_layer, "n_embd": cfg.model.n_embd, "objective": "masked LM"})  # fmt: skip
        atomic_write_json(path, {**existing, f"{cfg.architecture}_pretrain": {**shape, "parameters": metrics["parameters"],
                                                                             **pretrain}})  # fmt: skip
        _write_curve(stage, results_dir / f"pretrain_curve_{cfg.architecture}.csv")
        return
    model = json.loads((stage / "model" / "config.json").read_text())
    t, c = cfg.tokenizer, cfg.corpus
    provenance = {
        "preset": cfg.name,
        "model": {"n_layer": cfg.model.n_layer, "n_embd": cfg.model.n_embd, "n_head": cfg.model.n_head,
                  "n_ctx": cfg.model.n_ctx, "vocab_size": model["gptbench"]["vocab_size"]},  # fmt: skip
        "parameters": metrics["parameters"],
        "tokenizer": "GPT-1's released 40k BPE" if t.kind == "gpt1" else f"BPE trained on the books, {t.vocab_size} tokens",
        "corpus": {"path": str(c.path) if c.path else None, "max_bytes": c.max_bytes, "val_books": c.val_books,
                   "train_tokens": metrics["corpus_tokens"]["train"], "val_tokens": metrics["corpus_tokens"]["val"]},
        "pretrain": pretrain,
        "lstm_pretrain": existing.get("lstm_pretrain"),
        "bert_pretrain": existing.get("bert_pretrain"),
        "git_commit": git_commit(),
        "machine": machine(),
        "software": software(),
        **({"gpu_busy": existing["gpu_busy"]} if existing.get("gpu_busy") else {}),  # absent: not measured
    }  # fmt: skip
    atomic_write_json(path, provenance)
    _write_curve(stage, results_dir / "pretrain_curve.csv")


def record_gpu_busy(results_dir: Path, sweep: str, busy: dict) -> None:
    """How busy the GPUs were while ``sweep``'s fine-tunes ran (gptbench.suite.utilization), in
    provenance.json's ``gpu_busy`` under the sweep's name (a rerun that runs nothing keeps it)."""
    path = results_dir / "provenance.json"
    existing = json.loads(path.read_text()) if path.is_file() else {}
    atomic_write_json(path, {**existing, "gpu_busy": {**(existing.get("gpu_busy") or {}), sweep: busy}})


def _write_curve(stage: Path, path: Path) -> None:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["step", "train_loss", "val_loss", "val_ppl"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(pretrain_curve(stage / "tb"))
    atomic_write_text(path, out.getvalue())


def copy_predictions(cfg: ExperimentConfig, results: dict, run_file: Path) -> None:
    """A finished fine-tune's per-example predictions (``predictions.json`` beside the results.json
    that ``results`` was read from) into the results directory, beside its run file, where the
    report reads them (gptbench.suite.report.read.predictions_path). Runs from before predictions
    were recorded have none."""
    from gptbench.suite.report.read import predictions_path

    stage = cfg.run_dir / "finetune" / results["task"] / results["settings_key"] / f"seed{results['seed']}"
    if (stage / "predictions.json").is_file():
        target = predictions_path(run_file)
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(target, (stage / "predictions.json").read_text(encoding="utf-8"))
