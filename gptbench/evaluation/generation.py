"""Text from a GPT (or the LSTM): incremental decoding with the model's key/value cache (the LSTM's state).

Only the BPE vocabulary is ever produced (the task tokens are never sampled). A private
``torch.Generator`` drives sampling, so generating never moves the global RNG that dropout
draws from (exact resume of a training run that logs samples stays exact).
"""

from __future__ import annotations

import torch

from gptbench.models import LanguageModel


@torch.no_grad()
def sample(model: LanguageModel, prompt: list[int], max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
           generator: torch.Generator | None = None) -> list[int]:  # fmt: skip
    """Continue ``prompt`` (token ids) by up to ``max_new_tokens`` tokens; stops at the context
    length n_ctx. temperature 0 is greedy. Returns the new ids only."""
    if not prompt:
        raise ValueError("the prompt is empty")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    was_training = model.training
    model.eval()
    device = model.tokens_embed.weight.device
    budget = min(max_new_tokens, model.config.n_ctx - len(prompt))
    ids = torch.tensor([prompt[-model.config.n_ctx :]], device=device)
    new, past = [], None
    for _ in range(max(0, budget)):
        hidden, past = model(ids, past_key_values=past)
        logits = model.lm_head(hidden[0, -1])[: model.config.vocab_size].float()  # (V,), no task tokens
        if temperature == 0:
            token = int(logits.argmax())
        else:
            logits = logits / temperature
            if top_k is not None:
                logits[logits < torch.topk(logits, min(top_k, logits.numel())).values[-1]] = -float("inf")
            probs = torch.softmax(logits, dim=-1).cpu()
            token = int(torch.multinomial(probs, 1, generator=generator))
        new.append(token)
        ids = torch.tensor([[token]], device=device)
    model.train(was_training)
    return new
