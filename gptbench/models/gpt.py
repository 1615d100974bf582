"""The GPT-1 decoder-only Transformer (Radford et al. 2018), in plain PyTorch.

Reads top to bottom: config -> attention -> MLP -> block -> GPT. Shapes use
B = batch, T = time, C = n_embd, H = n_head, D = C // H.

GPT-1 specifics that differ from GPT-2-style code:
- post-LayerNorm blocks: x = LN(x + attn(x)); x = LN(x + mlp(x)); no final LayerNorm;
- the token embedding holds the BPE vocabulary followed by ``n_special`` task tokens
  (start, delimiter, extract), and the LM head is tied to the whole table;
- position ids follow the attention mask, so left or right padding leaves every
  non-pad position's output unchanged;
- embedding dropout, as in the released code, drops entries of the embedding *tables* (not of
  the summed input vectors, as the Hugging Face port does), and the LM head projects onto the
  same dropped token table that fed the input lookup.

Loading and saving other formats (Hugging Face, OpenAI's .npy shards) lives in
:mod:`gptbench.models.checkpoints`; this module only defines the network.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from gptbench.models.decoding import GenerationMixin
from gptbench.models.pretrained import PretrainedMixin

# Per-layer key/value states: one (key, value) pair of shape (B, H, T_past, D) per block.
PastKeyValues = tuple[tuple[torch.Tensor, torch.Tensor], ...]


@dataclass
class GPTConfig:
    """Architecture of a GPT-1 style model. Defaults are the paper's."""

    vocab_size: int = 40478  # BPE vocabulary (without the special task tokens)
    n_special: int = 3  # start, delimiter, extract, appended after the BPE vocabulary
    n_ctx: int = 512
    n_embd: int = 768
    n_layer: int = 12
    n_head: int = 12
    embd_pdrop: float = 0.1
    attn_pdrop: float = 0.1
    resid_pdrop: float = 0.1
    layer_norm_eps: float = 1e-5
    initializer_range: float = 0.02
    # The LM head multiplies by the token table padded with zero rows to a multiple of this (1 =
    # off): 40,481 rows send GPUs' matmuls to slow kernels, 40,512 to tensor-core ones. Invisible
    # outside the head (see tied_logits); GPU presets set 64, CPU presets keep 1.
    pad_vocab_multiple: int = 1

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first impossible field."""
        positive = ("vocab_size", "n_ctx", "n_embd", "n_layer", "n_head")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"model.{name} must be positive, got {getattr(self, name)}")
        if self.n_special < 0:
            raise ValueError(f"model.n_special must be >= 0, got {self.n_special}")
        check_pad_vocab_multiple(self.pad_vocab_multiple)
        if self.n_embd % self.n_head != 0:
            raise ValueError(
                f"model.n_embd ({self.n_embd}) must be divisible by model.n_head ({self.n_head})"
            )
        for name in ("embd_pdrop", "attn_pdrop", "resid_pdrop"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"model.{name} must be in [0, 1), got {getattr(self, name)}")

    @classmethod
    def paper(cls) -> "GPTConfig":
        """12 layers x 768, 12 heads, 512 context, 40,478 BPE tokens."""
        return cls()

    @property
    def n_tokens(self) -> int:
        """Rows of the token embedding: BPE vocabulary plus special tokens."""
        return self.vocab_size + self.n_special


def check_pad_vocab_multiple(multiple: int) -> None:
    if multiple < 1:
        raise ValueError(f"model.pad_vocab_multiple must be >= 1 (1 = no padding), got {multiple}")


def tied_logits(hidden: torch.Tensor, table: torch.Tensor, multiple: int = 1,
                bias: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
    """``hidden @ table.T (+ bias)``: (..., C) x (V, C) -> (..., V), the product computed against the
    table padded with zero rows to a multiple of ``multiple`` and the padded columns cut off again.

    The padding lives only inside this product: the parameter, its dropout mask, checkpoints and
    every caller keep V rows; the padded rows are constants (no gradient, no optimizer state) and
    their logits never reach a softmax. What changes is the GEMM's shape: on GPUs, a V that is not a
    multiple of 8 falls back to slow kernels (7.5x slower for GPT-1's head on an H200)."""
    rows = table.size(0)
    pad = -rows % multiple
    if pad == 0:
        return F.linear(hidden, table, bias)
    padded_bias = None if bias is None else F.pad(bias, (0, pad))
    return F.linear(hidden, F.pad(table, (0, 0, 0, pad)), padded_bias)[..., :rows]


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.n_head = config.n_head
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)  # q, k, v projections
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)
        self.attn_pdrop = config.attn_pdrop
        self.resid_dropout = nn.Dropout(config.resid_pdrop)

    def forward(
        self,
        x: torch.Tensor,  # (B, T, C)
        mask: torch.Tensor | None,  # (B, 1, T, T_past + T) bool, True = may attend; None = causal
        past: tuple[torch.Tensor, torch.Tensor] | None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        if past is not None:  # prepend the cached prefix: (B, H, T_past + T, D)
            k = torch.cat([past[0], k], dim=2)
            v = torch.cat([past[1], v], dim=2)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=mask is None, dropout_p=self.attn_pdrop if self.training else 0.0
        )  # (B, H, T, D)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y)), (k, v)


