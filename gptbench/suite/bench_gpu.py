"""``gptbench bench --device cuda``: the GPU figures, measured in one run, sides interleaved.

At the paper's shape (12 x 768, ctx 512, GPT-1's 40,478 + 3 tokens) under bf16 autocast:

- the raw pre-training step (forward, loss, backward, fused AdamW) of gptbench's ``PretrainModule``
  eager with the unpadded token table, with the LM head's table padded to 64 rows
  (``model.pad_vocab_multiple``), padded with the chunked loss (``trainer.loss_chunk``, eager), and
  padded + compiled (``trainer.compile``), against transformers' ``OpenAIGPTLMHeadModel`` with the
  same weights, batch and autocast;
- MFU of each: FLOPs/s (6 x matmul parameters incl. the tied head + 12 x layers x context x
  width per token, as nanoGPT's ``estimate_mfu``) over the bf16 matmul rate measured in the same
  rounds (8192^3 products), and over the datasheet's dense bf16 peak where the GPU is known;
- the pipeline: pre-training through a real Trainer (gptbench's callbacks, the preset's precision
  and determinism) for ``pipeline_steps`` steps on random token windows held in memory, its own
  logged ``train/tokens_per_sec`` and the wall clock after the warm-up, against the raw compiled
  step (target: >= 90% of it); and the same run with ``trainer.deterministic`` flipped (its cost);
- fine-tuning through a real Trainer at the paper's batch (32), aux LM on, on random token
  sequences of random lengths 8-64 (SST-2's sentences are mostly in that range): examples/s of the
  preset's settings (padded, compiled) against the eager unpadded step, and padded eager.

Random token ids cost the same as real ones: the data only moves shapes here. The tokenized corpus
and the task data stay out of it, so the command needs neither spaCy nor ``../shared``.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Callable

import torch
from lightning.pytorch.callbacks import Callback

from gptbench.io import atomic_write_json
from gptbench.suite.bench import Figure, interleaved, reference_model

# Dense bf16 tensor-core peaks from NVIDIA's datasheets (SXM parts), FLOP/s.
DATASHEET_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12}
PAPER_SHAPE = dict(n_layer=12, n_embd=768, n_head=12, n_ctx=512, vocab_size=40478)
LOSS_CHUNK = 8192  # positions per chunk of the chunked loss: 4 chunks of the paper's 64 x 512


def datasheet_peak(device_name: str) -> float | None:
    return next((peak for gpu, peak in DATASHEET_BF16.items() if gpu in device_name), None)


def flops_per_token(n_layer: int, n_embd: int, n_ctx: int, n_tokens: int, **_) -> float:
    """Training FLOPs per token: 6 x the matmul parameters (blocks and the tied LM head) plus the
    attention's 12 x layers x context x width (nanoGPT's estimate_mfu, PaLM's count)."""
    return 6 * (12 * n_layer * n_embd**2 + n_tokens * n_embd) + 12 * n_layer * n_ctx * n_embd


