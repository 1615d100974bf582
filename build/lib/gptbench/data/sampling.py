"""Sampling for exact resume and data parallelism: a shuffled order that a resumed epoch can
continue mid-way, split across processes so they together see the single-process batches."""

from __future__ import annotations

from collections.abc import Callable

import lightning as L
import torch
from torch.utils.data.distributed import DistributedSampler


def private_generator(seed: int) -> torch.Generator:
    """For DataLoaders: without one, every new iterator draws its base seed from the global RNG,
    so a resumed run (which creates an extra iterator) would shift every later dropout mask."""
    return torch.Generator().manual_seed(seed)


class ResumableSampler(DistributedSampler):
    """Shuffles ``n`` indices with a generator seeded by (seed, epoch) and, after a resume, skips
    the samples the interrupted epoch already consumed (Lightning calls ``set_epoch``).

    ``samples_done`` is asked when an epoch's iteration starts (after a checkpoint is restored):
    how many samples of this epoch all processes together already trained on.

    Data parallel: process ``rank`` of ``world`` takes every world-th sample of the one shuffled
    order, so the processes' batches together are exactly the single-process batch of
    ``batch_size * world`` (the order is padded by repeating its start to a multiple of
    ``world``). Being a DistributedSampler, Lightning uses it as it is instead of wrapping it.

    With ``lengths``, indices are grouped so that each (global) batch holds examples of similar
    length (less padding), while batch order stays random.
    """

    def __init__(self, n: int, seed: int, lengths=None, batch_size: int = 1,
                 samples_done: Callable[[], int] = lambda: 0, rank: int = 0, world: int = 1):  # fmt: skip
        super().__init__(range(n), num_replicas=world, rank=rank, shuffle=False, drop_last=False)
        self.n, self.seed, self.lengths, self.batch_size = n, seed, lengths, batch_size * world
        self.samples_done = samples_done

    def order(self) -> list[int]:
        """The global order of one epoch (every process computes the same)."""
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.n, generator=g).tolist()
        if self.lengths is not None:
            chunk = self.batch_size * 64
            grouped = []
            for i in range(0, self.n, chunk):
                grouped += sorted(order[i : i + chunk], key=lambda j: -self.lengths[j])
            batches = [grouped[i : i + self.batch_size] for i in range(0, self.n, self.batch_size)]
            # Shuffle whole batches; a short last batch stays last so every batch stays aligned.
            full = [b for b in batches if len(b) == self.batch_size]
            rest = [j for b in batches if len(b) < self.batch_size for j in b]
            order = [j for b in torch.randperm(len(full), generator=g).tolist() for j in full[b]] + rest
        return order + order[: self.total_size - self.n]

    def __iter__(self):
        return iter(self.order()[self.samples_done() :][self.rank :: self.num_replicas])

    def __len__(self) -> int:
        return self.num_samples


def batches_done_this_epoch(trainer: L.Trainer | None) -> int:
    """Training batches of the current epoch already processed (non-zero only while resuming)."""
    if trainer is None or not trainer.fit_loop.restarting:
        return 0
    return trainer.fit_loop.epoch_loop.batch_progress.current.processed


def attached_context(trainer: L.Trainer | None, default: int = 512) -> int:
    """The context length of the model a Trainer runs (a gptbench module's ``model.config``),
    else the paper's 512: data modules fit their examples to it when not told otherwise."""
    model = getattr(getattr(trainer, "lightning_module", None), "model", None)
    return getattr(getattr(model, "config", None), "n_ctx", default)
