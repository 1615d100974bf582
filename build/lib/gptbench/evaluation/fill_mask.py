"""Fill-mask: the BERT encoder's most likely tokens for each [MASK] of a text — the encoder's
inference, beside ``gptbench generate`` for GPT (an encoder reads a whole text at once and
predicts the masked positions; it cannot continue a text).

The text is read as in pre-training: ``[CLS]`` then the text's tokens, each ``[MASK]`` standing
for one token (one BPE piece).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gptbench.data.tokenizer import Tokenizer
from gptbench.models.bert import BERT

MASK_TEXT = "[MASK]"


@dataclass
class Candidate:
    token: str  # the BPE piece, '</w>' (end of word) shown as a trailing space
    probability: float


def encode_with_masks(tokenizer: Tokenizer, text: str, mask_id: int, cls_id: int) -> list[int]:
    """``[CLS]`` + the text's ids with ``mask_id`` for each ``[MASK]``."""
    pieces = text.split(MASK_TEXT)
    if len(pieces) < 2:
        raise ValueError(f"the text has no {MASK_TEXT} to fill: {text!r}")
    ids = [cls_id]
    for i, piece in enumerate(pieces):
        if i:
            ids.append(mask_id)
        if piece.strip():
            ids += tokenizer.encode(piece)
    return ids


@torch.no_grad()
def fill_mask(model: BERT, tokenizer: Tokenizer, text: str, top_k: int = 5) -> list[list[Candidate]]:
    """For each ``[MASK]`` of ``text``, in order, the ``top_k`` BPE tokens by probability (the
    softmax over the BPE vocabulary; task tokens and [MASK] are never proposed)."""
    if not isinstance(model, BERT):
        raise ValueError(f"fill-mask needs the BERT encoder, got a {type(model).__name__} "
                         "(a left-to-right model continues text: gptbench generate)")  # fmt: skip
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    c = model.config
    ids = encode_with_masks(tokenizer, text, c.mask_token_id, c.cls_token_id)
    if len(ids) > c.n_ctx:
        raise ValueError(f"the text is {len(ids)} tokens with [CLS]; the model reads at most n_ctx={c.n_ctx}")
    device = next(model.parameters()).device
    input_ids = torch.tensor([ids], device=device)  # (1, T)
    logits = model.lm_logits(input_ids)[0, input_ids[0] == c.mask_token_id, : c.vocab_size]  # (masks, V)
    probs, best = logits.softmax(dim=-1).topk(min(top_k, c.vocab_size), dim=-1)
    return [[Candidate(tokenizer.id_to_token(i).replace("</w>", " "), p) for i, p in zip(row_ids, row_p)]
            for row_ids, row_p in zip(best.tolist(), probs.tolist())]  # fmt: skip
