"""Pieces shared by pre-training and fine-tuning: optimizer, schedules, exact resume, trainer."""

from __future__ import annotations

import atexit
import datetime
import functools
import io
import math
import random
import sys
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import (
    Callback,
    LearningRateMonitor,
    ModelCheckpoint,
    ProgressBar,
    TQDMProgressBar,
)
from lightning.pytorch.loggers import TensorBoardLogger

from gptbench.config import ConfigError, TrainerConfig
from gptbench.errors import NonFiniteLoss
from gptbench.training.allocator import keep_freed_memory


def adamw(module: torch.nn.Module, lr: float, weight_decay: float, betas, eps: float) -> torch.optim.AdamW:
    """AdamW with decoupled weight decay on tensors of rank >= 2 only (not biases or gains),
    as in the released code; fused where every parameter is on a GPU."""
    params = [p for p in module.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    # On GPUs, one fused kernel for the whole update instead of a dozen per tensor. Elsewhere the
    # for-each implementation, whose numbers the published CPU runs were made with (fused differs
    # from it in the last bits).
    fused = bool(params) and all(p.device.type == "cuda" for p in params)
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), eps=eps, fused=fused or None)


def warmup_cosine(warmup: int, total: int):
    """Linear warm-up from 0 over ``warmup`` steps, then cosine annealing to 0 at ``total``."""

    def factor(step: int) -> float:
        if step < warmup:
            return step / max(1, warmup)
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def warmup_linear(warmup_fraction: float, total: int):
    """The released code's ``warmup_linear`` on the training progress x = step / total: a linear
    warm-up over the first ``warmup_fraction`` of updates, times a linear decay to 0,
    ``(x / warmup if x <= warmup else 1) * (1 - x)``.

    The warm-up is fractional, so it exists even when it lasts less than one update (RTE, MRPC):
    the first update always runs at learning rate 0, as in the released code.
    """

    def factor(step: int) -> float:
        x = step / total
        ramp = x / warmup_fraction if x <= warmup_fraction and warmup_fraction > 0 else 1.0
        return max(0.0, ramp * (1.0 - x))

    return factor


def step_scheduler(optimizer, factor) -> dict:
    return {"scheduler": torch.optim.lr_scheduler.LambdaLR(optimizer, factor), "interval": "step"}


class DestroyProcessGroupAtExit:
    """Destroys the process group while the interpreter is still whole, at the exit of every
    process that trained or evaluated under data parallelism.

    Lightning does this for NCCL only. A Gloo group (DDP on CPUs) left to interpreter finalization
    can abort a process whose run has finished and written everything: Gloo's worker threads still
    hold work objects with Python references ("terminate called without an active exception",
    SIGABRT; pytorch/pytorch#190489). Measured here: 4 of 40 four-process Gloo jobs aborted so
    without it, 0 of 60 with it; a two-process CPU fine-tune of the test suite did in 1 of about
    150. The handler is registered in ``setup``, which runs in every process, however launched."""

    def setup(self, stage: str) -> None:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            _destroy_process_group_at_exit()
        super().setup(stage)


@functools.cache  # once per process
def _destroy_process_group_at_exit() -> None:
    atexit.register(_destroy_process_group)


def _destroy_process_group() -> None:
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


class RngStateMixin:
    """Saves the RNG states (dropout, masked-LM masks, task-head dropout) in checkpoints, so a
    resumed run draws exactly what the uninterrupted run would have drawn: Python's, NumPy's, the
    CPU generator and, once CUDA is in use, every CUDA device's generator.

    Under data parallelism every process has its own states. The checkpoint is written by rank 0,
    so every rank's states are gathered into it (``rng_states_per_rank``) and each rank restores
    its own; ``rng_states`` is rank 0's, which a resume on another number of processes uses. A
    checkpoint without CUDA states (written on CPU, or by an older gptbench) leaves the CUDA
    generators as seeded."""

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        states = _gather_across_ranks(_rng_states())
        checkpoint["rng_states"] = states[0]
        if len(states) > 1:
            checkpoint["rng_states_per_rank"] = states

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        rank, world = _rank_and_world()
        per_rank = checkpoint.get("rng_states_per_rank")
        states = per_rank[rank] if per_rank and len(per_rank) == world else checkpoint.get("rng_states")
        if states:
            _set_rng_states(states)


