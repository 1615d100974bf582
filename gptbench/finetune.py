"""Supervised fine-tuning with the auxiliary LM objective (paper, Section 3.2).

L3 = L2 (task) + lm_coef * L1 (language modelling on the task's own inputs). The task head reads
the last layer's hidden state at each sequence's extract token; ``run_finetune(cfg)`` trains,
keeps the best evaluation epoch and writes ``results.json``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import lightning as L
import torch
import torch.nn as nn
import torch.nn.functional as F
from lightning.pytorch.callbacks import ModelCheckpoint

from gptbench.checkpoints import CheckpointError
from gptbench.config import ConfigError, ExperimentConfig, FinetuneConfig, require_dir, to_yaml
from gptbench.io import atomic_write_json, atomic_write_text
from gptbench.metrics import make_metric
from gptbench.model import GPT, GPTConfig
from gptbench.pretrain import build_tokenizer, run_tokenizer
from gptbench.task_data import TaskDataModule
from gptbench.tasks import SplitUnavailable, TaskSpec, get_task
from gptbench.tokenizer import Tokenizer
from gptbench.training import (
    RngStateMixin,
    TokensPerSecond,
    adamw,
    check_resume,
    make_trainer,
    resumable_checkpoint,
    step_scheduler,
    warmup_linear,
)


class TaskHead(nn.Module):
    """Linear layer on the extract-token states (B, C, D) of an example's C sequences.

    - one sequence (classification, entailment): logits (B, K);
    - similarity: the two orders' states are summed, then logits (B, K);
    - multiple choice: one score per choice, logits (B, C).
    Dropout uses one mask per example, shared across its sequences (as the released code does).
    """

    def __init__(self, n_embd: int, transformation: str, num_outputs: int, pdrop: float, init_std: float):
        super().__init__()
        self.transformation, self.pdrop = transformation, pdrop
        self.linear = nn.Linear(n_embd, 1 if transformation == "multiple_choice" else num_outputs)
        nn.init.normal_(self.linear.weight, std=init_std)
        nn.init.zeros_(self.linear.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.training and self.pdrop > 0:
            keep = torch.full_like(h[:, :1, :], 1 - self.pdrop).bernoulli_() / (1 - self.pdrop)
            h = h * keep  # (B, 1, D) mask broadcast over the C sequences
        if self.transformation == "multiple_choice":
            return self.linear(h).squeeze(-1)  # (B, C)
        if self.transformation == "similarity":
            return self.linear(h.sum(dim=1))  # (B, K)
        return self.linear(h[:, 0])  # (B, K)


class FinetuneModule(RngStateMixin, L.LightningModule):
    """``eval_splits`` names the evaluation dataloaders in order (the data module's list)."""

    def __init__(self, model: GPT, task: TaskSpec, optim: FinetuneConfig, total_steps: int, eval_splits: list[str]):
        super().__init__()
        self.total_steps, self.eval_splits = total_steps, eval_splits
        self.save_hyperparameters({"task": task.name, "finetune": asdict(optim), "gpt_config": asdict(model.config)})
        self.model, self.task, self.optim = model, task, optim
        self.head = TaskHead(model.config.n_embd, task.transformation, task.num_outputs, optim.clf_pdrop,
                             model.config.initializer_range)  # fmt: skip
        # One metric set per evaluation split, and per group within it (RACE-m, RACE-h).
        scored = {*task.eval_splits, *task.test_splits}
        self.metrics = nn.ModuleDict({
            split: nn.ModuleDict({
                population: nn.ModuleDict({m: make_metric(m, task.num_outputs) for m in task.metrics})
                for population in ("all", *task.groups)
            })
            for split in sorted(scored)
        })  # fmt: skip

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        """(B, C, T) ids and mask -> task logits and the last hidden states (B*C, T, D)."""
        B, C, T = input_ids.shape
        hidden, _ = self.model(input_ids.view(B * C, T), attention_mask.view(B * C, T))
        extract = attention_mask.view(B * C, T).sum(dim=1) - 1  # the extract token ends each sequence
        h = hidden[torch.arange(B * C, device=hidden.device), extract].view(B, C, -1)
        return self.head(h), hidden

    def lm_loss(self, hidden, input_ids, attention_mask) -> torch.Tensor:
        """Next-token loss averaged over each sequence's real positions, then over sequences."""
        T = input_ids.size(-1)
        ids, mask = input_ids.view(-1, T)[:, 1:], attention_mask.view(-1, T)[:, 1:].float()
        logits = self.model.lm_head(hidden[:, :-1])
        nll = F.cross_entropy(logits.reshape(-1, logits.size(-1)), ids.reshape(-1), reduction="none").view_as(mask)
        return ((nll * mask).sum(1) / mask.sum(1).clamp(min=1)).mean()

    def task_loss(self, logits, labels) -> torch.Tensor:
        if self.task.labels is None:
            return F.mse_loss(logits.squeeze(-1), labels.float())
        return F.cross_entropy(logits, labels)

    def predictions(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.squeeze(-1) if self.task.labels is None else logits.argmax(-1)

    def training_step(self, batch, batch_idx):
        logits, hidden = self(batch["input_ids"], batch["attention_mask"])
        task_loss = self.task_loss(logits, batch["labels"])
        loss = task_loss
        if self.optim.lm_coef > 0:
            lm_loss = self.lm_loss(hidden, batch["input_ids"], batch["attention_mask"])
            loss = task_loss + self.optim.lm_coef * lm_loss
            self.log("train/lm_loss", lm_loss)
        self.log("train/task_loss", task_loss)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx, dataloader_idx: int = 0):
        split = self.eval_splits[dataloader_idx]
        logits, _ = self(batch["input_ids"], batch["attention_mask"])
        self.log(f"{split}/loss", self.task_loss(logits, batch["labels"]), add_dataloader_idx=False,
                 batch_size=len(logits))  # fmt: skip
        preds, labels = self.predictions(logits), batch["labels"]
        for metric in self.metrics[split]["all"].values():
            metric.update(preds, labels)
        for g, group in enumerate(self.task.groups):
            chosen = batch["groups"] == g
            if chosen.any():
                for metric in self.metrics[split][group].values():
                    metric.update(preds[chosen], labels[chosen])

    def on_validation_epoch_end(self) -> None:
        for split in self.eval_splits:
            for population, metrics in self.metrics[split].items():
                prefix = split if population == "all" else f"{split}/{population}"
                for name, metric in metrics.items():
                    if metric.update_count:
                        self.log(f"{prefix}/{name}", metric.compute(), prog_bar=population == "all")
                    metric.reset()

    def configure_optimizers(self):
        o = self.optim
        optimizer = adamw(self, o.lr, o.weight_decay, o.betas, o.eps)
        # total_steps is computed by the caller: Trainer.estimated_stepping_batches would load the
        # train dataloader before a checkpoint is restored, and the resumed epoch would then
        # start from its first batch instead of where it stopped.
        schedule = warmup_linear(o.warmup_fraction, self.total_steps)
        return {"optimizer": optimizer, "lr_scheduler": step_scheduler(optimizer, schedule)}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["gpt_config"] = asdict(self.model.config)


def initial_model(cfg: ExperimentConfig) -> tuple[GPT, Tokenizer, str]:
    """The model to fine-tune, its tokenizer, and a description of where it came from."""
    f, dropout = cfg.finetune, {k: getattr(cfg.model, k) for k in ("embd_pdrop", "attn_pdrop", "resid_pdrop")}
    if f.init == "none":
        tokenizer = run_tokenizer(cfg)
        config = GPTConfig(**{**asdict(cfg.model), "vocab_size": tokenizer.vocab_size, "n_special": tokenizer.n_special})
        return GPT(config), tokenizer, "none (random initialisation)"
    path = cfg.run_dir / "pretrain" / "model" if f.init == "pretrained" else Path(f.init)
    if not path.exists():
        raise ConfigError(f"finetune.init=pretrained: {path} does not exist; run `gptbench pretrain` first")
    tok_dir = (path if path.is_dir() else path.parent) / "tokenizer"
    if (tok_dir / "tokenizer.json").is_file():
        tokenizer = Tokenizer.load(tok_dir)
    elif cfg.tokenizer.kind == "gpt1":  # released or Hugging Face GPT-1 weights
        tokenizer = build_tokenizer(cfg, None)
    else:
        raise ConfigError(f"finetune.init={f.init!r}: no tokenizer/ beside the weights; set tokenizer.kind=gpt1 "
                          "for GPT-1 weights from OpenAI or Hugging Face")  # fmt: skip
    model = GPT.from_pretrained(path, **dropout)
    if model.config.vocab_size != tokenizer.vocab_size:
        raise CheckpointError(
            f"{path}: model vocabulary {model.config.vocab_size} != tokenizer vocabulary {tokenizer.vocab_size}"
        )
    model.init_special_embeddings()  # the paper initialises the task tokens at fine-tuning
    if f.n_transfer >= 0:
        model.reinit_blocks_from(f.n_transfer)
    return model, tokenizer, str(path)


def run_finetune(cfg: ExperimentConfig) -> dict:
    """Fine-tune cfg.finetune.task; returns (and writes) the results of the best epoch."""
    f = cfg.finetune
    task = get_task(f.task)
    if task.zero_shot_only:
        raise ConfigError(f"finetune.task={task.name}: this task is zero-shot only (no fine-tuning)")
    unknown = sorted(set(f.splits) - set(task.all_splits))
    if unknown:
        raise ConfigError(f"finetune.splits: {unknown} are not splits of {task.name} (splits: {list(task.all_splits)})")
    data_root = require_dir(f.data_dir, "finetune.data_dir", "GPTBENCH_DATA", "the benchmark data root") if f.data_dir else None
    stage_dir = cfg.run_dir / "finetune" / task.name / f"seed{cfg.seed}"
    if (stage_dir / "results.json").is_file():
        print(f"fine-tuning {task.name} already complete: {stage_dir / 'results.json'}")
        return json.loads((stage_dir / "results.json").read_text())
    ckpt = check_resume(stage_dir, cfg.resume)
    L.seed_everything(cfg.seed, workers=True)
    model, tokenizer, init_source = initial_model(cfg)
    atomic_write_text(stage_dir / "config.yaml", to_yaml(cfg))
    data = TaskDataModule(task, tokenizer, model.config.n_ctx, data_root, Path(cfg.cache_dir), f.batch_size, cfg.seed,
                          f.max_train_examples, f.max_eval_examples, f.length_grouped, f.num_workers,
                          sources=dict(f.splits))  # fmt: skip
    data.setup()
    steps_per_epoch = -(-len(data.splits[task.train_split]) // f.batch_size)
    module = FinetuneModule(model, task, f, total_steps=steps_per_epoch * f.epochs, eval_splits=data.eval_splits)
    selection = f"{task.eval_splits[0]}/{task.metrics[0]}"
    best = ModelCheckpoint(stage_dir / "checkpoints", filename="best", monitor=selection, mode="max", save_top_k=1,
                           auto_insert_metric_name=False, enable_version_counter=False)  # fmt: skip
    latest = resumable_checkpoint(stage_dir / "checkpoints", f.checkpoint_every_n_steps)
    trainer = make_trainer(
        stage_dir, cfg.trainer, [best, latest], extra_callbacks=[TokensPerSecond()],
        max_epochs=f.epochs, gradient_clip_val=f.grad_clip or None,
        val_check_interval=1.0 / f.val_checks_per_epoch, log_every_n_steps=max(1, min(50, steps_per_epoch // 4)),
        num_sanity_val_steps=0,
    )  # fmt: skip
    start = time.perf_counter()
    trainer.fit(module, datamodule=data, ckpt_path=ckpt)
    if trainer.interrupted or trainer.current_epoch < f.epochs:
        raise SystemExit(f"fine-tuning stopped in epoch {trainer.current_epoch}/{f.epochs}; rerun with resume=true")

    # Score the best epoch on the evaluation splits and on every labelled test split present.
    best_ckpt = torch.load(best.best_model_path, map_location="cpu", weights_only=True)
    module.load_state_dict(best_ckpt["state_dict"])
    unavailable = {}
    for split in task.test_splits:
        try:
            data.load(split)
            data.eval_splits.append(split)
        except SplitUnavailable as e:
            unavailable[split] = str(e)
    scores = trainer.validate(module, datamodule=data, verbose=False)
    scores = {k: v for d in scores for k, v in d.items()}
    results = {
        "task": task.name,
        "transformation": task.transformation,
        "selection_metric": selection,
        "metrics": {
            split: {k.removeprefix(f"{split}/"): v for k, v in sorted(scores.items())
                    if k.startswith(f"{split}/") and not k.endswith("/loss")}
            for split in data.eval_splits
        },  # fmt: skip
        "best_epoch": best_ckpt["epoch"],
        "best_step": best_ckpt["global_step"],
        "splits": {
            split: {"examples": len(data.splits[split]), "source": info.source, "dropped": info.dropped,
                    "truncated": int(sum(info.data["truncated"]))}
            for split, info in data.info.items()
        },  # fmt: skip
        "substitutions": dict(f.splits),  # reports flag numbers whose split is not the official one
        "unavailable": unavailable,
        "data_source": str(data_root / task.data_subdir) if data_root else f"hub:{task.hub.path}",
        "init": init_source,
        "seed": cfg.seed,
        "finetune": asdict(f),
        "wall_seconds_this_session": time.perf_counter() - start,
    }
    atomic_write_json(stage_dir / "results.json", results)
    for split, metrics in results["metrics"].items():
        print(f"{task.name} {split}: " + ", ".join(f"{m}={v:.4f}" for m, v in metrics.items()))
    for split, why in unavailable.items():
        print(f"{task.name} {split}: not scored ({why})")
    return json.loads((stage_dir / "results.json").read_text())  # as a later run will read it
