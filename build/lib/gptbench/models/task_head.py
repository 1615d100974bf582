"""The task head the paper adds for fine-tuning: a linear layer on the extract token's states (the
BERT encoder's: on its pooled [CLS] state)."""

from __future__ import annotations

import torch
import torch.nn as nn

from gptbench.models.bert import BERT


def input_format(model) -> str:
    """How a network's task inputs are laid out (gptbench.data.task_data.layout): "bert" for the
    encoder ([CLS] a [SEP] b [SEP], read at [CLS]), "gpt" for GPT and the LSTM (read at the extract token)."""
    return "bert" if isinstance(model, BERT) else "gpt"


def segment_ids(input_ids: torch.Tensor, sep_id: int) -> torch.Tensor:
    """BERT's segments of (N, T) ids: 0 up to and including the first [SEP], 1 after it."""
    sep = (input_ids == sep_id).long()
    return ((sep.cumsum(dim=1) - sep) > 0).long()


def extract_states(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The states the task head reads, (B, C, D), from (B, C, T) right-padded ids and mask, and all
    hidden states (B*C, T, D). GPT and the LSTM: the last hidden state at each sequence's extract
    token (its last real token). The BERT encoder: its pooler on [CLS], with segment ids."""
    B, C, T = input_ids.shape
    ids, mask = input_ids.view(B * C, T), attention_mask.view(B * C, T)
    if isinstance(model, BERT):
        hidden, _ = model(ids, mask, token_type_ids=segment_ids(ids, model.config.sep_token_id))
        return model.pooler(hidden).view(B, C, -1), hidden
    hidden, _ = model(ids, mask)
    extract = mask.sum(dim=1) - 1  # the extract token ends each sequence
    return hidden[torch.arange(B * C, device=hidden.device), extract].view(B, C, -1), hidden


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
