"""BERT's masked-LM objective (Devlin et al. 2019, Section 3.1, Appendix A.1), for the encoder's
pre-training on the same corpus windows as GPT's next-token objective.

15% of the positions of each window are selected; a selected position's input becomes [MASK] 80%
of the time, a random BPE token 10% and stays unchanged 10%; the loss is the cross-entropy of the
original token at the selected positions only. There is no next-sentence prediction: RoBERTa (Liu
et al. 2019) found the MLM objective alone as good or better, and gptbench's corpus windows are
contiguous text, not sentence pairs.

The encoder reads each window as ``[CLS] x_1 .. x_{T-1}``: its first position is the start token
(BERT's [CLS], which fine-tuning reads through the pooler), so it sees T-1 corpus tokens of each
T-token window that GPT reads.
"""

from __future__ import annotations

import torch

from gptbench.models.bert import BERT

MASK_RATE = 0.15
MASK_TOKEN, RANDOM_TOKEN = 0.8, 0.1  # of the selected positions; the remaining 10% stay unchanged
IGNORE = -100  # the label of an unselected position (F.cross_entropy's ignore_index)


def with_cls(windows: torch.Tensor, cls_id: int) -> torch.Tensor:
    """(B, T) corpus windows -> (B, T) inputs ``[CLS] x_1 .. x_{T-1}``."""
    cls = torch.full_like(windows[:, :1], cls_id)
    return torch.cat([cls, windows[:, :-1]], dim=1)


def mask_tokens(
    ids: torch.Tensor,  # (B, T) token ids, position 0 the [CLS] token
    mask_id: int,
    vocab_size: int,  # random replacements are drawn from the BPE vocabulary, specials excluded
    generator: torch.Generator | None = None,
    rate: float = MASK_RATE,
    eligible: torch.Tensor | None = None,  # (B, T) bool: the positions that may be selected
) -> tuple[torch.Tensor, torch.Tensor]:
    """The corrupted inputs (B, T) and the labels (B, T): the original token at the selected
    positions, ``IGNORE`` elsewhere. Only ``eligible`` positions are selected (default: all but
    position 0, [CLS]; fine-tuning also leaves out [SEP] and padding). Every sequence with an
    eligible position gets at least one selected, so no batch has an empty loss. ``generator``: a
    seeded generator for a fixed masking (validation); None draws from the global RNG (training,
    which gptbench's checkpoints save, so a resumed run draws the same masks)."""
    B, T = ids.shape
    if eligible is None:
        if T < 2:
            raise ValueError(f"masked LM needs windows of at least 2 tokens ([CLS] + one), got {T}")
        eligible = torch.ones_like(ids, dtype=torch.bool)
        eligible[:, 0] = False

    def uniform(*shape):
        return torch.rand(*shape, generator=generator, device=ids.device)

    scores = uniform(B, T).masked_fill(~eligible, 2.0)  # (B, T); an ineligible position is never below rate
    selected = scores < rate
    rows = torch.arange(B, device=ids.device)
    selected[rows, scores.argmin(dim=1)] |= eligible.any(dim=1)  # at least one per sequence that has any
    labels = torch.where(selected, ids, torch.full_like(ids, IGNORE))

    action = uniform(B, T)  # 80% [MASK], 10% random, 10% unchanged
    to_mask = selected & (action < MASK_TOKEN)
    to_random = selected & (action >= MASK_TOKEN) & (action < MASK_TOKEN + RANDOM_TOKEN)
    random_ids = torch.randint(vocab_size, (B, T), generator=generator, device=ids.device)
    inputs = torch.where(to_mask, torch.full_like(ids, mask_id), ids)
    inputs = torch.where(to_random, random_ids, inputs)
    return inputs, labels


def freeze_unused(model: BERT, *, pooler: bool = False, mlm_head: bool = False) -> None:
    """Mark the parts of the encoder an objective never reads as not trained: the [CLS] pooler in
    masked-LM pre-training (no next-sentence prediction reads it), the masked-LM head's transform
    and output bias when fine-tuning without the auxiliary loss (its decoder is the tied token
    embedding, which the encoder reads, so it stays trained).

    Under DDP this is what lets the encoder train: DistributedDataParallel waits in every backward
    for a gradient of each parameter that requires one, and fails at the second step when some
    never get one. Frozen, they are not registered, and DDP keeps its default fast path
    (``find_unused_parameters=True`` would instead walk the autograd graph after every forward to
    find them). Nothing else changes: a parameter without a gradient is skipped by AdamW, weight
    decay included, by clipping and by the gradient-norm log, frozen or not."""
    unused = [*(model.pooler_dense.parameters() if pooler else ()),
              *((*model.mlm_dense.parameters(), *model.mlm_ln.parameters(), model.mlm_bias) if mlm_head else ())]  # fmt: skip
    for parameter in unused:
        parameter.requires_grad_(False)