class MLP(nn.Module):
    """C -> n_inner -> C with GELU. GPT-1: 4 * C and the tanh GELU; BERT (gptbench.models.bert) passes
    a config with ``n_inner`` and ``gelu_approximate="none"`` (the exact erf GELU)."""

    def __init__(self, config: GPTConfig, gelu_approximate: str = "tanh"):
        super().__init__()
        n_inner = getattr(config, "n_inner", None) or 4 * config.n_embd
        self.c_fc = nn.Linear(config.n_embd, n_inner)
        self.c_proj = nn.Linear(n_inner, config.n_embd)
        self.dropout = nn.Dropout(config.resid_pdrop)
        self.gelu_approximate = gelu_approximate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate=self.gelu_approximate)))


class Block(nn.Module):
    """Post-LN Transformer block, as in GPT-1 (not GPT-2's pre-LN); BERT's too."""

    def __init__(self, config: GPTConfig, gelu_approximate: str = "tanh"):
        super().__init__()
        self.attn = CausalSelfAttention(config)
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps)
        self.mlp = MLP(config, gelu_approximate)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps)

    def forward(self, x, mask, past=None):
        a, present = self.attn(x, mask, past)
        x = self.ln_1(x + a)
        x = self.ln_2(x + self.mlp(x))
        return x, present


