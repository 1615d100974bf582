"""``gptbench bench``: gptbench's speed beside a reference, measured in one run on the same inputs.

This machine is shared and noisy, so the figures of merit are ratios: both sides run in the same
process on the same inputs, interleaved (ours, reference, ours, ...), and each side's median over
``reps`` repetitions is compared. Prints a table (figure, ours, reference, ratio, target) and
writes it as JSON (``results/bench/bench.json`` by default).

Figures measured here:

- pre-training step (forward, loss, backward, AdamW step; fp32, train mode) in tokens/s, against
  transformers' ``OpenAIGPTLMHeadModel`` with the identical config and weights;
- pre-training MFU: the model's FLOPs/s (6 x matmul parameters + 12 x layers x context x width
  per token, the PaLM count) over this machine's fp32 matmul rate, measured in the same run;
- zero-shot RACE dev scoring in questions/s: candidates sharing the article + question's key/value
  states, against one full sequence per candidate.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from gptbench.io import atomic_write_json


@dataclass
class Figure:
    name: str
    ours: float
    reference: float | None
    unit: str
    target: str
    ratio: float | None
    note: str = ""
    ratio_is_fraction: bool = False  # shown as a percentage (MFU), not as a speed-up

    def line(self) -> str:
        ref = "" if self.reference is None else f"{self.reference:,.1f}"
        ratio = "" if self.ratio is None else f"{self.ratio:.0%}" if self.ratio_is_fraction else f"{self.ratio:.2f}x"
        return f"| {self.name} | {self.ours:,.1f} {self.unit} | {ref} | {ratio} | {self.target} | {self.note} |"


def interleaved(sides: dict[str, Callable[[], object]], reps: int) -> dict[str, float]:
    """The median seconds of each side over ``reps`` rounds, the sides taking turns in each."""
    times: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(reps):
        for name, fn in sides.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def matmul_flops_per_second(n: int = 1024, reps: int = 5) -> float:
    """This machine's fp32 matmul rate (FLOP/s), the median of ``reps`` n x n products."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    return 2 * n**3 / interleaved({"mm": lambda: a @ b}, reps)["mm"]


def pretrain_step_figures(n_layer: int, n_embd: int, n_head: int, n_ctx: int, vocab: int, batch: int,
                          steps: int, reps: int, label: str) -> list[Figure]:  # fmt: skip
    """Tokens/s of a gptbench GPT and of transformers' OpenAIGPTLMHeadModel holding the same weights,
    and the MFU of ours."""
    from gptbench.models.gpt import GPT, GPTConfig
    from gptbench.training.common import adamw

    torch.manual_seed(0)
    ours = GPT(GPTConfig(vocab_size=vocab, n_special=0, n_ctx=n_ctx, n_embd=n_embd, n_layer=n_layer,
                         n_head=n_head)).train()  # fmt: skip
    x = torch.randint(0, vocab, (batch, n_ctx + 1))
    inputs, targets = x[:, :-1], x[:, 1:].reshape(-1)

    def step_fn(model, logits_of):
        optimizer = adamw(model, 1e-4, 0.01, (0.9, 0.999), 1e-8)

        def step():
            for _ in range(steps):
                logits = logits_of(model)
                loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()

        return step

    sides = {"ours": step_fn(ours, lambda m: m.lm_logits(inputs))}
    theirs, note = reference_model(ours)
    if theirs is not None:
        sides["transformers"] = step_fn(theirs.train(), lambda m: m(inputs).logits)
    for fn in sides.values():
        fn()  # warm-up
    seconds = interleaved(sides, reps)
    tokens = steps * batch * n_ctx
    ours_tps = tokens / seconds["ours"]
    ref_tps = tokens / seconds["transformers"] if "transformers" in seconds else None
    figures = [Figure(f"pre-training step, {label}", ours_tps, ref_tps, "tokens/s", ">= 1.25x",
                      ours_tps / ref_tps if ref_tps else None, note)]  # fmt: skip
    matmul_params = 12 * n_layer * n_embd**2 + vocab * n_embd  # blocks and the (tied) LM head
    flops_per_token = 6 * matmul_params + 12 * n_layer * n_ctx * n_embd
    peak = matmul_flops_per_second()
    figures.append(Figure(f"pre-training MFU, {label}", flops_per_token * ours_tps / 1e9, peak / 1e9, "GFLOP/s",
                          ">= 60%", flops_per_token * ours_tps / peak, "reference: this machine's fp32 matmul rate",
                          ratio_is_fraction=True))  # fmt: skip
    return figures


