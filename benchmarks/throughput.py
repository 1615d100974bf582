"""Training throughput (tokens/s) of a preset's model on this machine.

    python benchmarks/throughput.py mini [key=value ...] [--steps 20]
    python benchmarks/throughput.py mini architecture=lstm     # Table 5's LSTM of the preset

Times full optimizer steps (forward, backward, AdamW) on random tokens of the preset's shape,
after warm-up steps, and prints tokens/s plus how long the preset's pre-training would take.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from gptbench.models import build_model
from gptbench.config import load_config
from gptbench.training.common import adamw


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("config")
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    cfg = load_config(args.config, args.overrides)
    vocab = cfg.tokenizer.vocab_size if cfg.tokenizer.kind == "trained" else 40478
    model = build_model(cfg.network_config(vocab, n_special=3)).train()
    p = cfg.pretrain
    optimizer = adamw(model, p.lr, p.weight_decay, p.betas, p.eps)
    x = torch.randint(0, vocab, (p.batch_size, cfg.model.n_ctx + 1))
    for i in range(args.warmup + args.steps):
        if i == args.warmup:
            start = time.perf_counter()
        logits = model.lm_logits(x[:, :-1])
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), x[:, 1:].reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    seconds = (time.perf_counter() - start) / args.steps
    tokens = p.batch_size * p.accumulate_grad_batches * cfg.model.n_ctx
    parameters = sum(p.numel() for p in model.parameters())
    print(f"{cfg.name} ({cfg.architecture}): {parameters:,} parameters, {torch.get_num_threads()} threads")
    print(f"  {seconds * 1000:.0f} ms/step of {tokens} tokens -> {tokens / seconds:,.0f} tokens/s")
    print(f"  {p.max_steps} steps -> {p.max_steps * seconds * p.accumulate_grad_batches / 60:.1f} min of pre-training")


if __name__ == "__main__":
    main()