def drain(device: torch.device) -> None:
    """Wait for the device's queued kernels (a no-op on the CPU, which runs them as they come)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def synchronized(fn: Callable[[], object], device: torch.device) -> Callable[[], None]:
    """``fn`` followed by waiting for the device, so a wall-clock timing covers its kernels."""

    def run() -> None:
        fn()
        drain(device)

    return run


def matmul_side(device: torch.device, n: int = 8192, products: int = 10) -> tuple[Callable[[], None], float]:
    a, b = (torch.randn(n, n, device=device, dtype=torch.bfloat16) for _ in range(2))
    return synchronized(lambda: [a @ b for _ in range(products)], device), 2 * n**3 * products


def gpt_config(pad: int, **shape):
    from gptbench.models.gpt import GPTConfig

    return GPTConfig(**{**PAPER_SHAPE, **shape, "pad_vocab_multiple": pad})


def raw_step_sides(device: torch.device, batch: int, steps: int, shape: dict) -> tuple[dict, str]:
    """Sides doing ``steps`` optimizer steps each: ours eager unpadded, padded, padded with the chunked
    loss, padded + compiled, and transformers with the same weights; the note names transformers'
    version (or why it is absent)."""
    from gptbench.training.common import adamw
    from gptbench.training.pretrain import PretrainModule

    config = gpt_config(1, **shape)
    x = torch.randint(0, config.vocab_size, (batch, config.n_ctx + 1), device=device)
    inputs, targets = x[:, :-1], x[:, 1:]

    def side(module: torch.nn.Module, loss_of: Callable[[], torch.Tensor]) -> Callable[[], None]:
        optimizer = adamw(module, 1e-4, 0.01, (0.9, 0.999), 1e-8)  # fused: every parameter is on the GPU

        def step() -> None:
            for _ in range(steps):
                optimizer.zero_grad(set_to_none=True)
                with torch.autocast(device.type, dtype=torch.bfloat16):
                    loss = loss_of()
                loss.backward()
                optimizer.step()

        return synchronized(step, device)

    torch.manual_seed(0)
    padded = replace(config, pad_vocab_multiple=64)
    modules = {"eager": PretrainModule(config), "padded": PretrainModule(padded),
               "chunked": PretrainModule(padded, loss_chunk=LOSS_CHUNK),
               "compiled": PretrainModule(padded, compile=True)}  # fmt: skip
    for m in modules.values():
        m.load_state_dict(modules["eager"].state_dict())
        m.to(device).train()
    sides = {name: side(m, lambda m=m: m.training_loss(inputs, targets)) for name, m in modules.items()}
    from gptbench.suite.bench import lm_loss

    theirs, note = reference_model(modules["eager"].model.cpu())
    modules["eager"].to(device)
    if theirs is not None:
        theirs = theirs.to(device).train()
        sides["transformers"] = side(theirs, lambda: lm_loss(theirs(inputs).logits, targets))
    return sides, note


class StepClock(Callback):
    """Wall time from the end of step ``warmup`` (compiling and the first steps excluded) to the end of
    training, the GPU drained at both ends."""

    def __init__(self, warmup: int):
        self.warmup, self.start, self.seconds, self.steps = warmup, None, None, 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.warmup:
            drain(pl_module.device)
            self.start = time.perf_counter()

    def on_train_end(self, trainer, pl_module) -> None:
        drain(pl_module.device)
        self.seconds, self.steps = time.perf_counter() - self.start, trainer.global_step - self.warmup


def trainer_for(run_dir: Path, preset, device: torch.device, steps: int, warmup: int, log_every: int, **kwargs):
    from gptbench.training.common import make_trainer

    clock = StepClock(warmup)
    accelerator = "gpu" if device.type == "cuda" else "cpu"
    trainer = make_trainer(run_dir, replace(preset.trainer, accelerator=accelerator, devices=1), [], extra_callbacks=[clock],
                           max_steps=steps, log_every_n_steps=log_every, enable_checkpointing=False,
                           num_sanity_val_steps=0, limit_val_batches=0, **kwargs)  # fmt: skip
    return trainer, clock


def pretrain_through_trainer(device: torch.device, preset, batch: int, steps: int, shape: dict) -> tuple[float, float]:
    """(wall-clock tokens/s after the warm-up, the run's own logged train/tokens_per_sec) of
    pre-training through a real Trainer with ``preset``'s trainer and model settings."""
    from torch.utils.data import DataLoader, TensorDataset

    from gptbench.training.pretrain import PretrainModule

    config = gpt_config(preset.model.pad_vocab_multiple, **shape)
    windows = torch.randint(0, config.vocab_size, (batch * steps, config.n_ctx + 1), dtype=torch.int32)
    loader = DataLoader(TensorDataset(windows[:, :-1].long(), windows[:, 1:].long()), batch_size=batch,
                        pin_memory=device.type == "cuda")  # fmt: skip
    torch.manual_seed(0)
    module = PretrainModule(config, max_steps=steps, warmup_steps=10, compile=preset.trainer.compile)
    with tempfile.TemporaryDirectory() as tmp:
        trainer, clock = trainer_for(Path(tmp), preset, device, steps, min(20, steps // 4), log_every=50)
        trainer.fit(module, loader)
    logged = float(trainer.callback_metrics.get("train/tokens_per_sec", float("nan")))
    return clock.steps * batch * config.n_ctx / clock.seconds, logged


def pipeline_figures(device: torch.device, batch: int, steps: int, raw_compiled_tps: float,
                     shape: dict) -> list[Figure]:  # fmt: skip
    """The paper preset's pre-training through the Trainer against the raw compiled step, and the same
    run with ``trainer.deterministic`` flipped against it (what the preset's choice costs or saves)."""
    from gptbench.config import load_config

    preset = load_config("paper")
    wall, logged = pretrain_through_trainer(device, preset, batch, steps, shape)
    flipped = replace(preset, trainer=replace(preset.trainer, deterministic=not preset.trainer.deterministic))
    other, _ = pretrain_through_trainer(device, flipped, batch, steps, shape)
    run = f"batch {batch}, {steps} steps, timed after the first {min(20, steps // 4)}"
    t = preset.trainer
    return [Figure("pre-training through the Trainer, paper preset", wall, raw_compiled_tps, "tokens/s",
                   ">= 90% of the raw compiled step", wall / raw_compiled_tps,
                   f"{run}; the run's own train/tokens_per_sec {logged:,.0f}; precision {t.precision}, compile "
                   f"{t.compile}, pad_vocab_multiple {preset.model.pad_vocab_multiple}, deterministic "
                   f"{t.deterministic}", ratio_is_fraction=True),
            Figure(f"pre-training through the Trainer, deterministic {flipped.trainer.deterministic} vs "
                   f"{t.deterministic} (the preset's)", other, wall, "tokens/s", "report", other / wall,
                   f"{run}; the issue measured 6% for determinism on the raw eager step")]  # fmt: skip


def finetune_figure(device: torch.device, batch: int, steps: int, shape: dict) -> Figure:
    """Examples/s of fine-tuning through a real Trainer with the paper preset's trainer settings: its
    model settings (padded table, compiled step) against the eager unpadded step; padded eager in
    the note."""
    from torch.utils.data import DataLoader

    from gptbench.config import load_config
    from gptbench.training.finetune import FinetuneModule

    preset = load_config("paper")
    config = gpt_config(1, **shape)
    generator = torch.Generator().manual_seed(0)
    longest = min(64, config.n_ctx)

    def example(i: int) -> dict:
        length = int(torch.randint(min(8, longest), longest + 1, (1,), generator=generator))
        return {"ids": torch.randint(0, config.vocab_size, (length,), generator=generator), "label": i % 2}

    examples = [example(i) for i in range(batch * steps)]

    def collate(items: list[dict]) -> dict:
        T = max(len(e["ids"]) for e in items)
        ids = torch.zeros(len(items), 1, T, dtype=torch.long)
        mask = torch.zeros(len(items), 1, T, dtype=torch.long)
        for i, e in enumerate(items):
            ids[i, 0, : len(e["ids"])], mask[i, 0, : len(e["ids"])] = e["ids"], 1
            ids[i, 0, len(e["ids"]) - 1] = config.vocab_size + 2  # the extract token ends each sequence
        return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([e["label"] for e in items])}

    pad, compiled = preset.model.pad_vocab_multiple, preset.trainer.compile
    rate = {}
    for side, (multiple, compile) in {"eager": (1, False), "padded": (pad, False), "preset": (pad, compiled)}.items():
        torch.manual_seed(0)
        module = FinetuneModule(gpt_config(multiple, **shape), "sst2", lm_coef=preset.finetune.lm_coef,
                                total_steps=steps, compile=compile)  # fmt: skip
        loader = DataLoader(examples, batch_size=batch, collate_fn=collate, pin_memory=device.type == "cuda")
        with tempfile.TemporaryDirectory() as tmp:
            trainer, clock = trainer_for(Path(tmp), preset, device, steps, min(20, steps // 4), log_every=50)
            trainer.fit(module, loader)
        rate[side] = clock.steps * batch / clock.seconds
    return Figure("fine-tuning through the Trainer, paper preset", rate["preset"], rate["eager"], "examples/s",
                  ">= 2x", rate["preset"] / rate["eager"],
                  f"batch {batch}, aux LM {preset.finetune.lm_coef}, random ids of 8-64 tokens; ours "
                  f"pad_vocab_multiple {pad}, compile {compiled}; reference eager, unpadded; padded eager "
                  f"{rate['padded']:,.0f} examples/s ({rate['padded'] / rate['eager']:.2f}x). The issue measured 420 "
                  f"examples/s on SST-2 before these levers (real sentences, eager, unpadded)")  # fmt: skip


def run_gpu_bench(out_dir: Path, reps: int = 5, steps: int = 3, batch: int = 64, pipeline_steps: int = 300,
                  finetune_steps: int = 200, shape: dict | None = None, device: str = "cuda",
                  matmul_n: int = 8192) -> list[Figure]:  # fmt: skip
    """Measure the GPU figures on ``device`` (``cuda`` = cuda:0), print the table, write
    ``out_dir/bench_gpu.json``. ``shape`` overrides the paper's; tests run the same code on the CPU
    at a tiny shape (``device="cpu"``, a small ``matmul_n``)."""
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("bench --device cuda: no CUDA device is visible (torch.cuda.is_available() is False)")
    shape = shape or {}
    sides, note = raw_step_sides(device, batch, steps, shape)
    matmul, matmul_flops = matmul_side(device, matmul_n)
    sides["matmul"] = matmul
    start = time.perf_counter()
    for fn in sides.values():
        fn()  # warm-up; compiles the compiled side
    warm_seconds = time.perf_counter() - start
    seconds = interleaved(sides, reps)
    config = gpt_config(1, **shape)
    tokens = steps * batch * config.n_ctx
    per_token = flops_per_token(**asdict(config), n_tokens=config.n_tokens)
    peak = matmul_flops / seconds["matmul"]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    sheet = datasheet_peak(name)
    tps = {side: tokens / seconds[side] for side in sides if side != "matmul"}

    def mfu(side: str) -> str:
        sheet_part = f", {per_token * tps[side] / sheet:.1%} of the datasheet's {sheet / 1e12:.0f}" if sheet else ""
        return f"MFU {per_token * tps[side] / peak:.1%} of the measured {peak / 1e12:.0f} TFLOP/s{sheet_part}"

    label = f"{config.n_layer}x{config.n_embd}, ctx {config.n_ctx}, batch {batch}, bf16"
    figures = []
    if "transformers" in tps:
        figures.append(Figure(f"pre-training step vs transformers, {label}", tps["compiled"], tps["transformers"],
                              "tokens/s", ">= 4x", tps["compiled"] / tps["transformers"],
                              f"ours padded + compiled; {mfu('compiled')}; {note}",
                              spread=seconds.spread("compiled", "transformers")))  # fmt: skip
    figures.append(Figure(f"pre-training step, padded vs unpadded table, {label}", tps["padded"], tps["eager"],
                          "tokens/s", "report", tps["padded"] / tps["eager"], f"both eager; {mfu('eager')} unpadded",
                          spread=seconds.spread("padded", "eager")))  # fmt: skip
    figures.append(Figure(f"pre-training step, chunked vs plain loss (both padded, eager), {label}", tps["chunked"],
                          tps["padded"], "tokens/s", "report", tps["chunked"] / tps["padded"],
                          f"trainer.loss_chunk={LOSS_CHUNK} positions; {mfu('chunked')}",
                          spread=seconds.spread("chunked", "padded")))  # fmt: skip
    figures.append(Figure(f"pre-training step, compiled vs eager (both padded), {label}", tps["compiled"], tps["padded"],
                          "tokens/s", "keep if > 1x", tps["compiled"] / tps["padded"],
                          f"warm-up incl. compiling {warm_seconds:.0f} s; {mfu('padded')} eager",
                          spread=seconds.spread("compiled", "padded")))  # fmt: skip
    figures.append(Figure(f"pre-training MFU, {label}", per_token * tps["compiled"] / 1e12, peak / 1e12, "TFLOP/s",
                          ">= 45% of the datasheet", per_token * tps["compiled"] / peak, mfu("compiled"),
                          ratio_is_fraction=True, spread=seconds.spread("compiled", "matmul", per_token * tokens / matmul_flops)))  # fmt: skip
    from gptbench.provenance import command_line, git_commit, machine

    def write() -> None:  # after every figure: a later failure loses nothing measured before it
        atomic_write_json(out_dir / "bench_gpu.json", {
            "reps": reps, "steps": steps, "batch": batch, "gpu": name, "torch": torch.__version__,
            "cuda": torch.version.cuda if device.type == "cuda" else None, "machine": machine(),
            "git_commit": git_commit(), "command": command_line(), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "matmul_tflops": peak / 1e12, "datasheet_tflops": sheet / 1e12 if sheet else None,
            "figures": [asdict(f) for f in figures]})  # fmt: skip

    for f in figures:
        print(f.line(), flush=True)
    write()
    for measure in (lambda: pipeline_figures(device, batch, pipeline_steps, tps["compiled"], shape),
                    lambda: [finetune_figure(device, 32, finetune_steps, shape)]):  # fmt: skip
        for figure in measure():
            figures.append(figure)
            print(figure.line(), flush=True)
        write()
    return figures
