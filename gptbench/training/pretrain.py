"""Language-model pre-training on a book corpus (paper, Section 3.1).

``run_pretrain(cfg)`` builds or reloads the run's tokenizer, trains with exact resume, and exports
the final model in the Hugging Face format to ``runs/<name>/pretrain/model``.
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import Callback
import torch
import torch.nn as nn
import torch.nn.functional as F
from torchmetrics import MeanMetric

from gptbench.config import ExperimentConfig, require_dir, to_yaml
from gptbench.data.corpus import CorpusDataModule
from gptbench.data.hf_export import save_for_transformers
from gptbench.data.prepared import open_prepared
from gptbench.io import atomic_write_json, atomic_write_text
from gptbench.provenance import command_line, git_commit
from gptbench.models import LanguageModel, ModelConfig, architecture_of, build_model, model_spec
from gptbench.evaluation.fill_mask import fill_mask
from gptbench.models.bert import BERT
from gptbench.models.decoding import generate
from gptbench.run_lock import run_lock
from gptbench.run_identity import point_link, pretrain_dir, pretrain_settings, record_settings, world_size
from gptbench.data.tokenizer import Tokenizer
from gptbench.data.tokenizer_stage import run_tokenizer
from gptbench.training.chunked_loss import chunked_lm_loss
from gptbench.training.masked_lm import IGNORE, freeze_unused, mask_tokens, with_cls
from gptbench.training.exports import export_language_model, write_model_card
from gptbench.training.common import (
    DestroyProcessGroupAtExit,
    GradientClipping,
    GradNorm,
    RngStateMixin,
    TokensPerSecond,
    WallClock,
    adamw,
    check_losses_finite,
    check_resume,
    make_trainer,
    resumable_checkpoints,
    step_scheduler,
    warmup_cosine,
)


class PretrainModule(GradientClipping, RngStateMixin, DestroyProcessGroupAtExit, L.LightningModule):
    """Language-model pre-training of a GPT (or the LSTM of Table 5), for any Lightning Trainer
    (paper, Section 3.1); a BERT encoder trains on the masked-LM objective instead
    (:mod:`gptbench.training.masked_lm`), on the same windows and schedule.

    Defaults are the paper's: Adam at 2.5e-4, linear warm-up from 0 over 2,000 updates, cosine
    annealing to 0, decoupled weight decay 0.01 on matrices, and the released code's clipping at 1.
    Logged names: ``train/loss``, ``train/ppl``, ``val/loss``, ``val/ppl``.

    Args:
        model: a GPTConfig / LSTMConfig / BertConfig (or a ``model_spec`` dict) for a fresh network, or a
            network to continue training.
        max_steps: the schedule's length; default: the Trainer's ``max_steps``.
        compile: run the training step's forward and loss through ``torch.compile`` (validation
            stays eager: a second graph for eval mode would cost more than it saves).
        loss_chunk: compute the next-token loss this many positions at a time, never the whole
            (B*T, V) logits (:mod:`gptbench.training.chunked_loss`; 0 = the plain loss). The BERT
            encoder's masked-LM loss reads its ~15% selected positions only and is not chunked.
    """

    def __init__(self, model: LanguageModel | ModelConfig | dict, *, lr: float = 2.5e-4, warmup_steps: int = 2000,
                 max_steps: int | None = None, weight_decay: float = 0.01,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, grad_clip: float = 1.0,
                 compile: bool = False, loss_chunk: int = 0):  # fmt: skip
        super().__init__()
        if not isinstance(model, nn.Module):
            model = build_model(model)
        checks = (("lr", lr, lr > 0), ("eps", eps, eps > 0), ("warmup_steps", warmup_steps, warmup_steps >= 0),
                  ("loss_chunk", loss_chunk, loss_chunk >= 0),
                  ("max_steps", max_steps, max_steps is None or max_steps > 0),
                  ("weight_decay", weight_decay, weight_decay >= 0), ("grad_clip", grad_clip, grad_clip >= 0))  # fmt: skip
        for name, value, ok in checks:
            if not ok:
                raise ValueError(f"{name}={value!r} is out of range")
        self.save_hyperparameters({
            "model": model_spec(model), "lr": lr, "warmup_steps": warmup_steps, "max_steps": max_steps,
            "weight_decay": weight_decay, "betas": tuple(betas), "eps": eps, "grad_clip": grad_clip, "compile": compile,
            "loss_chunk": loss_chunk,
        })  # fmt: skip
        self.model = model
        self.masked_lm = architecture_of(model) == "bert"  # BERT's objective instead of the next token
        if self.masked_lm:
            freeze_unused(model, pooler=True)  # no next-sentence prediction reads the pooler
        self.lr, self.warmup_steps, self.max_steps = lr, warmup_steps, max_steps
        self.weight_decay, self.betas, self.eps, self.grad_clip = weight_decay, tuple(betas), eps, grad_clip
        self.loss_chunk = loss_chunk
        self.val_loss = MeanMetric()
        # The function the training step calls, compiled as a whole (compiling only
        # ``model.forward`` would leave the LM head and the loss eager).
        self.training_loss = torch.compile(self.loss) if compile else self.loss

    def loss(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Next-token cross-entropy; for the BERT encoder, masked-LM cross-entropy on the same
        windows (masks from ``generator``, else the global RNG)."""
        if self.masked_lm:
            return self.masked_lm_loss(x, generator)[0]
        hidden, _ = self.model(x)  # (B, T, C)
        if self.loss_chunk:
            return chunked_lm_loss(hidden.flatten(0, 1), self.model.head_table(), y.reshape(-1),
                                   multiple=self.model.config.pad_vocab_multiple, chunk=self.loss_chunk)  # fmt: skip
        logits = self.model.lm_head(hidden).float()  # (B, T, V)
        return F.cross_entropy(logits.view(-1, logits.size(-1)), y.reshape(-1))

    def masked_lm_loss(self, windows: torch.Tensor, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The mean cross-entropy over the selected positions, and how many there were (a tensor on
        the device: reading it would wait for the GPU)."""
        c = self.model.config
        inputs, labels = mask_tokens(with_cls(windows, c.cls_token_id), c.mask_token_id, c.vocab_size, generator)
        hidden, _ = self.model(inputs)  # (B, T, C)
        selected = labels != IGNORE  # the MLM head runs on the ~15% selected positions only
        logits = self.model.lm_head(hidden[selected]).float()  # (N, V)
        return F.cross_entropy(logits, labels[selected]), selected.sum()

    def training_step(self, batch, batch_idx):
        loss = self.training_loss(*batch)
        self.log("train/loss", loss)  # not prog_bar: read every step (see TerminalProgress)
        self.log("train/ppl", loss.detach().exp())
        return loss

    def validation_step(self, batch, batch_idx):
        x, _ = batch
        if not self.masked_lm:
            self.val_loss.update(self.loss(*batch), weight=x.numel())
            return
        # The same masks at every validation (seeded by the batch), so the curve moves with the model only.
        generator = torch.Generator(device=x.device).manual_seed(batch_idx)
        loss, n = self.masked_lm_loss(x, generator)
        self.val_loss.update(loss, weight=n)

    def on_validation_epoch_end(self) -> None:
        loss = self.val_loss.compute()
        self.val_loss.reset()
        self.log("val/loss", loss, prog_bar=True)
        self.log("val/ppl", loss.exp(), prog_bar=True)

    def configure_optimizers(self):
        total = self.max_steps or self.trainer.max_steps
        if total is None or total < 0:
            raise ValueError("the schedule needs a length: PretrainModule(max_steps=...) or Trainer(max_steps=...)")
        optimizer = adamw(self.model, self.lr, self.weight_decay, self.betas, self.eps)
        return {"optimizer": optimizer, "lr_scheduler": step_scheduler(optimizer, warmup_cosine(self.warmup_steps, total))}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["model_config"] = model_spec(self.model)


class LogSamples(Callback):
    """After every validation, continues a few fixed prompts and logs the text to TensorBoard
    (``samples``), so a run's language can be read as it learns; the BERT encoder fills the masks
    of a few fixed texts instead. Sampling uses its own seeded generator: the training RNG, and so
    exact resume, is untouched. ``tokenizer`` may be a prepared directory's
    (:meth:`gptbench.data.prepared.PreparedData.prompts`): the texts come encoded."""

    PROMPTS = ("it was a dark and stormy night", "she looked at him and said", "the old man")
    MASKED = ("it was a dark and stormy [MASK] .", "she looked at [MASK] and said", "the old [MASK] was tired .")

    def __init__(self, tokenizer: Tokenizer, max_new_tokens: int = 24, seed: int = 0):
        self.tokenizer, self.max_new_tokens, self.seed = tokenizer, max_new_tokens, seed

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        writer = getattr(trainer.logger, "experiment", None)
        if trainer.sanity_checking or not hasattr(writer, "add_text"):
            return
        if isinstance(pl_module.model, BERT):
            lines = [f"**{text}** " + " / ".join(", ".join(c.token.strip() for c in mask) for mask in
                                                  fill_mask(pl_module.model, self.tokenizer, text, top_k=3))
                     for text in self.MASKED]  # fmt: skip
            writer.add_text("samples", "\n\n".join(lines), trainer.global_step)
            return
        lines = []
        for prompt in self.PROMPTS:
            ids = self.tokenizer.encode(prompt)
            out = generate(pl_module.model, ids, self.max_new_tokens, strategy="sample", temperature=0.8, top_k=40,
                           seed=self.seed, context="slide")  # fmt: skip
            lines.append(f"**{prompt}** {self.tokenizer.decode(out[0, len(ids):].tolist())}")
        writer.add_text("samples", "\n\n".join(lines), trainer.global_step)


class Snapshots(Callback):
    """Exports the model with its tokenizer to ``directory/step<N>/`` when training reaches each of
    ``steps`` (0: before the first update), for good: zero-shot against updates (Figure 2, right)
    is measured on them. Each snapshot appears whole (written aside, then renamed); one that exists
    is not rewritten, so a resumed run simply continues the series."""

    def __init__(self, directory: Path, steps, tokenizer: Tokenizer):
        self.directory, self.steps, self.tokenizer = Path(directory), set(steps), tokenizer

    def path(self, step: int) -> Path:
        return self.directory / f"step{step}"

    def _export(self, trainer, pl_module, step: int) -> None:
        out = self.path(step)
        if step not in self.steps:
            return
        check_losses_finite(trainer)  # a snapshot is kept for good: never one of diverged weights
        if not trainer.is_global_zero or (out / "config.json").is_file():
            return
        tmp = self.directory / f".step{step}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        export_language_model(pl_module.model, self.tokenizer, tmp)
        os.replace(tmp, out)

    def on_train_start(self, trainer, pl_module) -> None:
        self._export(trainer, pl_module, trainer.global_step)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._export(trainer, pl_module, trainer.global_step)


def tokens_trained(cfg: ExperimentConfig, steps: int, n_ctx: int) -> int:
    """Corpus tokens read in ``steps`` optimizer steps, by all processes together (batch sizes are
    per process)."""
    p = cfg.pretrain
    return steps * p.batch_size * p.accumulate_grad_batches * world_size(cfg) * n_ctx


def latest_link(cfg: ExperimentConfig) -> Path:
    """``runs/<name>/pretrain/model`` names the most recently finished Transformer pre-training,
    ``runs/<name>/pretrain/lstm-model`` the LSTM's, ``bert-model`` the BERT encoder's."""
    return cfg.run_dir / "pretrain" / ("model" if cfg.architecture == "transformer" else f"{cfg.architecture}-model")


def run_pretrain(cfg: ExperimentConfig) -> Path:
    """Pre-train; returns the directory of the exported model (HF format + tokenizer)."""
    corpus_root = None if cfg.prepared else require_dir(cfg.corpus.path, "corpus.path", "GPTBENCH_CORPUS",
                                                        "a folder of .txt books")  # fmt: skip
    stage_dir = pretrain_dir(cfg)
    with run_lock(stage_dir):
        return _pretrain(cfg, stage_dir, corpus_root)


def _pretrain(cfg: ExperimentConfig, stage_dir: Path, corpus_root: Path | None) -> Path:
    export_dir = stage_dir / "model"
    if (export_dir / "config.json").is_file() and (stage_dir / "metrics.json").is_file():
        print(f"pre-training already complete: {export_dir}")
        if not (export_dir / "tokenizer.json").is_file():  # exported before the transformers files existed
            save_for_transformers(Tokenizer.load(export_dir / "tokenizer"), export_dir, cfg.model.n_ctx,
                                  with_mask=cfg.architecture == "bert")
            write_model_card(export_dir)
        point_link(latest_link(cfg), export_dir)
        return export_dir
    ckpt = check_resume(stage_dir, cfg.resume)
    L.seed_everything(cfg.seed, workers=True)
    record_settings(stage_dir, pretrain_settings(cfg))
    atomic_write_text(stage_dir / "config.yaml", to_yaml(cfg))
    tokenizer = run_tokenizer(cfg)
    network = cfg.network_config(tokenizer.vocab_size, tokenizer.n_special)
    p = cfg.pretrain
    prepared = open_prepared(cfg.prepared) if cfg.prepared else None
    data = CorpusDataModule(
        corpus_root, tokenizer, n_ctx=network.n_ctx, batch_size=p.batch_size, val_books=cfg.corpus.val_books,
        max_bytes=cfg.corpus.max_bytes, val_windows=p.val_windows, cache_dir=cfg.cache_dir, seed=cfg.seed,
        prepared=prepared,
    )  # fmt: skip
    module = PretrainModule(network, lr=p.lr, warmup_steps=p.warmup_steps, max_steps=p.max_steps,
                            weight_decay=p.weight_decay, betas=p.betas, eps=p.eps, grad_clip=p.grad_clip,
                            compile=cfg.trainer.compile, loss_chunk=cfg.trainer.loss_chunk)  # fmt: skip
    clock = WallClock()
    trainer = make_trainer(
        stage_dir,
        cfg.trainer,
        # Without keep_steps every periodic checkpoint is kept (any of them can be evaluated
        # later); with keep_steps those steps are exported as snapshots and only the newest
        # checkpoint is kept, for resuming.
        # (pre-training is one long epoch: its checkpoints are the periodic ones)
        resumable_checkpoints(stage_dir / "checkpoints", p.checkpoint_every_n_steps, keep_all=p.keep_steps is None,
                              epoch_ends=False),
        extra_callbacks=[TokensPerSecond(), GradNorm(), LogSamples(prepared.prompts(tokenizer) if prepared else tokenizer), clock,
                         Snapshots(stage_dir / "snapshots", p.keep_steps or (), tokenizer)],
        resume_from=ckpt,
        max_steps=p.max_steps,
        val_check_interval=p.val_every_n_steps * p.accumulate_grad_batches,  # Lightning counts batches
        check_val_every_n_epoch=None,
        accumulate_grad_batches=p.accumulate_grad_batches,
        log_every_n_steps=p.log_every_n_steps,
    )
    trainer.fit(module, datamodule=data, ckpt_path=ckpt)
    if trainer.interrupted or trainer.global_step < p.max_steps:
        raise SystemExit(f"pre-training stopped at step {trainer.global_step}/{p.max_steps}; rerun with resume=true")
    val = trainer.validate(module, datamodule=data, verbose=False)[0]
    trainer.logger.close()
    if not trainer.is_global_zero:  # under DDP rank zero writes the export and metrics; the others wait for them
        trainer.strategy.barrier("pre-training exported")
        return export_dir
    export_language_model(module.model, tokenizer, export_dir)
    metrics = {
        "steps": trainer.global_step,
        "val_loss": val["val/loss"],
        "val_ppl": math.exp(val["val/loss"]),
        "train_tokens": tokens_trained(cfg, trainer.global_step, network.n_ctx),
        "corpus_tokens": {k: int(v.size) for k, v in data.tokens.items()},
        "wall_seconds": clock.total(),  # training, summed over every session of the run
        "parameters": module.model.num_parameters(),
        "architecture": cfg.architecture,
        "snapshots": sorted(p.keep_steps or ()),
        "command": command_line(),  # of the session that finished the run
        "commit": git_commit(),
    }
    atomic_write_json(stage_dir / "metrics.json", metrics)
    write_model_card(export_dir)
    point_link(latest_link(cfg), export_dir)
    trainer.strategy.barrier("pre-training exported")
    print(f"pre-training done: val loss {metrics['val_loss']:.4f}, val ppl {metrics['val_ppl']:.2f} -> {export_dir}")
    return export_dir