def reference_model(ours):
    """transformers' OpenAIGPTLMHeadModel with our weights (dropout as ours), or (None, why)."""
    try:
        import transformers
    except ImportError:
        return None, "transformers not installed (pip install transformers): no reference"
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        ours.save_pretrained(tmp)
        theirs = transformers.OpenAIGPTLMHeadModel.from_pretrained(tmp)
    return theirs, f"transformers {transformers.__version__}"


def zero_shot_race_figure(data_dir: Path, gpt1_dir: Path, n: int, reps: int, n_ctx: int = 512) -> Figure:
    """Questions/s of RACE dev scoring with shared prefixes and with one sequence per candidate,
    on a small random GPT with GPT-1's tokenizer; both must give the same scores."""
    import numpy as np

    from gptbench.data.tokenizer import Tokenizer
    from gptbench.evaluation import zeroshot as zs
    from gptbench.models.gpt import GPT, GPTConfig
    from gptbench.tasks import get_task

    tok = Tokenizer.gpt1(gpt1_dir / "encoder_bpe_40000.json", gpt1_dir / "vocab_40000.bpe")
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, n_ctx=n_ctx, n_embd=128, n_layer=4, n_head=2)).eval()
    items = []
    for r in get_task("race").read("dev", data_dir)[0][:n]:
        context, question = tok.encode_batch([r["context"], r["question"]], num_workers=1)
        answers = tok.encode_batch(list(r["choices"]), num_workers=1)
        items.append(zs.fit_context([tok.start_id] + context + question, answers, n_ctx))
    with torch.no_grad():
        shared = lambda: [zs.continuation_logprobs(model, p, c) for p, c in items]  # noqa: E731
        naive = lambda: [zs.continuation_logprobs_naive(model, [(p, a) for a in c]) for p, c in items]  # noqa: E731
        diff = max(float(np.abs(x - y).max()) for qa, qb in zip(shared(), naive()) for x, y in zip(qa, qb) if len(x))
        seconds = interleaved({"shared": shared, "naive": naive}, reps)
    ours, ref = len(items) / seconds["shared"], len(items) / seconds["naive"]
    return Figure("zero-shot RACE dev", ours, ref, "questions/s", ">= 2.5x", ours / ref,
                  f"{len(items)} questions, context {n_ctx}, max |score diff| {diff:.1e}")  # fmt: skip


def run_bench(out_dir: Path, data_dir: Path, gpt1_dir: Path, reps: int = 5, steps: int = 3, race: int = 200,
              sizes: dict[str, dict] | None = None) -> list[Figure]:  # fmt: skip
    """Measure every figure, print the table, write ``out_dir/bench.json``."""
    sizes = sizes or {
        "mini (6x256, ctx 128, 8k vocab)": dict(n_layer=6, n_embd=256, n_head=8, n_ctx=128, vocab=8003, batch=32),
        "paper (12x768, ctx 512, 40k vocab)": dict(n_layer=12, n_embd=768, n_head=12, n_ctx=512, vocab=40478, batch=2),
    }
    figures = []
    for label, size in sizes.items():
        figures += pretrain_step_figures(**size, steps=steps, reps=reps, label=label)
        print(figures[-2].line(), flush=True)
    figures.append(zero_shot_race_figure(data_dir, gpt1_dir, race, reps))
    table = ["| figure | ours | reference | ratio | target | note |", "| --- | --- | --- | --- | --- | --- |",
             *(f.line() for f in figures)]  # fmt: skip
    print("\n".join(table))
    print(f"(medians of {reps} interleaved repetitions; {torch.get_num_threads()} threads)")
    atomic_write_json(out_dir / "bench.json", {"reps": reps, "threads": torch.get_num_threads(),
                                               "figures": [asdict(f) for f in figures]})  # fmt: skip
    return figures
