"""Zero-shot RACE scoring speed: shared prefix (article + question run once, key/value states
reused for the 4 answers) vs naive (one full sequence per answer).

    python benchmarks/zeroshot_race.py --checkpoint runs/mini/pretrain/model --n 200
    python benchmarks/zeroshot_race.py --random --gpt1-dir ../shared/gpt1   # small random GPT, n_ctx 512

Questions are tokenized and fitted to the context once, outside the timings; the two paths are
timed alternately (shared, naive, shared, ...) and the median of ``--reps`` passes over the N
questions is reported as questions/s for both, with their ratio. Also checks that both paths give
the same scores (max abs difference).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from gptbench.evaluation import zeroshot as zs
from gptbench.models.gpt import GPT, GPTConfig

SHARED = Path(__file__).resolve().parents[2] / "shared"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", help="model (gptbench export dir, .ckpt, HF or OpenAI dir)")
    ap.add_argument("--random", action="store_true", help="a small random GPT with GPT-1's tokenizer instead")
    ap.add_argument("--n-ctx", type=int, default=512, help="context of the random GPT")
    ap.add_argument("--n-embd", type=int, default=128)
    ap.add_argument("--n-layer", type=int, default=4)
    ap.add_argument("--gpt1-dir", default=str(SHARED / "gpt1"))
    ap.add_argument("--data-dir", default=os.environ.get("GPTBENCH_DATA", str(SHARED / "data")))
    ap.add_argument("--n", type=int, default=200, help="RACE dev questions")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()

    if args.random:
        from gptbench.data.tokenizer import Tokenizer

        g = Path(args.gpt1_dir)
        tok = Tokenizer.gpt1(g / "encoder_bpe_40000.json", g / "vocab_40000.bpe")
        torch.manual_seed(0)
        config = GPTConfig(vocab_size=tok.vocab_size, n_ctx=args.n_ctx, n_embd=args.n_embd, n_layer=args.n_layer,
                           n_head=max(1, args.n_embd // 64))  # fmt: skip
        model = GPT(config).to(args.device).eval()
    elif args.checkpoint:
        model, tok = zs.load_model_and_tokenizer(args.checkpoint, args.gpt1_dir, args.device)
    else:
        ap.error("give --checkpoint or --random")
    torch.set_grad_enabled(False)

    from gptbench.tasks import get_task

    records = get_task("race").read("dev", Path(args.data_dir))[0][: args.n]
    items = []
    for r in records:
        context, question = tok.encode_batch([r["context"], r["question"]], num_workers=1)
        answers = tok.encode_batch(list(r["choices"]), num_workers=1)
        items.append(zs.fit_context([tok.start_id] + context + question, answers, model.config.n_ctx))
    prefix_len = np.mean([len(p) for p, _ in items])
    answer_len = np.mean([len(a) for _, c in items for a in c])

    def shared():
        return [zs.continuation_logprobs(model, p, c) for p, c in items]

    def naive():
        return [zs.continuation_logprobs_naive(model, [(p, a) for a in c]) for p, c in items]

    def sync():
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    a, b = shared(), naive()  # warm-up and equality check
    diff = max(float(np.abs(x - y).max()) for qa, qb in zip(a, b) for x, y in zip(qa, qb) if len(x))
    times = {"shared": [], "naive": []}
    for _ in range(args.reps):
        for name, fn in (("shared", shared), ("naive", naive)):
            sync()
            t = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - t)
    qps = {k: len(items) / statistics.median(v) for k, v in times.items()}
    c = model.config
    print(f"model: n_ctx={c.n_ctx} n_embd={c.n_embd} n_layer={c.n_layer} vocab={c.vocab_size} device={args.device} "
          f"threads={torch.get_num_threads()}")  # fmt: skip
    print(f"{len(items)} RACE dev questions, mean prefix {prefix_len:.0f} tokens, mean answer {answer_len:.1f} tokens")
    print(f"shared prefix: {qps['shared']:8.1f} questions/s")
    print(f"naive:         {qps['naive']:8.1f} questions/s")
    print(f"speed-up:      {qps['shared'] / qps['naive']:8.2f}x   (max |score diff| {diff:.2e}, median of {args.reps})")


if __name__ == "__main__":
    main()
