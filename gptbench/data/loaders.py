"""DataLoader settings that depend on where the batches go.

Lightning copies each batch to a CUDA device with ``non_blocking=True``; the copy is asynchronous
(it overlaps the previous step's kernels) only from pinned host memory, so the loaders pin their
batches when the Trainer runs on CUDA, and nowhere else (pinning costs a copy and buys nothing on
the CPU).
"""

from __future__ import annotations

import lightning as L


def on_cuda(trainer: L.Trainer | None) -> bool:
    """Whether ``trainer`` moves batches to a CUDA device (False without a Trainer)."""
    return trainer is not None and trainer.strategy.root_device.type == "cuda"


def loader_options(trainer: L.Trainer | None, num_workers: int = 0, prefetch_factor: int = 2,
                   persistent_workers: bool = True) -> dict:  # fmt: skip
    """DataLoader keywords: pinned memory on CUDA; with workers, their prefetching and whether they
    outlive an epoch (re-forking them every epoch and every evaluation costs seconds)."""
    options = {"pin_memory": on_cuda(trainer), "num_workers": num_workers}
    if num_workers > 0:
        options |= {"prefetch_factor": prefetch_factor, "persistent_workers": persistent_workers}
    return options