def _rng_states() -> dict:
    """This process's RNG states, as plain tensors and numbers so that checkpoints load with
    torch.load(weights_only=True)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    states = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(keys.copy()), pos, has_gauss, cached],
        "python": random.getstate(),
    }
    if torch.cuda.is_initialized():  # a CPU run on a GPU machine does not start CUDA to save nothing
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, keys.numpy(), pos, has_gauss, cached))
    random.setstate(states["python"])
    if states.get("cuda") and torch.cuda.is_available():
        # Before CUDA starts this is queued and runs after the seeding done at start-up.
        torch.cuda.set_rng_state_all(states["cuda"][: torch.cuda.device_count()])


def _rank_and_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _gather_across_ranks(states: dict) -> list[dict]:
    """Every rank's ``states``, by rank (a collective: every rank saves a checkpoint together)."""
    _, world = _rank_and_world()
    if world == 1:
        return [states]
    # As torch.save bytes: all_gather_object's own pickling of tensors does not round-trip the
    # generator states (torch 2.13: "UntypedStorage has no attribute dtype").
    buffer = io.BytesIO()
    torch.save(states, buffer)
    gathered: list = [None] * world
    torch.distributed.all_gather_object(gathered, buffer.getvalue())
    return [torch.load(io.BytesIO(blob), weights_only=True) for blob in gathered]


def stepping_batches(trainer: L.Trainer, train_batches: int | None) -> int:
    """Optimizer steps of a ``fit``: ``Trainer.estimated_stepping_batches``, computed from
    ``train_batches`` (the data module's batches per epoch on this process) when it is known.

    ``estimated_stepping_batches`` itself builds and starts iterating the train loader before a
    checkpoint is restored, so a resumed run would replay its interrupted epoch from the first
    batch; a data module that knows its length avoids that. Without one, the Trainer estimates.
    """
    if train_batches is None or trainer.train_dataloader is not None:
        return int(trainer.estimated_stepping_batches)
    if trainer.max_epochs == -1:
        if trainer.max_steps == -1:
            raise ValueError("the schedule needs a length: set Trainer(max_epochs=...) or Trainer(max_steps=...)")
        return trainer.max_steps
    limit = trainer.limit_train_batches
    batches = min(train_batches, int(limit)) if isinstance(limit, int) else int(train_batches * limit)
    steps = math.ceil(batches / trainer.accumulate_grad_batches) * max(trainer.max_epochs or 1, 1)
    return min(steps, trainer.max_steps) if trainer.max_steps != -1 else steps


class GradientClipping:
    """Mixin for LightningModules: clip the global gradient norm at ``self.grad_clip`` (the
    released code clips at 1) unless the Trainer was given its own ``gradient_clip_val``."""

    grad_clip: float

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        if gradient_clip_val is None and self.grad_clip > 0:
            gradient_clip_val, gradient_clip_algorithm = self.grad_clip, "norm"
        self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)


class TokensPerSecond(Callback):
    """Logs training throughput, ``train/tokens_per_sec``, over the interval between logging steps:
    the real (unpadded) tokens of every process together. The count stays on the device between
    logging steps (reading it every step would stall the GPU's queue)."""

    def __init__(self) -> None:
        self._tokens, self._start = 0, None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._start is None:
            self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._tokens += batch["attention_mask"].sum() if isinstance(batch, dict) else batch[0].numel()
        if trainer.global_step % trainer.log_every_n_steps == 0:
            elapsed = time.perf_counter() - self._start
            # Summed over processes: each logs its own rate, Lightning adds them up.
            rate = torch.as_tensor(self._tokens, dtype=torch.float32, device=pl_module.device) / max(elapsed, 1e-9)
            pl_module.log("train/tokens_per_sec", rate, sync_dist=True, reduce_fx="sum")
            self._tokens, self._start = 0, time.perf_counter()


