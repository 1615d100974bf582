"""The LSTM baseline of the paper's Table 5 ("LSTM w/ aux LM"), behind the same interface as GPT.

The paper replaces the Transformer with a single-layer 2048-unit LSTM and keeps everything else:
pre-training, input transformations, task head and auxiliary LM. So this network answers the same
calls as :class:`gptbench.models.gpt.GPT`, and the training code never asks which one it has:

- ``forward(input_ids, attention_mask, past_key_values) -> (hidden (B, T, C), state)``, where the
  "past" is the LSTM's (h, c) state after the prefix, for prefix reuse in zero-shot scoring;
- ``lm_head(hidden)``, ``lm_logits(input_ids)``: the LM head is tied to the token embedding;
- ``init_special_embeddings()``, ``reinit_blocks_from(n)``, ``expand_past(past, B)``,
  ``select_past(past, rows)``, ``generate(...)``, ``num_parameters()``, ``save_pretrained(dir)``.

Shapes: B = batch, T = time, E = n_embd (embedding width, and the width of the hidden states the
heads read), H = n_hidden (LSTM units). The LSTM projects its H-unit output down to E
(``torch.nn.LSTM(proj_size=E)``, an LSTMP), so the tied LM head and the task head see the same
width as with the Transformer; with ``n_hidden`` chosen so that the non-embedding parameters match
the Transformer's (see the presets), the two networks also cost about the same per token.

Dropout: on the embedded inputs (``embd_pdrop``) and on the LSTM's outputs (``resid_pdrop``).
Padding must be on the right (as every gptbench batch is): an LSTM reads left to right, so the
outputs at real positions never depend on the pads after them; a left-padded mask is refused.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch
import torch.nn as nn

from gptbench.models.decoding import GenerationMixin
from gptbench.models.gpt import check_pad_vocab_multiple, tied_logits
from gptbench.models.pretrained import PretrainedMixin

# The (h, c) state after the prefix: h (n_layer, B, E), c (n_layer, B, H).
LSTMState = tuple[torch.Tensor, torch.Tensor]


RIGHT_PADDING = "the LSTM needs right padding: a pad position is followed by a real token"


def check_right_padding(attention_mask: torch.Tensor) -> None:
    """A ValueError for a left-padded mask. On an accelerator the check runs on the device
    (``torch._assert_async``): reading its result every step would wait for the GPU, and a failed
    assert stops the process with the same message at a later kernel."""
    left_padded = (attention_mask[:, 1:] > attention_mask[:, :-1]).any()
    if attention_mask.device.type != "cpu":
        torch._assert_async(~left_padded, RIGHT_PADDING)
    elif left_padded:
        raise ValueError(RIGHT_PADDING)


@dataclass
class LSTMConfig:
    """Architecture of the LSTM language model. Defaults are the paper's (one layer, 2048 units)
    on GPT-1's vocabulary and embedding width."""

    vocab_size: int = 40478
    n_special: int = 3
    n_ctx: int = 512  # the longest sequence the data pipeline builds (an LSTM has no position table)
    n_embd: int = 768
    n_hidden: int = 2048
    n_layer: int = 1
    embd_pdrop: float = 0.1
    resid_pdrop: float = 0.1
    initializer_range: float = 0.02  # the token embedding (and so the tied LM head)
    pad_vocab_multiple: int = 1  # the LM head's product on a padded table (gptbench.models.gpt.tied_logits)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        for name in ("vocab_size", "n_ctx", "n_embd", "n_hidden", "n_layer"):
            if getattr(self, name) <= 0:
                raise ValueError(f"lstm: {name} must be positive, got {getattr(self, name)}")
        if self.n_embd >= self.n_hidden:
            raise ValueError(f"lstm: n_hidden ({self.n_hidden}) must exceed n_embd ({self.n_embd}), the projection width")
        if self.n_special < 0:
            raise ValueError(f"lstm: n_special must be >= 0, got {self.n_special}")
        check_pad_vocab_multiple(self.pad_vocab_multiple)
        for name in ("embd_pdrop", "resid_pdrop"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"lstm: {name} must be in [0, 1), got {getattr(self, name)}")

    @property
    def n_tokens(self) -> int:
        return self.vocab_size + self.n_special


