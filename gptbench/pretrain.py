"""Language-model pre-training on a book corpus (paper, Section 3.1).

``run_pretrain(cfg)`` builds or reloads the run's tokenizer, trains with exact resume, and exports
the final model in the Hugging Face format to ``runs/<name>/pretrain/model``.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric

from gptbench.config import ExperimentConfig, PretrainConfig, require_dir, to_yaml
from gptbench.corpus import CorpusDataModule, book_text, split_books, text_chunks
from gptbench.io import atomic_write_json, atomic_write_text
from gptbench.model import GPT, GPTConfig
from gptbench.tokenizer import Tokenizer
from gptbench.training import (
    RngStateMixin,
    TokensPerSecond,
    adamw,
    check_resume,
    make_trainer,
    resumable_checkpoint,
    step_scheduler,
    warmup_cosine,
)


class PretrainModule(RngStateMixin, L.LightningModule):
    def __init__(self, gpt_config: dict, optim: dict):
        super().__init__()
        self.save_hyperparameters()
        self.model = GPT(GPTConfig(**gpt_config))
        self.optim = PretrainConfig(**optim)
        self.val_loss = MeanMetric()

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = self.model.lm_logits(x)  # (B, T, V)
        return F.cross_entropy(logits.view(-1, logits.size(-1)), y.reshape(-1))

    def training_step(self, batch, batch_idx):
        loss = self.loss(*batch)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/ppl", loss.detach().exp())
        return loss

    def validation_step(self, batch, batch_idx):
        x, _ = batch
        self.val_loss.update(self.loss(*batch), weight=x.numel())

    def on_validation_epoch_end(self) -> None:
        loss = self.val_loss.compute()
        self.val_loss.reset()
        self.log("val/loss", loss, prog_bar=True)
        self.log("val/ppl", loss.exp(), prog_bar=True)

    def configure_optimizers(self):
        o = self.optim
        optimizer = adamw(self.model, o.lr, o.weight_decay, o.betas, o.eps)
        return {"optimizer": optimizer, "lr_scheduler": step_scheduler(optimizer, warmup_cosine(o.warmup_steps, o.max_steps))}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["gpt_config"] = asdict(self.model.config)


def build_tokenizer(cfg: ExperimentConfig, corpus_root: Path | None) -> Tokenizer:
    """The run's tokenizer: GPT-1's released BPE, or one trained on the training books."""
    t = cfg.tokenizer
    if t.kind == "gpt1":
        d = require_dir(t.gpt1_dir, "tokenizer.gpt1_dir", "GPTBENCH_GPT1", "holds encoder_bpe_40000.json and vocab_40000.bpe")
        return Tokenizer.gpt1(d / "encoder_bpe_40000.json", d / "vocab_40000.bpe")
    books = split_books(corpus_root, cfg.corpus.val_books, cfg.corpus.max_bytes).train
    texts, size = [], 0
    for p in books:
        texts.append(book_text(p))
        size += len(texts[-1])
        if size >= t.train_bytes:
            break
    chunks = [c for text in texts for c in text_chunks(text)]
    return Tokenizer.train(chunks, vocab_size=t.vocab_size)


def run_tokenizer(cfg: ExperimentConfig) -> Tokenizer:
    """Load the run's saved tokenizer, or build and save it (runs/<name>/tokenizer)."""
    path = cfg.run_dir / "tokenizer"
    if (path / "tokenizer.json").is_file():
        return Tokenizer.load(path)
    corpus = require_dir(cfg.corpus.path, "corpus.path", "GPTBENCH_CORPUS", "a folder of .txt books") if cfg.tokenizer.kind == "trained" else None
    tokenizer = build_tokenizer(cfg, corpus)
    tokenizer.save(path)
    return tokenizer


def run_pretrain(cfg: ExperimentConfig) -> Path:
    """Pre-train; returns the directory of the exported model (HF format + tokenizer)."""
    corpus_root = require_dir(cfg.corpus.path, "corpus.path", "GPTBENCH_CORPUS", "a folder of .txt books")
    stage_dir = cfg.run_dir / "pretrain"
    export_dir = stage_dir / "model"
    if (export_dir / "config.json").is_file() and (stage_dir / "metrics.json").is_file():
        print(f"pre-training already complete: {export_dir}")
        return export_dir
    ckpt = check_resume(stage_dir, cfg.resume)
    L.seed_everything(cfg.seed, workers=True)
    atomic_write_text(cfg.run_dir / "config.yaml", to_yaml(cfg))
    tokenizer = run_tokenizer(cfg)
    gpt_config = GPTConfig(**{**asdict(cfg.model), "vocab_size": tokenizer.vocab_size, "n_special": tokenizer.n_special})
    p = cfg.pretrain
    data = CorpusDataModule(
        corpus_root, tokenizer, gpt_config.n_ctx, p.batch_size, p.accumulate_grad_batches,
        cfg.corpus.val_books, cfg.corpus.max_bytes, p.val_windows, Path(cfg.cache_dir), cfg.seed,
    )  # fmt: skip
    module = PretrainModule(asdict(gpt_config), asdict(p))
    trainer = make_trainer(
        stage_dir,
        cfg.trainer,
        # Every checkpoint is kept: zero-shot performance against pre-training updates (the
        # paper's Figure 2, right) is measured on them.
        [resumable_checkpoint(stage_dir / "checkpoints", p.checkpoint_every_n_steps, keep_all=True)],
        extra_callbacks=[TokensPerSecond()],
        max_steps=p.max_steps,
        val_check_interval=p.val_every_n_steps,
        check_val_every_n_epoch=None,
        accumulate_grad_batches=p.accumulate_grad_batches,
        gradient_clip_val=p.grad_clip or None,
        log_every_n_steps=p.log_every_n_steps,
    )
    start = time.perf_counter()
    trainer.fit(module, datamodule=data, ckpt_path=ckpt)
    if trainer.interrupted or trainer.global_step < p.max_steps:
        raise SystemExit(f"pre-training stopped at step {trainer.global_step}/{p.max_steps}; rerun with resume=true")
    val = trainer.validate(module, datamodule=data, verbose=False)[0]
    module.model.save_pretrained(export_dir)
    tokenizer.save(export_dir / "tokenizer")
    metrics = {
        "steps": trainer.global_step,
        "val_loss": val["val/loss"],
        "val_ppl": math.exp(val["val/loss"]),
        "train_tokens": trainer.global_step * p.batch_size * p.accumulate_grad_batches * gpt_config.n_ctx,
        "corpus_tokens": {k: int(v.size) for k, v in data.tokens.items()},
        "wall_seconds_this_session": time.perf_counter() - start,
        "parameters": module.model.num_parameters(),
    }
    atomic_write_json(stage_dir / "metrics.json", metrics)
    print(f"pre-training done: val loss {metrics['val_loss']:.4f}, val ppl {metrics['val_ppl']:.2f} -> {export_dir}")
    return export_dir
