"""A BERT-style bidirectional encoder (Devlin et al. 2019), behind the same interface as GPT and the LSTM.

Reads top to bottom: config -> BERT. Shapes use B = batch, T = time, C = n_embd.

The computation is GPT-1's (gptbench.models.gpt) wherever the two papers agree, and reuses its code:
the blocks are GPT's post-LN :class:`~gptbench.models.gpt.Block` (x = LN(x + attn(x)); x = LN(x + mlp(x)),
dropout on each sublayer's output and on the attention probabilities), with the same initialisation
(N(0, initializer_range) weights, zero biases, LayerNorm 1/0). It differs in:

- attention: a key-padding mask only, never causal, so every position sees the whole sequence;
- the MLP: the exact (erf) GELU instead of the tanh approximation, and a width ``n_inner``;
- the embedding: token + learned position + segment (token type) embeddings, summed, then a
  LayerNorm and dropout on the summed vectors (GPT-1 drops entries of the tables, and has no LayerNorm);
  positions are 0..T-1 whatever the mask (gptbench batches are right-padded);
- the heads: the masked-LM head (:meth:`BERT.lm_head`: dense + GELU + LayerNorm, then the tied token
  embedding plus an output bias) and the [CLS] pooler (:meth:`BERT.pooler`).

It answers the calls the training code makes on any network (see gptbench.models.lstm), except
next-token decoding: ``generate``, ``expand_past`` and ``select_past`` raise, and ``forward`` refuses
``past_key_values``. Hugging Face ``BertForMaskedLM`` interop (:meth:`BERT.from_pretrained`,
:meth:`BERT.save_pretrained`) lives in :mod:`gptbench.models.checkpoints`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from gptbench.errors import NoNextTokenModel
from gptbench.models.gpt import GPT, Block, GPTConfig, tied_logits
from gptbench.models.pretrained import PretrainedMixin

N_TASK_TOKENS = 3  # start, delimiter, extract: the rows gptbench's tokenizer appends

_NO_DECODING = ("the BERT encoder is bidirectional: it has no next-token decoding (generate) and no key/value "
                "cache; predict masked positions with lm_logits instead (gptbench fill-mask)")  # fmt: skip


@dataclass
class BertConfig:
    """Architecture of a BERT-style encoder. Defaults are BERT-base's shape (12 x 768, 12 heads, 512
    positions) on GPT-1's vocabulary.

    The token embedding holds the BPE vocabulary followed by ``n_special`` rows. gptbench's encoder
    has four: the tokenizer's start, delimiter and extract tokens, then [MASK]; start plays [CLS] and
    delimiter [SEP] (:attr:`cls_token_id`, :attr:`mask_token_id`). A Hugging Face BERT loaded without
    gptbench's record has n_special=0: its own tokenizer knows its special ids."""

    vocab_size: int = 40478  # BPE vocabulary (without the special tokens)
    n_special: int = 3  # rows appended after the BPE vocabulary
    n_ctx: int = 512  # learned positions (Hugging Face's max_position_embeddings)
    n_embd: int = 768
    n_layer: int = 12
    n_head: int = 12
    n_inner: int | None = None  # the MLP width (Hugging Face's intermediate_size); None = 4 * n_embd
    type_vocab_size: int = 2  # segments (token types)
    embd_pdrop: float = 0.1
    attn_pdrop: float = 0.1
    resid_pdrop: float = 0.1
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02
    pad_vocab_multiple: int = 1  # the MLM head's product on a padded table (gptbench.models.gpt.tied_logits)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first impossible field: GPTConfig's checks of the fields the
        two share, then BERT's own."""
        GPTConfig.validate(self)
        if self.n_inner is not None and self.n_inner <= 0:
            raise ValueError(f"model.n_inner must be positive (or None for 4 * n_embd), got {self.n_inner}")
        if self.type_vocab_size <= 0:
            raise ValueError(f"model.type_vocab_size must be positive, got {self.type_vocab_size}")

    @property
    def n_tokens(self) -> int:
        """Rows of the token embedding: BPE vocabulary plus special tokens."""
        return self.vocab_size + self.n_special

    @property
    def cls_token_id(self) -> int:
        """[CLS]: the tokenizer's start token, the first row after the vocabulary."""
        self._require_gptbench_specials()
        return self.vocab_size

    @property
    def sep_token_id(self) -> int:
        """[SEP]: the tokenizer's delimiter token."""
        self._require_gptbench_specials()
        return self.vocab_size + 1

    @property
    def mask_token_id(self) -> int:
        """[MASK]: the row after the tokenizer's three task tokens."""
        self._require_gptbench_specials()
        return self.vocab_size + N_TASK_TOKENS

    def _require_gptbench_specials(self) -> None:
        if self.n_special != N_TASK_TOKENS + 1:
            raise ValueError(f"gptbench's encoder has the 3 task tokens and [MASK] after the vocabulary "
                             f"(n_special=4); this one has n_special={self.n_special}")