class GradNorm(Callback):
    """Logs ``train/grad_norm``, the global L2 norm of the gradients before clipping, at the
    logging interval (a rising norm is the first sign of a diverging post-LN model)."""

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if trainer.global_step % trainer.log_every_n_steps == 0:
            grads = [p.grad for p in pl_module.parameters() if p.grad is not None]
            if grads:
                pl_module.log("train/grad_norm", torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])))


class WallClock(Callback):
    """Training wall time summed over every session of a run (kept in its checkpoints)."""

    def __init__(self) -> None:
        self.seconds, self._since = 0.0, None

    def on_train_start(self, trainer, pl_module) -> None:
        self._since = time.perf_counter()

    def _tick(self) -> None:
        if self._since is not None:
            now = time.perf_counter()
            self.seconds, self._since = self.seconds + now - self._since, now

    def state_dict(self) -> dict:
        self._tick()
        return {"seconds": self.seconds}

    def load_state_dict(self, state_dict: dict) -> None:
        self.seconds = state_dict["seconds"]

    def total(self) -> float:
        self._tick()
        return self.seconds


def resumable_checkpoints(ckpt_dir: Path, every_n_train_steps: int | None = None, keep_all: bool = False,
                          epoch_ends: bool = True) -> list[ModelCheckpoint]:  # fmt: skip
    """Checkpoints at the end of every epoch (``epoch_ends``) and every ``every_n_train_steps``;
    ``last.ckpt`` is a link to the newest, which ``resume=true`` continues from. (Lightning's
    ModelCheckpoint takes one trigger, so each trigger is its own callback.)"""
    # No version counter: the callbacks' file names differ, and both must point the one last.ckpt
    # at their newest file (with the counter the second would write last-v1.ckpt).
    common = dict(dirpath=ckpt_dir, auto_insert_metric_name=False, save_top_k=-1 if keep_all else 1, save_last="link",
                  enable_version_counter=False)  # fmt: skip
    callbacks = []
    if every_n_train_steps:
        callbacks.append(ModelCheckpoint(filename="step{step}", every_n_train_steps=every_n_train_steps, **common))
    if epoch_ends or not every_n_train_steps:
        callbacks.append(ModelCheckpoint(filename="epoch{epoch}-step{step}", every_n_epochs=1, **common))
    return callbacks


