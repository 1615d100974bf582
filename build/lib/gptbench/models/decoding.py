"""Decoding: greedy, beam search and sampling (temperature, top-k, top-p), with the network's cache.

Both networks decode incrementally: GPT feeds only the new token against its key/value cache,
the LSTM against its (h, c) state; the logits equal those of recomputing the whole sequence
(tests/test_generation.py). Only the BPE vocabulary is ever produced: the task tokens (start,
delimiter, extract) are never generated.

The context. A network sees at most ``n_ctx`` tokens (GPT's learned positions end there):
- ``context="stop"`` (the default): the prompt plus the new tokens never exceed ``n_ctx``;
  generation ends early when the sequence fills the context, and a longer prompt is an error;
- ``context="slide"``: a longer prompt is cut to its last ``n_ctx`` tokens, and once the sequence
  fills the context each new token is predicted from the last ``n_ctx`` tokens. Positions shift
  with the window, so the cache cannot be reused then: each such token costs a full forward pass.

gptbench's vocabularies (and GPT-1's) have no end-of-text token, so every hypothesis runs to the
same length; ``length_penalty`` (score / new_tokens ** length_penalty, as in ``transformers``)
then scales the scores without reordering them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

STRATEGIES = ("greedy", "beam", "sample")
CONTEXT_POLICIES = ("stop", "slide")


@dataclass(frozen=True)
class GenerationConfig:
    """How to decode; ``validate`` names the first impossible setting."""

    max_new_tokens: int = 50
    strategy: str = "greedy"
    num_beams: int = 4  # beam search only
    length_penalty: float = 1.0  # beam search only
    temperature: float = 1.0  # sampling only
    top_k: int | None = None  # sampling only; None = no filter
    top_p: float | None = None  # sampling only; None = no filter
    num_return_sequences: int = 1  # sampling: independent samples; beam: the best beams
    seed: int | None = None  # sampling: a private generator; None = torch's global RNG
    context: str = "stop"

    def validate(self) -> "GenerationConfig":
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {list(STRATEGIES)}, got {self.strategy!r}")
        if self.context not in CONTEXT_POLICIES:
            raise ValueError(f"context must be one of {list(CONTEXT_POLICIES)}, got {self.context!r}")
        if self.max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be >= 0, got {self.max_new_tokens}")
        if self.num_beams < 1:
            raise ValueError(f"num_beams must be >= 1, got {self.num_beams}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0 (use strategy='greedy' for argmax), got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"top_k must be >= 1 (or None for no filter), got {self.top_k}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1] (or None for no filter), got {self.top_p}")
        if self.num_return_sequences < 1:
            raise ValueError(f"num_return_sequences must be >= 1, got {self.num_return_sequences}")
        if self.strategy == "greedy" and self.num_return_sequences > 1:
            raise ValueError("greedy decoding returns one sequence per prompt: num_return_sequences must be 1")
        if self.strategy == "beam" and self.num_return_sequences > self.num_beams:
            raise ValueError(f"num_return_sequences ({self.num_return_sequences}) must be <= num_beams "
                             f"({self.num_beams})")  # fmt: skip
        return self


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Logits (..., V) with all but the ``k`` largest set to -inf (ties at the k-th value kept)."""
    kth = torch.topk(logits, min(k, logits.shape[-1]), dim=-1).values[..., -1:]  # (..., 1)
    return logits.masked_fill(logits < kth, -float("inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filter: keep the smallest set of most likely tokens whose probability reaches ``p``
    (always at least the most likely one); the rest get -inf."""
    sorted_logits, order = torch.sort(logits, descending=True, dim=-1)  # (..., V)
    probs = sorted_logits.softmax(dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs  # probability of the tokens ranked above each one
    drop_sorted = mass_before >= p  # the set already reached p without this token
    drop = drop_sorted.scatter(-1, order, drop_sorted)  # back to vocabulary order
    return logits.masked_fill(drop, -float("inf"))


class _IncrementalLM:
    """Sequences (N, L) with the network's cache of them: ``next_logits`` feeds only the tokens
    appended since the last call (or recomputes the last n_ctx tokens when the window slides)."""

    def __init__(self, model, input_ids: torch.Tensor):
        self.model, self.seqs = model, input_ids
        self.past, self.cached, self.fed = None, 0, 0  # cache length, and how much of seqs it covers

    def next_logits(self) -> torch.Tensor:
        """(N, vocab_size) float32 logits of the token after each sequence."""
        n_ctx, length = self.model.config.n_ctx, self.seqs.shape[1]
        new = length - self.fed
        if self.past is None or self.cached + new > n_ctx:  # (re)start on the last n_ctx tokens
            window = self.seqs[:, -n_ctx:]
            hidden, self.past = self.model(window)
            self.cached = window.shape[1]
        else:
            hidden, self.past = self.model(self.seqs[:, self.fed :], past_key_values=self.past)
            self.cached += new
        self.fed = length
        return self.model.lm_head(hidden[:, -1])[:, : self.model.config.vocab_size].float()  # (N, V)

    def append(self, tokens: torch.Tensor, rows: torch.Tensor | None = None) -> None:
        """Continue sequence ``rows[i]`` (default: i) with ``tokens[i]``; the cache follows."""
        if rows is not None:
            self.seqs = self.seqs[rows]
            self.past = self.model.select_past(self.past, rows)
        self.seqs = torch.cat([self.seqs, tokens[:, None]], dim=1)


@torch.no_grad()
def generate(model, input_ids, max_new_tokens: int = 50, **options) -> torch.Tensor:
    """The prompts ``input_ids`` ((T,) or (B, T) ids, a list or LongTensor; no padding) followed by
    up to ``max_new_tokens`` new tokens: a LongTensor (B * num_return_sequences, T + new), the
    sequences of one prompt adjacent (the best beam first). ``options``: the fields of
    :class:`GenerationConfig` (strategy, num_beams, length_penalty, temperature, top_k, top_p,
    num_return_sequences, seed, context)."""
    cfg = GenerationConfig(max_new_tokens=max_new_tokens, **options).validate()
    device = model.tokens_embed.weight.device
    ids = torch.as_tensor(input_ids, dtype=torch.long, device=device)
    ids = ids[None] if ids.dim() == 1 else ids
    if ids.dim() != 2 or ids.shape[1] == 0:
        raise ValueError(f"the prompt is empty: input_ids must hold at least one token, got shape {tuple(ids.shape)}")
    n_ctx, vocab = model.config.n_ctx, model.config.vocab_size
    if int(ids.min()) < 0 or int(ids.max()) >= model.config.n_tokens:
        raise ValueError(f"input_ids must be token ids in [0, {model.config.n_tokens}), got "
                         f"{int(ids.min())}..{int(ids.max())}")  # fmt: skip
    if ids.shape[1] > n_ctx:
        if cfg.context == "stop":
            raise ValueError(f"the prompt has {ids.shape[1]} tokens, more than the model's context n_ctx={n_ctx}; "
                             "shorten it, or pass context='slide' to keep its last n_ctx tokens")  # fmt: skip
        ids = ids[:, -n_ctx:]
    budget = cfg.max_new_tokens if cfg.context == "slide" else min(cfg.max_new_tokens, n_ctx - ids.shape[1])
    was_training = model.training
    model.eval()
    try:
        if cfg.strategy == "beam":
            return torch.cat([_beam_search(model, prompt[None], budget, cfg, vocab) for prompt in ids])
        lm = _IncrementalLM(model, ids.repeat_interleave(cfg.num_return_sequences, dim=0))
        generator = None
        if cfg.strategy == "sample" and cfg.seed is not None:
            generator = torch.Generator(device=device).manual_seed(cfg.seed)
        for _ in range(budget):
            logits = lm.next_logits()  # (N, V)
            lm.append(logits.argmax(-1) if cfg.strategy == "greedy" else _sample(logits, cfg, generator))
        return lm.seqs
    finally:
        model.train(was_training)


def _sample(logits: torch.Tensor, cfg: GenerationConfig, generator: torch.Generator | None) -> torch.Tensor:
    """One token per row of ``logits`` (N, V): temperature, then top-k, then top-p (transformers' order)."""
    logits = logits / cfg.temperature
    if cfg.top_k is not None:
        logits = top_k_filter(logits, cfg.top_k)
    if cfg.top_p is not None:
        logits = top_p_filter(logits, cfg.top_p)
    return torch.multinomial(logits.softmax(dim=-1), 1, generator=generator)[:, 0]


def _beam_search(model, prompt: torch.Tensor, budget: int, cfg: GenerationConfig, vocab: int) -> torch.Tensor:
    """Beam search on one prompt (1, T): keep the ``num_beams`` partial sequences with the highest
    summed log-probability; return the best ``num_return_sequences`` (best first)."""
    lm = _IncrementalLM(model, prompt)
    scores = torch.zeros(1, device=prompt.device)  # (beams,): one beam until the first step widens it
    for _ in range(budget):
        candidates = scores[:, None] + lm.next_logits().log_softmax(dim=-1)  # (beams, V)
        scores, flat = candidates.view(-1).topk(min(cfg.num_beams, candidates.numel()))
        lm.append(flat % vocab, rows=flat // vocab)
    scores = scores / max(budget, 1) ** cfg.length_penalty  # equal lengths: the order is unchanged
    return lm.seqs[scores.argsort(descending=True)[: cfg.num_return_sequences]]


class GenerationMixin:
    """``model.generate(input_ids, max_new_tokens, **options)``: :func:`generate` as a method."""

    def generate(self, input_ids, max_new_tokens: int = 50, **options) -> torch.Tensor:
        return generate(self, input_ids, max_new_tokens, **options)