class BERT(nn.Module, PretrainedMixin):
    """The encoder: token + position + segment embeddings -> LayerNorm -> ``n_layer`` post-LN blocks
    attending both ways. ``forward`` returns the last hidden states; ``lm_logits`` the masked-LM
    logits; ``pooler`` the [CLS] summary; ``from_pretrained`` / ``save_pretrained`` read and write Hugging
    Face's BertForMaskedLM."""

    def __init__(self, config: BertConfig):
        super().__init__()
        config.validate()
        self.config = config
        self.tokens_embed = nn.Embedding(config.n_tokens, config.n_embd)
        self.positions_embed = nn.Embedding(config.n_ctx, config.n_embd)
        self.segments_embed = nn.Embedding(config.type_vocab_size, config.n_embd)
        self.ln_embd = nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps)
        self.embd_dropout = nn.Dropout(config.embd_pdrop)
        self.h = nn.ModuleList([Block(config, gelu_approximate="none") for _ in range(config.n_layer)])
        # Masked-LM head: transform, then the tied token embedding plus a bias per token.
        self.mlm_dense = nn.Linear(config.n_embd, config.n_embd)
        self.mlm_ln = nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps)
        self.mlm_bias = nn.Parameter(torch.zeros(config.n_tokens))
        self.pooler_dense = nn.Linear(config.n_embd, config.n_embd)
        self.apply(self._init_weights)

    _init_weights = GPT._init_weights  # Hugging Face BERT's initialisation too

    def num_parameters(self, include_special: bool = True) -> int:
        """Parameter count; the MLM decoder is tied, so only its bias adds to it. Without the special
        tokens: less their embedding rows and their output biases."""
        n = sum(p.numel() for p in self.parameters())
        return n if include_special else n - self.config.n_special * (self.config.n_embd + 1)

    def forward(
        self,
        input_ids: torch.Tensor,  # (B, T) token ids
        attention_mask: torch.Tensor | None = None,  # (B, T), 1 = real token, 0 = pad
        past_key_values: None = None,
        token_type_ids: torch.Tensor | None = None,  # (B, T) segment ids; None = all 0
    ) -> tuple[torch.Tensor, None]:
        """The last layer's hidden states (B, T, C), and None: an encoder has no cache to return."""
        if past_key_values is not None:
            raise ValueError("the BERT encoder is bidirectional: it has no key/value cache (every position "
                             "attends to later ones); call it on whole sequences")  # fmt: skip
        B, T = input_ids.shape
        if T > self.config.n_ctx:
            raise ValueError(f"sequence length {T} exceeds the model's context n_ctx={self.config.n_ctx}")
        for name, ids in (("attention_mask", attention_mask), ("token_type_ids", token_type_ids)):
            if ids is not None and ids.shape != (B, T):
                raise ValueError(f"{name} has shape {tuple(ids.shape)}, expected {(B, T)}")
        if attention_mask is None:
            mask = torch.ones(1, 1, 1, T, dtype=torch.bool, device=input_ids.device)  # attend everywhere
        else:
            keep = attention_mask.bool()  # (B, T)
            # A sequence of pads only would leave its attention rows all-masked (NaN in some attention
            # kernels); it attends to every position instead, as under Hugging Face's additive mask.
            keep = keep | ~keep.any(dim=1, keepdim=True)
            mask = keep[:, None, None, :]  # (B, 1, 1, T): key padding, broadcast over heads and queries
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        positions = torch.arange(T, device=input_ids.device)[None, :]  # (1, T)
        x = self.tokens_embed(input_ids) + self.positions_embed(positions) + self.segments_embed(token_type_ids)
        x = self.embd_dropout(self.ln_embd(x))  # (B, T, C)
        for block in self.h:
            x, _ = block(x, mask)  # an explicit mask: GPT's attention is causal only without one
        return x, None

    def lm_head(self, hidden: torch.Tensor) -> torch.Tensor:
        """Masked-LM logits (..., vocab + special) of hidden states (..., C): dense + GELU + LayerNorm,
        then the tied token embedding plus the output bias."""
        h = self.mlm_ln(F.gelu(self.mlm_dense(hidden)))  # (..., C)
        return tied_logits(h, self.tokens_embed.weight, self.config.pad_vocab_multiple, self.mlm_bias)

    def lm_logits(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Masked-LM logits (B, T, vocab_size + n_special) in float32."""
        hidden, _ = self(input_ids, attention_mask, token_type_ids=token_type_ids)
        return self.lm_head(hidden).float()

    def pooler(self, hidden: torch.Tensor) -> torch.Tensor:
        """BERT's sequence summary (B, C): tanh(dense(.)) of the hidden state at position 0 ([CLS])."""
        return torch.tanh(self.pooler_dense(hidden[:, 0]))

    def generate(self, *args, **kwargs):
        """Not available: an encoder does not predict the next token."""
        raise NoNextTokenModel(_NO_DECODING)

    expand_past = select_past = generate  # prefix reuse (zero-shot scoring, beam search) needs a cache

    def reinit_blocks_from(self, first: int) -> None:
        """Randomly re-initialise blocks ``first..n_layer-1`` (the 'layers transferred' ablation)."""
        for block in self.h[first:]:
            block.apply(self._init_weights)

    def init_special_embeddings(self) -> None:
        """Re-draw, at fine-tuning, the special rows masked-LM pre-training never trained: N(0,
        initializer_range) embeddings and zero output biases. In gptbench's encoder those are [SEP]
        (the delimiter) and the unused extract row; [CLS] (read by the pooler, at the start of every
        pre-training window) and [MASK] keep their pre-trained vectors. Another layout of special
        rows is re-drawn whole."""
        c = self.config
        rows = list(range(c.vocab_size, c.n_tokens))
        if c.n_special == N_TASK_TOKENS + 1:
            rows = [r for r in rows if r not in (c.cls_token_id, c.mask_token_id)]
        with torch.no_grad():
            for r in rows:
                self.tokens_embed.weight[r].normal_(0.0, c.initializer_range)
                self.mlm_bias[r] = 0.0
