"""Cross-entropy of a tied LM head, computed a chunk of positions at a time (``trainer.loss_chunk``).

The plain loss, ``F.cross_entropy(model.lm_head(hidden).float(), targets)``, holds the whole
(B*T, V) logits tensor twice while it runs: the head's output (bf16 under autocast) and its fp32
copy for a stable log-softmax, both kept for the backward pass. At the paper's shape (64 x 512
positions, 40,481 rows) that is 2.6 GB + 5.3 GB, written and read again: the issue measured the
fp32 log-softmax backward alone at 4% of an eager step, autocast's copies at 8%.

:func:`chunked_lm_loss` computes the same loss ``chunk`` rows at a time, and each chunk's gradients
right away (the gradient of a softmax cross-entropy is ``softmax - onehot``): logits, their fp32
upcast, the reduction and the two gradient products of one chunk, then the next. No (B*T, V)
tensor ever exists; what is kept for the backward pass is the gradient of the hidden states
(B*T, C) and of the table (V, C). The head's three matrix products are the same products, split
by rows, so the work is unchanged (the same scheme as Liger-Kernel's fused linear cross-entropy).

It is meant for eager runs. Under ``torch.compile`` inductor fuses the upcast and the
log-softmax into its reductions: compiling the plain loss under bf16 autocast on the CPU (torch
2.13, ``run_and_get_code``), the forward and backward graphs allocate the bf16 logits and per-row
fp32 statistics, no fp32 (N, V) tensor. The same is expected from inductor's CUDA backend (not yet
checked on a GPU). So the paper preset, which compiles, leaves this off.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class _ChunkedTiedCrossEntropy(torch.autograd.Function):
    """sum_i weights_i * CE(hidden_i @ table.T, targets_i); gradients computed in the forward pass."""

    @staticmethod
    def forward(ctx, hidden, table, targets, weights, multiple: int, chunk: int):
        rows = table.size(0)
        # The product runs on the table padded to a multiple of ``multiple`` rows (tensor-core
        # shapes, as gptbench.models.gpt.tied_logits); the padded columns are set to -inf before
        # the softmax, so they never win and their gradient is exactly 0.
        padded = F.pad(table, (0, 0, 0, -rows % multiple))
        loss = torch.zeros((), dtype=torch.float32, device=hidden.device)
        want_hidden, want_table = ctx.needs_input_grad[:2]  # neither under no_grad (validation)
        grad_hidden = torch.zeros_like(hidden) if want_hidden else None
        grad_table = torch.zeros(padded.shape, dtype=torch.float32, device=table.device) if want_table else None
        for start in range(0, hidden.size(0), chunk):
            h, t, w = (v[start : start + chunk] for v in (hidden, targets, weights))
            product = F.linear(h, padded)  # (n, V padded), bf16 under autocast
            logits = product.float()
            logits[:, rows:] = float("-inf")
            lse = torch.logsumexp(logits, dim=-1)  # (n,)
            loss += (w * (lse - logits.gather(1, t[:, None]).squeeze(1))).sum()
            if not (want_hidden or want_table):
                continue
            grad = logits.sub_(lse[:, None]).exp_()  # softmax, in place of the logits
            grad[torch.arange(len(t), device=t.device), t] -= 1
            grad = grad.mul_(w[:, None]).to(product.dtype)  # the plain path's backward casts here too
            if want_hidden:
                grad_hidden[start : start + chunk] = grad @ padded
            if want_table:
                grad_table += grad.t() @ h
        ctx.save_for_backward(grad_hidden, grad_table[:rows].to(table.dtype) if want_table else None)
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        grad_hidden, grad_table = ctx.saved_tensors
        return (None if grad_hidden is None else grad_hidden * grad_loss,
                None if grad_table is None else grad_table * grad_loss, None, None, None, None)  # fmt: skip


def chunked_lm_loss(hidden: torch.Tensor, table: torch.Tensor, targets: torch.Tensor,
                    weights: torch.Tensor | None = None, multiple: int = 1, chunk: int = 8192) -> torch.Tensor:  # fmt: skip
    """The cross-entropy of the tied head ``hidden @ table.T`` against ``targets``, ``chunk`` rows
    at a time: the mean over positions, or ``sum_i weights_i * nll_i`` with ``weights``.

    Args:
        hidden: (N, C) states the head reads.
        table: (V, C) the table it multiplies by (a model's ``head_table()``).
        targets: (N,) token ids in [0, V).
        weights: (N,) per-position weights (fp32); default 1/N each.
        multiple: pad the table to a multiple of this many rows inside the product.
        chunk: rows per chunk.
    """
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    if weights is None:
        weights = torch.full(targets.shape, 1 / targets.numel(), dtype=torch.float32, device=targets.device)
    return _ChunkedTiedCrossEntropy.apply(hidden, table, targets, weights.float(), multiple, chunk)
