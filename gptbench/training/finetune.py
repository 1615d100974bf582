"""Supervised fine-tuning with the auxiliary LM objective (paper, Section 3.2).

L3 = L2 (task) + lm_coef * L1 (language modelling on the task's own inputs). The task head reads
the last layer's hidden state at each sequence's extract token; ``run_finetune(cfg)`` trains,
keeps the best evaluation epoch and writes ``results.json``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import lightning as L
import torch
import torch.nn as nn
import torch.nn.functional as F
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger

from gptbench.models.checkpoints import CheckpointError
from gptbench.config import ConfigError, ExperimentConfig, FinetuneConfig, require_dir, to_yaml
from gptbench.io import atomic_write_json, atomic_write_text
from gptbench.evaluation.metrics import make_metric
from gptbench.models import LanguageModel, ModelConfig, build_model, load_pretrained, model_spec
from gptbench.models.bert import BERT
from gptbench.models.task_head import TaskHead, extract_states, input_format, segment_ids
from gptbench.run_lock import run_lock
from gptbench.run_identity import finetune_dir, finetune_settings, pretrain_dir, record_settings
from gptbench.data.prepared import open_prepared
from gptbench.data.task_data import absent_reason, datamodule
from gptbench.tasks import TaskSpec, get_task
from gptbench.data.tokenizer import Tokenizer
from gptbench.data.tokenizer_stage import build_tokenizer, run_tokenizer
from gptbench.training.exports import write_model_card
from gptbench.training.chunked_loss import chunked_lm_loss
from gptbench.training.masked_lm import IGNORE, freeze_unused, mask_tokens
from gptbench.training.task_model import TaskModel
from gptbench.training.common import (
    DestroyProcessGroupAtExit,
    GradientClipping,
    GradNorm,
    RngStateMixin,
    TokensPerSecond,
    WallClock,
    adamw,
    check_resume,
    make_trainer,
    resumable_checkpoints,
    step_scheduler,
    stepping_batches,
    warmup_linear,
)


class FinetuneModule(GradientClipping, RngStateMixin, DestroyProcessGroupAtExit, L.LightningModule):
    """Fine-tuning of a GPT (or the LSTM of Table 5, or the BERT encoder) on one task, for any
    Lightning Trainer: L3 = L2 + lm_coef * L1. The encoder reads its inputs in BERT's conventions
    (gptbench.data.task_data.layout) at its pooled [CLS] state, and its L1 is the masked-LM loss
    (BERT fine-tunes without one: lm_coef=0).

    Defaults are the paper's (Section 4.1) and the released code's (Adam betas, eps, clipping).
    Logged names: ``train/loss``, ``train/task_loss``, ``train/lm_loss``, and per scored split
    ``<split>/<metric>`` (``dev/accuracy``, ``dev/high/accuracy``, ``test/accuracy``, ...).
    ``trainer.validate`` scores the evaluation splits, ``trainer.test`` the labelled test splits,
    ``trainer.predict`` returns the predictions for the unlabelled GLUE test files
    (see :func:`gptbench.write_glue_submission`).

    Args:
        model: a GPT or LSTMLM (its weights are used as they are), or a GPTConfig / LSTMConfig /
            ``model_spec`` dict for a randomly initialised one (no pre-training). :meth:`from_pretrained` starts from a checkpoint.
        task: a task name or TaskSpec.
        lr, warmup_fraction: peak learning rate; linear warm-up over this fraction of the updates,
            then linear decay to 0 (the released ``warmup_linear``).
        lm_coef: lambda of the auxiliary LM objective (0 turns it off).
        clf_pdrop: dropout on the task head's input.
        weight_decay, betas, eps: decoupled AdamW, decay on matrices only.
        grad_clip: global gradient-norm clipping (0 = none) unless the Trainer sets its own.
        total_steps: the schedule's length; default: the Trainer's number of optimizer steps.
        freeze_body: a linear probe: the network is frozen and kept in eval mode (no dropout), only
            the task head trains; needs ``lm_coef=0``.
        compile: run the training step's forward and losses through ``torch.compile`` (batches are
            padded to their longest sequence, so the sequence length is compiled as dynamic).
        loss_chunk: compute the auxiliary next-token loss this many positions at a time, never the
            whole logits tensor (:mod:`gptbench.training.chunked_loss`; 0 = the plain loss).
    """

    def __init__(self, model: LanguageModel | ModelConfig | dict, task: str | TaskSpec, *, lr: float = 6.25e-5,
                 lm_coef: float = 0.5, warmup_fraction: float = 0.002, clf_pdrop: float = 0.1,
                 weight_decay: float = 0.01, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 grad_clip: float = 1.0, total_steps: int | None = None, freeze_body: bool = False,
                 compile: bool = False, loss_chunk: int = 0):  # fmt: skip
        super().__init__()
        if not isinstance(model, nn.Module):
            model = build_model(model)
        task = get_task(task) if isinstance(task, str) else task
        if task.zero_shot_only:
            raise ValueError(f"task {task.name} is zero-shot only (no fine-tuning)")
        _check_hparams(lr=lr, lm_coef=lm_coef, warmup_fraction=warmup_fraction, clf_pdrop=clf_pdrop,
                       weight_decay=weight_decay, eps=eps, grad_clip=grad_clip, total_steps=total_steps,
                       loss_chunk=loss_chunk)  # fmt: skip
        if freeze_body and lm_coef > 0:
            raise ValueError(f"lm_coef={lm_coef!r}: expected 0 with freeze_body=True (a frozen network has nothing "
                             "for the auxiliary LM loss to train)")  # fmt: skip
        # Everything needed to rebuild the module: FinetuneModule.load_from_checkpoint works.
        self.save_hyperparameters({
            "model": model_spec(model), "task": task.name, "lr": lr, "lm_coef": lm_coef,
            "warmup_fraction": warmup_fraction, "clf_pdrop": clf_pdrop, "weight_decay": weight_decay,
            "betas": tuple(betas), "eps": eps, "grad_clip": grad_clip, "total_steps": total_steps,
            "freeze_body": freeze_body, "compile": compile, "loss_chunk": loss_chunk,
        })  # fmt: skip
        self.model, self.task = model, task
        self.lr, self.lm_coef, self.warmup_fraction = lr, lm_coef, warmup_fraction
        self.weight_decay, self.betas, self.eps, self.grad_clip = weight_decay, tuple(betas), eps, grad_clip
        self.total_steps, self.freeze_body, self.loss_chunk = total_steps, freeze_body, loss_chunk
        self.training_losses = torch.compile(self.losses) if compile else self.losses
        model.requires_grad_(not freeze_body)
        if isinstance(model, BERT) and lm_coef == 0:
            freeze_unused(model, mlm_head=True)  # BERT's recipe: nothing reads the masked-LM head
        self.head = TaskHead(model.config.n_embd, task.transformation, task.num_outputs, clf_pdrop,
                             model.config.initializer_range)  # fmt: skip
        # One metric set per scored split, and per group within it (RACE-m, RACE-h).
        scored = {task.train_split, *task.eval_splits, *task.test_splits, "holdout"}
        # Keyed "split:<name>": a ModuleDict key may not shadow a Module attribute ("train").
        self.metrics = nn.ModuleDict({
            f"split:{split}": nn.ModuleDict({
                population: nn.ModuleDict({m: make_metric(m, task.num_outputs) for m in task.metrics})
                for population in ("all", *task.groups)
            })
            for split in sorted(scored)
        })  # fmt: skip

    @classmethod
    def from_pretrained(cls, path_or_model: str | Path | LanguageModel, task: str | TaskSpec, *,
                        n_transfer: int = -1, model_overrides: dict | None = None, **hparams) -> "FinetuneModule":  # fmt: skip
        """Start fine-tuning from pre-trained weights: a network, or any path
        ``gptbench.models.load_pretrained`` reads (a gptbench run's ``pretrain/model``, a .ckpt, a
        Hugging Face ``openai-gpt`` directory, OpenAI's .npy shards, a gptbench LSTM). The task
        tokens' embeddings are re-drawn (paper: randomly initialised at fine-tuning);
        ``n_transfer`` >= 0 keeps only the first blocks and re-initialises the rest (Figure 2,
        left). ``model_overrides`` set config fields (e.g. dropout); ``hparams`` are the
        constructor's keywords."""
        model = path_or_model
        if not isinstance(model, nn.Module):
            model = load_pretrained(path_or_model, **(model_overrides or {}))
        if not -1 <= n_transfer <= model.config.n_layer:
            raise ValueError(f"n_transfer must be -1 (all) or 0..{model.config.n_layer}, got {n_transfer}")
        model.init_special_embeddings()
        if n_transfer >= 0:
            model.reinit_blocks_from(n_transfer)
        return cls(model, task, **hparams)

    def train(self, mode: bool = True) -> "FinetuneModule":
        super().train(mode)
        if self.freeze_body:
            self.model.eval()  # a probe reads fixed features: no dropout in the frozen network
        return self

    # ---- the network ----------------------------------------------------------------------
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        """(B, C, T) ids and mask -> task logits and the last hidden states (B*C, T, D)."""
        h, hidden = extract_states(self.model, input_ids, attention_mask)
        return self.head(h), hidden

    def lm_loss(self, hidden, input_ids, attention_mask) -> torch.Tensor:
        """Next-token loss averaged over each sequence's real positions, then over sequences; the
        BERT encoder's auxiliary loss is the masked-LM one (:meth:`masked_lm_loss`)."""
        if isinstance(self.model, BERT):
            return self.masked_lm_loss(input_ids, attention_mask)
        T = input_ids.size(-1)
        ids, mask = input_ids.view(-1, T)[:, 1:], attention_mask.view(-1, T)[:, 1:].float()
        if self.loss_chunk:  # the same average: position weights 1 / (sequence's real positions x sequences)
            weights = mask / mask.sum(1, keepdim=True).clamp(min=1) / len(mask)
            states = hidden[:, :-1].reshape(-1, hidden.size(-1))
            return chunked_lm_loss(states, self.model.head_table(), ids.reshape(-1), weights.reshape(-1),
                                   self.model.config.pad_vocab_multiple, self.loss_chunk)  # fmt: skip
        logits = self.model.lm_head(hidden[:, :-1])
        nll = F.cross_entropy(logits.reshape(-1, logits.size(-1)), ids.reshape(-1), reduction="none").view_as(mask)
        return ((nll * mask).sum(1) / mask.sum(1).clamp(min=1)).mean()

    def masked_lm_loss(self, input_ids, attention_mask) -> torch.Tensor:
        """BERT's pre-training objective on the task's own inputs: 15% of the real BPE tokens (not
        [CLS], [SEP] or padding) masked 80/10/10, a second forward pass on that corrupted copy, the
        cross-entropy at the selected positions."""
        c, T = self.model.config, input_ids.size(-1)
        ids, mask = input_ids.view(-1, T), attention_mask.view(-1, T)
        eligible = mask.bool() & (ids < c.vocab_size)
        inputs, labels = mask_tokens(ids, c.mask_token_id, c.vocab_size, eligible=eligible)
        hidden, _ = self.model(inputs, mask, token_type_ids=segment_ids(ids, c.sep_token_id))
        selected = labels != IGNORE
        return F.cross_entropy(self.model.lm_head(hidden[selected]).float(), labels[selected])

    def task_loss(self, logits, labels) -> torch.Tensor:
        if self.task.labels is None:
            return F.mse_loss(logits.squeeze(-1), labels.float())
        return F.cross_entropy(logits, labels)

    def predictions(self, logits: torch.Tensor) -> torch.Tensor:
        """Scores (regression) or class indices, from fp32: under bf16-mixed the head's bf16 output
        would quantise the scores (and torchmetrics' Spearman would rank them with a bf16 arange)
        and tie close logits."""
        logits = logits.float()
        return logits.squeeze(-1) if self.task.labels is None else logits.argmax(-1)

    # ---- training and scoring ---------------------------------------------------------------
    def losses(self, batch: dict) -> dict[str, torch.Tensor]:
        """L3 = L2 + lm_coef * L1 of a training batch: {"loss", "task_loss"[, "lm_loss"]}."""
        logits, hidden = self(batch["input_ids"], batch["attention_mask"])
        out = {"task_loss": self.task_loss(logits, batch["labels"])}
        out["loss"] = out["task_loss"]
        if self.lm_coef > 0:
            out["lm_loss"] = self.lm_loss(hidden, batch["input_ids"], batch["attention_mask"])
            out["loss"] = out["task_loss"] + self.lm_coef * out["lm_loss"]
        return out

    def training_step(self, batch, batch_idx):
        losses = self.training_losses(batch)
        if "lm_loss" in losses:
            self.log("train/lm_loss", losses["lm_loss"])
        self.log("train/task_loss", losses["task_loss"])
        self.log("train/loss", losses["loss"])  # not prog_bar (see TerminalProgress)
        return losses["loss"]

    def _split_names(self, kind: str) -> list[str]:
        """The splits behind the dataloaders of ``kind`` (eval/test/predict), in order: the data
        module's lists, or the task's own when the loaders come from elsewhere."""
        dm = getattr(self.trainer, "datamodule", None)
        names = getattr(dm, f"{kind}_splits", None)
        if names is not None:
            return list(names)
        return list({"eval": self.task.eval_splits, "test": self.task.test_splits}.get(kind, ("test",)))

    def _score(self, batch, split: str) -> None:
        logits, _ = self(batch["input_ids"], batch["attention_mask"])
        self.log(f"{split}/loss", self.task_loss(logits, batch["labels"]), add_dataloader_idx=False,
                 batch_size=len(logits))  # fmt: skip
        preds, labels = self.predictions(logits), batch["labels"]
        for metric in self.metrics[f"split:{split}"]["all"].values():
            metric.update(preds, labels)
        for g, group in enumerate(self.task.groups):
            chosen = batch["groups"] == g
            if chosen.any():
                for metric in self.metrics[f"split:{split}"][group].values():
                    metric.update(preds[chosen], labels[chosen])

    def _log_scores(self, splits: list[str]) -> None:
        """Each split's (and group's) metrics over every example scored, on all processes: the
        metrics sum their states over the processes in ``compute``. A group that only some
        processes saw (RACE-m in one process's share) is computed by all of them, so that they
        all take part in the same synchronisations."""
        for split in splits:
            for population, metrics in self.metrics[f"split:{split}"].items():
                prefix = split if population == "all" else f"{split}/{population}"
                for name, metric in metrics.items():
                    if self._updated_anywhere(metric):
                        self.log(f"{prefix}/{name}", metric.compute(), prog_bar=population == "all")
                    metric.reset()

    def _updated_anywhere(self, metric) -> bool:
        if self.trainer.world_size == 1:
            return metric.update_count > 0
        count = torch.tensor(float(metric.update_count), device=self.device)
        return bool(self.trainer.strategy.reduce(count, reduce_op="sum") > 0)

    def validation_step(self, batch, batch_idx, dataloader_idx: int = 0):
        self._score(batch, self._split_names("eval")[dataloader_idx])

    def on_validation_epoch_end(self) -> None:
        self._log_scores(self._split_names("eval"))

    def test_step(self, batch, batch_idx, dataloader_idx: int = 0):
        self._score(batch, self._split_names("test")[dataloader_idx])

    def on_test_epoch_end(self) -> None:
        self._log_scores(self._split_names("test"))

    def predict_step(self, batch, batch_idx, dataloader_idx: int = 0) -> dict:
        """{"split", "index" (position in the split), "prediction" (class index or score)}."""
        logits, _ = self(batch["input_ids"], batch["attention_mask"])
        index = batch.get("index")
        if index is None:
            if self.trainer.world_size > 1:
                raise ValueError("predicting on several processes needs each batch's 'index' (the examples' "
                                 "positions in their split) to put the processes' shares back in order")  # fmt: skip
            index = torch.arange(len(logits)) + batch_idx * len(logits)
        split = self._split_names("predict")[dataloader_idx]
        return {"split": split, "index": index.cpu(), "prediction": self.predictions(logits).cpu()}

    def on_predict_epoch_end(self) -> None:
        """Under DDP each process predicts a share of every split: gather the shares, so that
        ``trainer.predict`` returns every prediction on every process, in the split's order and
        batched as on one process."""
        if self.trainer.world_size == 1 or not self.trainer.predict_loop.return_predictions:
            return
        loop = self.trainer.predict_loop
        loaders = self.trainer.predict_dataloaders
        loaders = list(loaders) if isinstance(loaders, (list, tuple)) else [loaders]
        per_loader = loop.predictions if loop.num_dataloaders > 1 else [loop.predictions]
        shares = [None] * self.trainer.world_size
        torch.distributed.all_gather_object(shares, per_loader)
        for k, (loader, batches) in enumerate(zip(loaders, per_loader)):
            everyone = [batch for share in shares for batch in share[k]]
            index = torch.cat([b["index"] for b in everyone])
            order = index.argsort()
            index, prediction = index[order], torch.cat([b["prediction"] for b in everyone])[order]
            size = getattr(loader.batch_sampler, "batch_size", None) or len(index)
            batches[:] = [{"split": everyone[0]["split"], "index": i, "prediction": p}
                          for i, p in zip(index.split(size), prediction.split(size))]  # fmt: skip

    def configure_optimizers(self):
        optimizer = adamw(self, self.lr, self.weight_decay, self.betas, self.eps)
        total = self.total_steps or stepping_batches(self.trainer, getattr(self.trainer.datamodule, "num_train_batches", None))
        schedule = warmup_linear(self.warmup_fraction, total)
        return {"optimizer": optimizer, "lr_scheduler": step_scheduler(optimizer, schedule)}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["model_config"] = model_spec(self.model)


def _check_hparams(**values) -> None:
    """Impossible optimisation settings fail at construction, naming the argument."""
    rules = {
        "lr": (lambda v: v > 0, "> 0"), "eps": (lambda v: v > 0, "> 0"),
        "lm_coef": (lambda v: v >= 0, ">= 0"), "weight_decay": (lambda v: v >= 0, ">= 0"),
        "grad_clip": (lambda v: v >= 0, ">= 0 (0 = no clipping)"),
        "warmup_fraction": (lambda v: 0 <= v < 1, "in [0, 1)"), "clf_pdrop": (lambda v: 0 <= v < 1, "in [0, 1)"),
        "total_steps": (lambda v: v is None or v > 0, "> 0 or None"),
        "loss_chunk": (lambda v: v >= 0, ">= 0 (0 = the plain loss)"),
    }  # fmt: skip
    for name, value in values.items():
        ok, expected = rules[name]
        if not ok(value):
            raise ValueError(f"{name}={value!r}: expected {expected}")


def optimisation_hparams(f: FinetuneConfig) -> dict:
    """FinetuneModule's keywords from the config's fine-tuning section."""
    keys = ("lr", "lm_coef", "warmup_fraction", "clf_pdrop", "weight_decay", "betas", "eps", "grad_clip", "freeze_body")
    return {k: getattr(f, k) for k in keys}


def speed_hparams(cfg: ExperimentConfig) -> dict:
    """FinetuneModule's keywords from the trainer section: the compiled step, the chunked LM loss."""
    return {"compile": cfg.trainer.compile, "loss_chunk": cfg.trainer.loss_chunk}


def initial_module(cfg: ExperimentConfig) -> tuple[FinetuneModule, Tokenizer, str]:
    """The module to fine-tune, its tokenizer, and a description of where its weights came from."""
    f, task = cfg.finetune, cfg.finetune.task
    if f.init == "none":
        tokenizer = run_tokenizer(cfg)
        config = cfg.network_config(tokenizer.vocab_size, tokenizer.n_special)
        module = FinetuneModule(config, task, **optimisation_hparams(f), **speed_hparams(cfg))
        return module, tokenizer, "none (random initialisation)"
    path = pretrain_dir(cfg) / "model" if f.init == "pretrained" else Path(f.init)
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
    model = load_pretrained(path, dropout=cfg.dropout(), pad_vocab_multiple=cfg.model.pad_vocab_multiple)
    if model.config.vocab_size != tokenizer.vocab_size:
        raise CheckpointError(
            f"{path}: model vocabulary {model.config.vocab_size} != tokenizer vocabulary {tokenizer.vocab_size}"
        )
    module = FinetuneModule.from_pretrained(model, task, n_transfer=f.n_transfer, **optimisation_hparams(f),
                                            **speed_hparams(cfg))  # fmt: skip
    return module, tokenizer, str(path)


def resolve_selection(cfg: ExperimentConfig, task: TaskSpec, data_root: Path | None) -> str:
    """``finetune.select``, with ``auto`` resolved: ``dev`` where a labelled test split is present
    (it is what gets reported, so dev may choose the epoch), ``holdout`` where dev is reported."""
    if cfg.finetune.select != "auto":
        return cfg.finetune.select
    if cfg.prepared:
        prepared = open_prepared(cfg.prepared)
        present = [s for s in task.test_splits if not prepared.absent_reason(task.name, s, cfg.finetune.splits.get(s))]
    else:
        present = [s for s in task.test_splits if not absent_reason(task, s, data_root, cfg.finetune.splits)]
    return "dev" if present else "holdout"


def score(trainer: L.Trainer, module: FinetuneModule, data) -> dict[str, dict[str, float]]:
    """{split: {metric: value}} on the data module's evaluation splits and labelled test splits."""
    scores = {k: v for d in trainer.validate(module, datamodule=data, verbose=False) for k, v in d.items()}
    if data.test_splits:
        scores |= {k: v for d in trainer.test(module, datamodule=data, verbose=False) for k, v in d.items()}
    return {
        split: {k.removeprefix(f"{split}/"): v for k, v in sorted(scores.items())
                if k.startswith(f"{split}/") and not k.endswith("/loss")}
        for split in [*data.eval_splits, *data.test_splits]
    }  # fmt: skip


def log_hparams(trainer: L.Trainer, cfg: ExperimentConfig, results: dict) -> None:
    """TensorBoard's HParams tab: this run's settings beside its final numbers (the selected
    checkpoint's reported metrics, ``hp/<split>/<metric>``, and the last epoch's), so the runs of
    a sweep compare side by side under ``tensorboard --logdir runs/<name>``."""
    if not isinstance(trainer.logger, TensorBoardLogger):
        return
    f, m = cfg.finetune, cfg.model
    params = {"task": f.task, "init": f.init, "n_transfer": f.n_transfer, "lm_coef": f.lm_coef, "lr": f.lr,
              "epochs": f.epochs, "batch_size": f.batch_size, "warmup_fraction": f.warmup_fraction,
              "clf_pdrop": f.clf_pdrop, "select": f.select, "seed": cfg.finetune_seed,
              "max_train_examples": f.max_train_examples or 0, "model": f"{m.n_layer}x{m.n_embd}",
              "settings_key": results["settings_key"]}  # fmt: skip
    metrics = {f"hp/{split}/{name}": value for split, values in results["metrics"].items() for name, value in values.items()}
    metrics |= {f"hp/last_epoch/{split}/{name}": value
                for split, values in results["metrics_last_epoch"].items() for name, value in values.items()}  # fmt: skip
    trainer.logger.log_hyperparams(params, metrics)


def run_finetune(cfg: ExperimentConfig) -> dict:
    """Fine-tune cfg.finetune.task; returns (and writes) the results of the selected checkpoint."""
    f = cfg.finetune
    task = get_task(f.task)
    if task.zero_shot_only:
        raise ConfigError(f"finetune.task={task.name}: this task is zero-shot only (no fine-tuning)")
    unknown = sorted(set(f.splits) - set(task.all_splits))
    if unknown:
        raise ConfigError(f"finetune.splits: {unknown} are not splits of {task.name} (splits: {list(task.all_splits)})")
    data_root = None
    if f.data_dir and not cfg.prepared:
        data_root = require_dir(f.data_dir, "finetune.data_dir", "GPTBENCH_DATA", "the benchmark data root")
    select = resolve_selection(cfg, task, data_root)
    cfg = replace(cfg, finetune=replace(f, select=select))  # the key records the protocol actually used
    f = cfg.finetune
    stage_dir = finetune_dir(cfg)
    with run_lock(stage_dir):
        return _finetune(cfg, task, stage_dir, data_root, select)


@torch.no_grad()
def write_predictions(module: FinetuneModule, data, task: TaskSpec, path: Path, results: dict) -> None:
    """The reported splits' per-example predictions, for the report's bootstrap and one-class flags:
    ``{"task", "splits": {split: {"index", "prediction", "gold"[, "group"], "examples",
    "full_examples"}}}``, ``index`` the example's position in the scored subset, ``prediction`` a
    label index (a score, 4 decimals, for regression). Also records each split's full size (before
    subsampling) in ``results["splits"][split]["full_examples"]``."""
    from gptbench.data.task_data import collate

    was_training, device = module.training, next(module.parameters()).device
    module.eval()
    splits = {}
    for split in [*data.report_splits, *data.test_splits]:
        preds, gold, groups = [], [], []
        for batch in torch.utils.data.DataLoader(data.splits[split], batch_size=data.batch_size, collate_fn=collate):
            logits, _ = module(batch["input_ids"].to(device), batch["attention_mask"].to(device))
            preds += module.predictions(logits).cpu().tolist()
            gold += batch["labels"].tolist()
            groups += batch["groups"].tolist() if "groups" in batch else []
        if task.labels is None:
            preds, gold = [round(p, 4) for p in preds], [round(g, 4) for g in gold]
        full = data.full_examples[split]
        results["splits"][split]["full_examples"] = full
        splits[split] = {"examples": len(preds), "full_examples": full, "index": list(range(len(preds))),
                         "prediction": preds, "gold": gold, **({"group": groups} if groups else {})}  # fmt: skip
    module.train(was_training)
    atomic_write_json(path, {"task": task.name, "groups": list(task.groups), "splits": splits})


def finetune_datamodule(cfg: ExperimentConfig, task: TaskSpec, tokenizer, n_ctx: int, data_root: Path | None,
                        select: str, input_format: str, prepared=None):  # fmt: skip
    """The fine-tune's data module (``gptbench prepare`` builds the same one to find the rows it reads)."""
    f = cfg.finetune
    return datamodule(task, tokenizer, batch_size=f.batch_size, n_ctx=n_ctx, data_dir=data_root or "hub",
                      cache_dir=cfg.cache_dir, seed=cfg.finetune_seed, max_train_examples=f.max_train_examples,
                      max_eval_examples=f.max_eval_examples, splits=f.splits, length_grouped=f.length_grouped,
                      num_workers=f.num_workers, prefetch_factor=f.prefetch_factor, persistent_workers=f.persistent_workers,
                      holdout_fraction=f.holdout_fraction if select == "holdout" else None,
                      holdout_max=f.holdout_max, eval_splits=["holdout"] if select == "holdout" else None,
                      input_format=input_format, prepared=prepared)  # fmt: skip


def load_splits(data) -> None:
    """Read and encode every split the run will use before the first step: a malformed file
    fails now, not after training."""
    data.setup("fit")
    for split in data.report_splits:
        data.load(split)
    data.setup_test_splits()


def _finetune(cfg: ExperimentConfig, task: TaskSpec, stage_dir: Path, data_root: Path | None, select: str) -> dict:
    f = cfg.finetune
    if (stage_dir / "results.json").is_file():
        print(f"fine-tuning {task.name} already complete: {stage_dir / 'results.json'}")
        return json.loads((stage_dir / "results.json").read_text())
    ckpt = check_resume(stage_dir, cfg.resume)
    L.seed_everything(cfg.finetune_seed, workers=True)
    module, tokenizer, init_source = initial_module(cfg)
    record_settings(stage_dir.parent, finetune_settings(cfg))
    atomic_write_text(stage_dir / "config.yaml", to_yaml(cfg))
    data = finetune_datamodule(cfg, task, tokenizer, module.model.config.n_ctx, data_root, select,
                               input_format(module.model), open_prepared(cfg.prepared) if cfg.prepared else None)  # fmt: skip
    load_splits(data)

    selection_split = data.eval_splits[0]
    selection = f"{selection_split}/{task.metrics[0]}"
    callbacks = []
    if select != "last":
        # Before the resumable checkpoints: Lightning runs checkpoint callbacks in order, so the
        # epoch's resumable checkpoint records the selection that already counts this epoch. In
        # the other order, a run killed between the two files resumes at the end of training
        # with a selection that never saw the last epoch.
        best = ModelCheckpoint(stage_dir / "checkpoints", filename="best", monitor=selection, mode="max",
                               save_top_k=1, auto_insert_metric_name=False, enable_version_counter=False)  # fmt: skip
        callbacks.append(best)
    callbacks += resumable_checkpoints(stage_dir / "checkpoints", f.checkpoint_every_n_steps)
    steps_per_epoch = data.num_train_batches
    clock = WallClock()
    trainer = make_trainer(
        stage_dir, cfg.trainer, callbacks, extra_callbacks=[TokensPerSecond(), GradNorm(), clock], resume_from=ckpt,
        max_epochs=f.epochs, val_check_interval=1.0 / f.val_checks_per_epoch,
        log_every_n_steps=max(1, min(50, steps_per_epoch // 4)), num_sanity_val_steps=0,
    )  # fmt: skip
    trainer.fit(module, datamodule=data, ckpt_path=ckpt)
    if trainer.interrupted or trainer.current_epoch < f.epochs:
        raise SystemExit(f"fine-tuning stopped in epoch {trainer.current_epoch}/{f.epochs}; rerun with resume=true")

    # The reported splits are scored with the last epoch's weights, then with the selected ones
    # (and the examples trained on, with score_train).
    data.eval_splits = [*data.report_splits, *([task.train_split] if f.score_train else [])]
    last_scores = score(trainer, module, data)
    chosen = {"epoch": f.epochs - 1, "global_step": trainer.global_step}
    if select != "last":
        chosen = torch.load(best.best_model_path, map_location="cpu", weights_only=True)
    if chosen["global_step"] == trainer.global_step:  # the selected checkpoint is the last one
        scores = last_scores
    else:
        module.load_state_dict(chosen["state_dict"])
        scores = score(trainer, module, data)
    results = {
        "task": task.name,
        "transformation": task.transformation,
        "metrics": scores,
        "metrics_last_epoch": last_scores,
        "selection": {
            "protocol": select,
            "split": None if select == "last" else selection_split,
            "metric": task.metrics[0],
            "best_epoch": chosen["epoch"],
            "best_step": chosen["global_step"],
            # the selected epoch's score on the selection split (how settings are compared)
            "score": None if select == "last" or best.best_model_score is None else float(best.best_model_score),
            "holdout_examples": len(data.splits["holdout"]) if "holdout" in data.splits else 0,
        },
        "reported_splits": [*data.report_splits, *data.test_splits],
        "splits": {
            split: {"examples": len(data.splits[split]), "source": info.source, "dropped": info.dropped,
                    "truncated": int(sum(info.data["truncated"]))}
            for split, info in sorted(data.info.items())
        },  # fmt: skip
        "substitutions": dict(f.splits),  # reports flag numbers whose split is not the official one
        "unavailable": dict(data.unavailable),
        "data_source": data.data_source,
        "init": init_source,
        "seed": cfg.finetune_seed,
        "settings_key": stage_dir.parent.name,
        "finetune": asdict(f),
        "wall_seconds": clock.total(),  # training, summed over every session of the run
    }
    log_hparams(trainer, cfg, results)
    trainer.logger.close()
    if not trainer.is_global_zero:  # under DDP rank zero writes the run's files; the others wait for them
        trainer.strategy.barrier("fine-tuning results written")
        return json.loads((stage_dir / "results.json").read_text())
    # The reported checkpoint, loadable in a line (TaskModel.from_pretrained), before the results
    # that mark the run finished.
    TaskModel(module.model, module.head, task, tokenizer).save_pretrained(stage_dir / "model", results)
    write_predictions(module, data, task, stage_dir / "predictions.json", results)
    atomic_write_json(stage_dir / "results.json", results)
    if (Path(init_source).parent / "metrics.json").is_file():  # a gptbench pre-training: its card lists this run
        write_model_card(init_source)
    print(f"{task.name}: selection {select}" + (f" on {results['selection']['split']}" if select != "last" else "")
          + f", epoch {chosen['epoch']}")  # fmt: skip
    for split, metrics in scores.items():
        print(f"{task.name} {split}: " + ", ".join(f"{m}={v:.4f}" for m, v in metrics.items()))
    for split, why in data.unavailable.items():
        print(f"{task.name} {split}: not scored ({why})")
    trainer.strategy.barrier("fine-tuning results written")
    return json.loads((stage_dir / "results.json").read_text())  # as a later run will read it