class LSTMLM(nn.Module, GenerationMixin, PretrainedMixin):
    """Token embedding -> ``n_layer`` LSTM layers of ``n_hidden`` units projected to ``n_embd`` ->
    tied LM head. Same calls as GPT (see the module docstring)."""

    def __init__(self, config: LSTMConfig):
        super().__init__()
        config.validate()
        self.config = config
        self.tokens_embed = nn.Embedding(config.n_tokens, config.n_embd)
        self.embd_dropout = nn.Dropout(config.embd_pdrop)
        self.lstm = nn.LSTM(config.n_embd, config.n_hidden, num_layers=config.n_layer, batch_first=True,
                            proj_size=config.n_embd)  # fmt: skip
        self.out_dropout = nn.Dropout(config.resid_pdrop)
        nn.init.normal_(self.tokens_embed.weight, std=config.initializer_range)
        self.reinit_blocks_from(0)

    def num_parameters(self, include_special: bool = True) -> int:
        n = sum(p.numel() for p in self.parameters())
        return n if include_special else n - self.config.n_special * self.config.n_embd

    def forward(
        self,
        input_ids: torch.Tensor,  # (B, T)
        attention_mask: torch.Tensor | None = None,  # (B, T_past + T), 1 = real token; right padding only
        past_key_values: LSTMState | None = None,
    ) -> tuple[torch.Tensor, LSTMState]:
        """The last layer's outputs (B, T, E) and the (h, c) state after the last position."""
        if attention_mask is not None:
            check_right_padding(attention_mask)
        x = self.embd_dropout(self.tokens_embed(input_ids))  # (B, T, E)
        with warnings.catch_warnings():  # a notice that oneDNN has no LSTMP kernel (PyTorch's own runs)
            warnings.filterwarnings("ignore", message="LSTM with projections is not supported with oneDNN")
            out, state = self.lstm(x, past_key_values)  # (B, T, E)
        return self.out_dropout(out), state

    def head_table(self) -> torch.Tensor:
        """The (V, E) table the tied LM head multiplies by: the token embedding."""
        return self.tokens_embed.weight

    def lm_head(self, hidden: torch.Tensor) -> torch.Tensor:
        """Project (..., E) onto the tied token embedding -> (..., vocab + special)."""
        return tied_logits(hidden, self.head_table(), self.config.pad_vocab_multiple)

    def lm_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        hidden, _ = self(input_ids, attention_mask)
        return self.lm_head(hidden).float()

    @staticmethod
    def expand_past(past: LSTMState, batch: int) -> LSTMState:
        """A batch-1 prefix state repeated for ``batch`` continuations."""
        h, c = past
        return h.expand(-1, batch, -1).contiguous(), c.expand(-1, batch, -1).contiguous()

    @staticmethod
    def select_past(past: LSTMState, rows: torch.Tensor) -> LSTMState:
        """The states of sequences ``rows`` (N,), in that order (beam search's reordering)."""
        h, c = past
        return h[:, rows], c[:, rows]

    def reinit_blocks_from(self, first: int) -> None:
        """Re-draw the weights of LSTM layers ``first..n_layer-1`` (PyTorch's LSTM initialisation,
        U(-1/sqrt(H), 1/sqrt(H))): the 'layers transferred' ablation."""
        bound = 1.0 / math.sqrt(self.config.n_hidden)
        with torch.no_grad():
            for name, param in self.lstm.named_parameters():
                if int(name.rsplit("_l", 1)[1]) >= first:
                    param.uniform_(-bound, bound)

    def init_special_embeddings(self) -> None:
        v = self.config.vocab_size
        with torch.no_grad():
            self.tokens_embed.weight[v:].normal_(0.0, self.config.initializer_range)