class StopOnNonFiniteLoss(Callback):
    """Stops a run whose loss becomes nan or infinite, naming the first such step and the last
    checkpoint written before it (training on would only spread the NaN).

    The losses are checked on the device (no per-step host sync) and read back at each logging
    step, before any checkpoint is written and when training ends. So the run stops at most
    ``log_every_n_steps`` updates after the first non-finite loss: those updates do reach the
    weights in memory, but never a checkpoint, a snapshot or an export, and the checkpoint named
    is from before the first non-finite loss."""

    def __init__(self, ckpt_dir: Path):
        self.ckpt_dir = Path(ckpt_dir)
        self._first_step: torch.Tensor | None = None  # on the device: -1 until a loss is not finite
        self._first_loss: torch.Tensor | None = None

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        loss = loss.detach()
        if self._first_step is None:
            self._first_step = torch.full((), -1, dtype=torch.long, device=loss.device)
            self._first_loss = torch.zeros((), dtype=torch.float32, device=loss.device)
        first = (self._first_step < 0) & ~torch.isfinite(loss).all()
        self._first_step = torch.where(first, trainer.global_step, self._first_step)
        self._first_loss = torch.where(first, loss.float().mean(), self._first_loss)

    def check(self, trainer) -> None:
        """Raise :class:`NonFiniteLoss` if a loss since the start of the session was not finite, on
        any process (a collective: every process checks at the same points, and all stop)."""
        seen = self._first_step is not None and int(self._first_step) >= 0
        if not trainer.strategy.reduce_boolean_decision(seen, all=False):
            return
        if not seen:
            raise NonFiniteLoss(f"training loss became nan or infinite on another process; stopped at step "
                                f"{trainer.global_step}")  # fmt: skip
        good = latest_checkpoint(self.ckpt_dir, exclude_exception=True)
        resume = (f"the last checkpoint before it is {good} (resume=true continues from there)" if good
                  else "no checkpoint was written before it")  # fmt: skip
        raise NonFiniteLoss(f"training loss is {self._first_loss.item()} at step {int(self._first_step)}; stopped at "
                            f"step {trainer.global_step} (epoch {trainer.current_epoch}), before any checkpoint held "
                            f"the weights after it; {resume}. Lower the learning rate or check the data.")  # fmt: skip

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step % trainer.log_every_n_steps == 0:
            self.check(trainer)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        self.check(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        self.check(trainer)


def check_losses_finite(trainer) -> None:
    """Raise :class:`NonFiniteLoss` now if the trainer's :class:`StopOnNonFiniteLoss` saw a
    non-finite loss (for callbacks that write the weights, e.g. snapshots; every process calls it)."""
    for callback in trainer.callbacks:
        if isinstance(callback, StopOnNonFiniteLoss):
            callback.check(trainer)


class FlushLogsWithCheckpoints(Callback):
    """Writes the loggers' buffered events to disk whenever a checkpoint is written (the periodic
    ones and on_exception.ckpt), so a resumed run's TensorBoard curve has no gap before the step
    it resumes from."""

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        for logger in trainer.loggers:
            logger.save()


class SaveOnException(Callback):
    """Writes ``on_exception.ckpt`` when training dies (crash, Ctrl-C), so nothing is lost.

    Lightning's OnExceptionCheckpoint does the same but also makes ``fit(ckpt_path=None)``
    silently resume from 'last'; resuming here is explicit (``resume=true``).
    """

    def __init__(self, path: Path):
        self.path = path

    def on_exception(self, trainer, pl_module, exception) -> None:
        if not isinstance(exception, NonFiniteLoss):  # weights of a diverged run are not worth resuming
            trainer.save_checkpoint(self.path)


def latest_checkpoint(ckpt_dir: Path, exclude_exception: bool = False) -> Path | None:
    """The most recent resumable checkpoint in ``ckpt_dir`` (last.ckpt or on_exception.ckpt)."""
    names = ("last.ckpt",) if exclude_exception else ("last.ckpt", "on_exception.ckpt")
    candidates = [p for p in (ckpt_dir / name for name in names) if p.is_file()]
    return max(candidates, key=lambda p: p.stat().st_mtime) if candidates else None


def check_resume(stage_dir: Path, resume: bool) -> Path | None:
    """The checkpoint to resume from, or None for a fresh start; refuses to silently mix runs."""
    ckpt = latest_checkpoint(stage_dir / "checkpoints")
    if ckpt is not None and not resume:
        raise ConfigError(
            f"{stage_dir} already holds checkpoints: pass resume=true to continue that run, "
            "or choose another name= (or delete the directory) to start over"
        )
    return ckpt


class RunLogger(TensorBoardLogger):
    """TensorBoard for one stage: everything it logs, the final evaluation after ``fit`` included,
    goes to one event file. (Lightning closes the writer when ``fit`` ends, so a later
    ``validate``/``test`` would open a second file.) Call :meth:`close` when the stage is done."""

    def finalize(self, status: str) -> None:
        if self._experiment is not None:
            self._experiment.flush()
        if status == "success":
            self.save()

    def close(self) -> None:
        if self._experiment is not None:
            self._experiment.close()


def checkpoint_step(path: Path | None) -> int | None:
    """The global step a checkpoint was written at (read without loading its tensors)."""
    if path is None:
        return None
    return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["global_step"])