class GPT(nn.Module, GenerationMixin, PretrainedMixin):
    """The GPT-1 network: token + learned position embeddings, ``n_layer`` post-LN blocks, and a
    tied LM head (:meth:`lm_head`). ``forward`` returns the last hidden states; ``lm_logits``
    the next-token logits; :meth:`from_pretrained` / :meth:`save_pretrained` read and write
    Hugging Face, OpenAI and gptbench formats."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        config.validate()
        self.config = config
        self.tokens_embed = nn.Embedding(config.n_tokens, config.n_embd)
        self.positions_embed = nn.Embedding(config.n_ctx, config.n_embd)
        self.embd_pdrop = config.embd_pdrop
        # The token table of the last training-mode forward, after dropout: the tied LM head
        # must use the very table (and dropout mask) that the input lookup used.
        self._dropped_tokens_table: torch.Tensor | None = None
        self.h = nn.ModuleList([Block(config) for _ in range(config.n_layer)])
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=std)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        if isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def num_parameters(self, include_special: bool = True) -> int:
        """Parameter count; the LM head is tied, so it adds nothing."""
        n = sum(p.numel() for p in self.parameters())
        if not include_special:
            n -= self.config.n_special * self.config.n_embd
        return n

    def forward(
        self,
        input_ids: torch.Tensor,  # (B, T) token ids
        attention_mask: torch.Tensor | None = None,  # (B, T_past + T), 1 = real token, 0 = pad
        past_key_values: PastKeyValues | None = None,
    ) -> tuple[torch.Tensor, PastKeyValues]:
        """Return the last layer's hidden states (B, T, C) and every layer's key/value states.

        ``past_key_values`` (from an earlier call on a shared prefix) lets a caller score several
        continuations of one prefix without recomputing it.
        """
        B, T = input_ids.shape
        T_past = 0 if past_key_values is None else past_key_values[0][0].shape[2]
        if T_past + T > self.config.n_ctx:
            raise ValueError(
                f"sequence length {T_past + T} exceeds the model's context n_ctx={self.config.n_ctx}"
            )
        if attention_mask is None and past_key_values is None:
            # Plain causal attention: SDPA's is_causal path (flash kernels on GPUs).
            positions = torch.arange(T, device=input_ids.device)[None, :]  # (1, T)
            mask = None
        else:
            if attention_mask is None:
                attention_mask = torch.ones(B, T_past + T, dtype=torch.long, device=input_ids.device)
            if attention_mask.shape != (B, T_past + T):
                raise ValueError(
                    f"attention_mask has shape {tuple(attention_mask.shape)}, expected {(B, T_past + T)}"
                )
            # Positions count real tokens only, so padding never shifts a real token's position.
            keep = attention_mask.bool()  # (B, T_past + T)
            positions = (keep.long().cumsum(dim=1) - 1).clamp(min=0)[:, T_past:]  # (B, T)
            query = torch.arange(T, device=input_ids.device)[:, None] + T_past  # (T, 1)
            key = torch.arange(T_past + T, device=input_ids.device)[None, :]  # (1, T_past + T)
            # Causal and key-padding mask; a pad query also sees itself so that no row is
            # all-masked (which would give NaN); pad outputs are ignored by every caller.
            mask = ((key <= query) & keep[:, None, :]) | (key == query)  # (B, T, T_past + T)
            mask = mask[:, None, :, :]  # (B, 1, T, T_past + T), broadcast over heads

        tokens_table, positions_table = self.embedding_tables()  # (V, C), (n_ctx, C)
        x = F.embedding(input_ids, tokens_table) + F.embedding(positions, positions_table)  # (B, T, C)
        presents = []
        for i, block in enumerate(self.h):
            x, present = block(x, mask, None if past_key_values is None else past_key_values[i])
            presents.append(present)
        return x, tuple(presents)

    def embedding_tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The token and position tables (V, C), (n_ctx, C), with dropout applied in training
        mode: the released code's ``we = dropout(we, embd_pdrop, train)`` on its one table that
        stacks tokens and positions. Remembers the dropped token table for :meth:`lm_head`."""
        tokens, positions = self.tokens_embed.weight, self.positions_embed.weight
        if not self.training or self.embd_pdrop == 0:
            self._dropped_tokens_table = None
            return tokens, positions
        tokens = F.dropout(tokens, self.embd_pdrop, training=True)
        positions = F.dropout(positions, self.embd_pdrop, training=True)
        self._dropped_tokens_table = tokens
        return tokens, positions

    def head_table(self) -> torch.Tensor:
        """The (V, C) table the tied LM head multiplies by: in training mode the dropped table of the
        preceding forward pass (the released code's tied head); in eval mode, the table itself."""
        table = self._dropped_tokens_table if self.training else None
        return self.tokens_embed.weight if table is None else table

    def lm_head(self, hidden: torch.Tensor) -> torch.Tensor:
        """Project hidden states (..., C) onto the tied token embedding (:meth:`head_table`) ->
        (..., vocab + special)."""
        return tied_logits(hidden, self.head_table(), self.config.pad_vocab_multiple)

    def lm_logits(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Next-token logits (B, T, vocab_size + n_special) in float32."""
        hidden, _ = self(input_ids, attention_mask)
        return self.lm_head(hidden).float()

    @staticmethod
    def expand_past(past: PastKeyValues, batch: int) -> PastKeyValues:
        """A batch-1 prefix's key/value states repeated (as views) for ``batch`` continuations."""
        return tuple((k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1)) for k, v in past)

    @staticmethod
    def select_past(past: PastKeyValues, rows: torch.Tensor) -> PastKeyValues:
        """The key/value states of sequences ``rows`` (N,), in that order (beam search's reordering)."""
        return tuple((k[rows], v[rows]) for k, v in past)

    def reinit_blocks_from(self, first: int) -> None:
        """Randomly re-initialise blocks ``first..n_layer-1``: transfer only the embeddings and the
        first ``first`` blocks (the paper's 'layers transferred' ablation)."""
        for block in self.h[first:]:
            block.apply(self._init_weights)

    def init_special_embeddings(self) -> None:
        """Re-draw the special-token rows N(0, initializer_range), as the paper does when
        fine-tuning from a checkpoint that has no such rows."""
        v = self.config.vocab_size
        with torch.no_grad():
            self.tokens_embed.weight[v:].normal_(0.0, self.config.initializer_range)