class LineProgress(ProgressBar):
    """Progress for output that is not a terminal (sweep logs, SLURM, CI): one line per logging
    interval, ``epoch E step S/N  loss L  tokens/s T  ETA H:MM:SS``, and no carriage returns (a
    redrawn bar leaves hundreds of partial lines in a log file). The tokens/s field is there when
    ``train/tokens_per_sec`` is logged; the ETA extrapolates this session's steps per second."""

    def __init__(self, stream=None):
        super().__init__()
        self.stream = stream  # None: sys.stdout at the time of printing
        self._enabled = True
        self._last_step = -1
        self._start: tuple[float, int] = (0.0, 0)  # (time, global step) when this session began

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_train_start(self, trainer, pl_module) -> None:
        self._start = (time.perf_counter(), trainer.global_step)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if not self._enabled or step == self._last_step or step % max(1, trainer.log_every_n_steps):
            return
        self._last_step = step
        print(self.line(trainer), file=self.stream or sys.stdout, flush=True)

    def line(self, trainer) -> str:
        step, total = trainer.global_step, trainer.estimated_stepping_batches
        metrics = trainer.callback_metrics
        fields = [f"epoch {trainer.current_epoch}", f"step {step}" + (f"/{total}" if math.isfinite(total) else "")]
        if "train/loss" in metrics:
            fields.append(f"loss {float(metrics['train/loss']):.4f}")
        if "train/tokens_per_sec" in metrics:
            fields.append(f"tokens/s {float(metrics['train/tokens_per_sec']):,.0f}")
        start, step0 = self._start
        if math.isfinite(total) and step > step0:
            eta = (time.perf_counter() - start) / (step - step0) * max(0, total - step)
            fields.append(f"ETA {datetime.timedelta(seconds=round(eta))}")
        return "  ".join(fields)


class TerminalProgress(TQDMProgressBar):
    """Lightning's redrawn bar, with the training loss as of the last logging step.

    The loss is not logged with ``prog_bar=True``: Lightning converts progress-bar values to
    Python numbers after every batch, and on a GPU each such read waits for the step's kernels
    (the queue never runs ahead). Here the loss is read at logging steps only."""

    def __init__(self) -> None:
        super().__init__(refresh_rate=10)
        self._loss: dict[str, str] = {}

    def get_metrics(self, trainer, pl_module) -> dict:
        loss = trainer.callback_metrics.get("train/loss")
        if trainer.training and loss is not None and trainer.global_step % max(1, trainer.log_every_n_steps) == 0:
            self._loss = {"loss": f"{float(loss):.4f}"}
        return {**super().get_metrics(trainer, pl_module), **self._loss}


def progress_bar(stream=None) -> ProgressBar:
    """:class:`TerminalProgress` on a terminal; :class:`LineProgress` anywhere else. ``stream``:
    where progress goes; by default standard output, where Lightning's bar writes too. Both read
    device values at logging steps only."""
    return TerminalProgress() if (stream or sys.stdout).isatty() else LineProgress(stream)


def make_trainer(
    run_dir: Path,
    trainer_cfg: TrainerConfig,
    checkpoints: list[ModelCheckpoint],
    extra_callbacks: list[Callback] = (),
    resume_from: Path | None = None,
    **kwargs,
) -> L.Trainer:
    """A Trainer writing TensorBoard logs to ``run_dir/tb`` and checkpoints to
    ``run_dir/checkpoints``; an exception (Ctrl-C included) leaves ``on_exception.ckpt``.
    Progress is a bar on a terminal, one line per logging interval elsewhere (:func:`progress_bar`).

    Resuming from ``resume_from``, TensorBoard is told to drop what the interrupted session logged
    at or after the checkpoint's step (``purge_step``): those steps are trained and logged again,
    and would otherwise show twice."""
    if trainer_cfg.keep_freed_memory:
        keep_freed_memory()
    # Set every time (it is process-wide): the default, "highest", is exact fp32 on every GPU.
    torch.set_float32_matmul_precision(trainer_cfg.float32_matmul_precision)
    return L.Trainer(
        default_root_dir=run_dir,
        accelerator=trainer_cfg.accelerator,
        devices=trainer_cfg.devices,
        num_nodes=trainer_cfg.num_nodes,
        strategy=trainer_cfg.strategy,
        precision=trainer_cfg.precision,
        deterministic=trainer_cfg.deterministic,
        logger=RunLogger(save_dir=run_dir, name="", version="tb", default_hp_metric=False,
                         purge_step=checkpoint_step(resume_from)),  # fmt: skip
        callbacks=[
            *checkpoints,
            SaveOnException(run_dir / "checkpoints" / "on_exception.ckpt"),
            StopOnNonFiniteLoss(run_dir / "checkpoints"),
            FlushLogsWithCheckpoints(),
            LearningRateMonitor(logging_interval="step"),
            *extra_callbacks,
            progress_bar(),  # after the callbacks that log: its line shows this interval's values
        ],
        enable_model_summary=False,
        **kwargs,
    )
