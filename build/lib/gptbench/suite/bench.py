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
- the torch.compile lever (first size only): the same step with the forward, LM head and loss
  compiled by inductor, against ours eager; the compile time is in the note;
- zero-shot RACE dev scoring in questions/s: candidates sharing the article + question's key/value
  states, against one full sequence per candidate, for a small GPT and the paper's, with the FLOP
  ratio of the two ways at that shape (sharing cannot save the LM head's share);
- GPT-1's tokenizer in texts/s on book paragraphs and task sentences, against the released
  pipeline (pure-Python BPE after ftfy + spaCy, :mod:`gptbench.suite.released_text_encoder`);
  the ids must be identical;
- fine-tuning examples/s on SST-2 (aux LM on, optimizer step included), batches padded to their
  longest sequence, against the released code's approach of padding every batch to n_ctx;
- pre-training memory: peak RSS of the training loop at two corpus sizes (the tokenized corpus is
  memory-mapped, so it should not grow with the corpus);
- greedy generation in tokens/s: incremental decoding with the key/value cache, against
  recomputing the whole sequence for every new token (both must give the same ids);
- a classification forward of the BERT encoder against GPT's at the same shape, in examples/s
  (the encoder reads its pooled [CLS], GPT its extract token; only GPT can generate);
- pre-training steps with glibc keeping the memory a step frees (:mod:`gptbench.training.allocator`,
  on in every Trainer), against glibc's defaults, each in fresh processes taking turns; the note
  gives both sides' kernel (system) CPU time per step and checks the losses are identical.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from gptbench.io import atomic_write_json, default_cache_dir


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
    spread: tuple[float, float] | None = None  # the ratio's min and max over the interleaved rounds

    def line(self) -> str:
        ref = "" if self.reference is None else f"{self.reference:,.1f}"
        fmt = (lambda r: f"{r:.0%}") if self.ratio_is_fraction else (lambda r: f"{r:.2f}x")
        ratio = "" if self.ratio is None else fmt(self.ratio)
        if self.ratio is not None and self.spread is not None:
            ratio += f" ({fmt(self.spread[0])}-{fmt(self.spread[1])})"
        return f"| {self.name} | {self.ours:,.1f} {self.unit} | {ref} | {ratio} | {self.target} | {self.note} |"


@dataclass
class Timing:
    """Seconds of each side in each round of an interleaved measurement; ``timing[side]`` is the
    side's median."""

    rounds: dict[str, list[float]]

    def __getitem__(self, side: str) -> float:
        return statistics.median(self.rounds[side])

    def __contains__(self, side: str) -> bool:
        return side in self.rounds

    def spread(self, fast: str, slow: str, scale: float = 1.0) -> tuple[float, float]:
        """The min and max over rounds of ``scale`` x slow's seconds over fast's in the same round
        (neighbours' load on a shared machine comes and goes: a round's sides share it)."""
        ratios = [scale * s / f for f, s in zip(self.rounds[fast], self.rounds[slow])]
        return min(ratios), max(ratios)


def interleaved(sides: dict[str, Callable[[], object]], reps: int) -> Timing:
    """Each side's seconds in each of ``reps`` rounds, the sides taking turns in each."""
    times: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(reps):
        for name, fn in sides.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return Timing(times)


def random_gpt(n_layer: int, n_embd: int, n_head: int, n_ctx: int, vocab: int, **_):
    """A gptbench GPT of that size with seed-0 random weights and no special tokens."""
    from gptbench.models.gpt import GPT, GPTConfig

    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=vocab, n_special=0, n_ctx=n_ctx, n_embd=n_embd, n_layer=n_layer, n_head=n_head))


def lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The next-token loss of (B, T, V) ``logits`` against (B, T) ``targets``."""
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten())


def lm_step(logits: torch.Tensor, targets: torch.Tensor, optimizer) -> float:
    """One optimizer step on the next-token loss of (B, T, V) ``logits`` against (B, T) ``targets``."""
    return optimizer_step(lm_loss(logits, targets), optimizer)


def optimizer_step(loss: torch.Tensor, optimizer) -> float:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item()


def in_fresh_process(target: Callable, *args):
    """Run ``target(*args, queue)`` in a spawned process (process-wide settings and peak RSS start
    clean there) and return what it put on the queue."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def matmul_side(n: int = 1024, products: int = 5) -> tuple[Callable[[], object], float]:
    """A side that measures this machine's fp32 matmul rate: ``products`` n x n products, and
    their FLOPs. Timed in the same rounds as the model, it shares the model's machine state."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    return (lambda: [a @ b for _ in range(products)]), 2 * n**3 * products


def pretrain_step_figures(n_layer: int, n_embd: int, n_head: int, n_ctx: int, vocab: int, batch: int,
                          steps: int, reps: int, label: str, compiled: bool = False) -> list[Figure]:  # fmt: skip
    """Tokens/s of a gptbench GPT and of transformers' OpenAIGPTLMHeadModel holding the same weights,
    and the MFU of ours; with ``compiled``, also ours with ``torch.compile`` on the forward, LM head
    and loss (inductor, compiled before timing; its compile time in the note) against ours eager."""
    from gptbench.training.common import adamw

    ours = random_gpt(n_layer, n_embd, n_head, n_ctx, vocab).train()
    x = torch.randint(0, vocab, (batch, n_ctx + 1))
    inputs, targets = x[:, :-1], x[:, 1:]

    def step_fn(model, loss_of):
        optimizer = adamw(model, 1e-4, 0.01, (0.9, 0.999), 1e-8)

        def step():
            for _ in range(steps):
                optimizer_step(loss_of(model), optimizer)

        return step

    matmul, matmul_flops = matmul_side()
    sides = {"ours": step_fn(ours, lambda m: lm_loss(m.lm_logits(inputs), targets)), "matmul": matmul}
    theirs, note = reference_model(ours)
    if theirs is not None:
        sides["transformers"] = step_fn(theirs.train(), lambda m: lm_loss(m(inputs).logits, targets))
    compile_seconds = None
    if compiled:
        twin = random_gpt(n_layer, n_embd, n_head, n_ctx, vocab).train()
        sides["compiled"] = step_fn(twin, torch.compile(lambda m: lm_loss(m.lm_logits(inputs), targets)))
        start = time.perf_counter()
        sides["compiled"]()  # compiles forward and backward
        compile_seconds = time.perf_counter() - start
    for fn in sides.values():
        fn()  # warm-up
    seconds = interleaved(sides, reps)
    tokens = steps * batch * n_ctx
    ours_tps = tokens / seconds["ours"]
    ref_tps = tokens / seconds["transformers"] if "transformers" in seconds else None
    figures = [Figure(f"pre-training step, {label}", ours_tps, ref_tps, "tokens/s", ">= 1.25x",
                      ours_tps / ref_tps if ref_tps else None, note,
                      spread=seconds.spread("ours", "transformers") if ref_tps else None)]  # fmt: skip
    matmul_params = 12 * n_layer * n_embd**2 + vocab * n_embd  # blocks and the (tied) LM head
    flops_per_token = 6 * matmul_params + 12 * n_layer * n_ctx * n_embd
    peak = matmul_flops / seconds["matmul"]
    figures.append(Figure(f"pre-training MFU, {label}", flops_per_token * ours_tps / 1e9, peak / 1e9, "GFLOP/s",
                          ">= 60%", flops_per_token * ours_tps / peak,
                          "reference: this machine's fp32 matmul rate (1024 x 1024), timed in the same rounds",
                          ratio_is_fraction=True,
                          spread=seconds.spread("ours", "matmul", flops_per_token * tokens / matmul_flops)))  # fmt: skip
    if compiled:
        figures.append(Figure(f"pre-training step, torch.compile vs eager, {label}", tokens / seconds["compiled"],
                              ours_tps, "tokens/s", "keep if > 1x", seconds["ours"] / seconds["compiled"],
                              f"inductor; the first step (compiling) took {compile_seconds:.0f} s",
                              spread=seconds.spread("compiled", "ours")))  # fmt: skip
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


def scoring_flops(cfg, prefix: int, conts: list[int], shared: bool) -> tuple[float, float]:
    """(total, LM head) forward FLOPs of scoring continuations of lengths ``conts`` after a prefix of
    ``prefix`` tokens, unpadded: the body's matmuls (2 x 12 C^2 a token a layer), attention (2 x 2 C
    a query-key pair a layer) and the LM head (2 V C a scored position). ``shared``: the prefix once,
    then each continuation against its cache; otherwise one full sequence per continuation."""
    C, n_layer, V = cfg.n_embd, cfg.n_layer, cfg.vocab_size
    body = lambda tokens: 2 * 12 * C * C * n_layer * tokens  # noqa: E731
    attend = lambda queries, keys_before: 2 * 2 * C * n_layer * sum(keys_before + i + 1 for i in range(queries))  # noqa: E731
    head = 2 * V * C * sum(conts)  # every continuation token is scored once either way
    if shared:
        return body(prefix + sum(L - 1 for L in conts)) + attend(prefix, 0) + sum(attend(L - 1, prefix) for L in conts) + head, head
    return sum(body(prefix + L - 1) + attend(prefix + L - 1, 0) for L in conts) + head, head


def zero_shot_race_figure(data_dir: Path, gpt1_dir: Path, n: int, reps: int, shape: dict, label: str) -> Figure:
    """Questions/s of RACE dev scoring with shared prefixes and with one sequence per candidate, on a
    random GPT of ``shape`` (n_layer, n_embd, n_head, n_ctx) with GPT-1's tokenizer; both must give the
    same scores. The note gives the FLOP ratio of the two ways (the most sharing can save at this
    shape) and the LM head's share of the reference's FLOPs, which sharing cannot save."""
    import numpy as np

    from gptbench.data.tokenizer import Tokenizer
    from gptbench.evaluation import zeroshot as zs
    from gptbench.models.gpt import GPT, GPTConfig
    from gptbench.tasks import get_task

    tok = Tokenizer.gpt1(gpt1_dir / "encoder_bpe_40000.json", gpt1_dir / "vocab_40000.bpe")
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, **shape)).eval()
    items = []
    for r in get_task("race").read("dev", data_dir)[0][:n]:
        context, question = tok.encode_batch([r["context"], r["question"]], num_workers=1)
        answers = tok.encode_batch(list(r["choices"]), num_workers=1)
        items.append(zs.fit_context([tok.start_id] + context + question, answers, shape["n_ctx"]))
    with torch.no_grad():
        shared = lambda: [zs.continuation_logprobs(model, p, c) for p, c in items]  # noqa: E731
        naive = lambda: [zs.continuation_logprobs_naive(model, [(p, a) for a in c]) for p, c in items]  # noqa: E731
        diff = max(float(np.abs(x - y).max()) for qa, qb in zip(shared(), naive()) for x, y in zip(qa, qb) if len(x))
        seconds = interleaved({"shared": shared, "naive": naive}, reps)
    flops = {way: [scoring_flops(model.config, len(p), [len(a) for a in c if a], way) for p, c in items]
             for way in (True, False)}  # fmt: skip
    bound = sum(f for f, _ in flops[False]) / sum(f for f, _ in flops[True])
    head_share = sum(h for _, h in flops[False]) / sum(f for f, _ in flops[False])
    ours, ref = len(items) / seconds["shared"], len(items) / seconds["naive"]
    return Figure(f"zero-shot RACE dev, {label}", ours, ref, "questions/s", ">= 2.5x", ours / ref,
                  f"{len(items)} questions, context {shape['n_ctx']}; FLOP ratio {bound:.2f}x, the LM head "
                  f"{head_share:.0%} of the reference's FLOPs; max |score diff| {diff:.1e}",
                  spread=seconds.spread("shared", "naive"))  # fmt: skip


def bench_texts(corpus_dir: Path, data_dir: Path, n: int, seed: int = 0) -> list[str]:
    """``n`` texts: half paragraphs of random books, half sentences of GLUE dev files."""
    import random

    from gptbench.data.corpus import book_text
    from gptbench.tasks import get_task

    rng = random.Random(seed)
    books = sorted(corpus_dir.rglob("*.txt"))
    paragraphs = []
    for book in rng.sample(books, min(10, len(books))):
        paragraphs += [p for p in book_text(book).split("\n") if len(p) > 40]  # one paragraph per line
    sentences = [v for task in ("sst2", "rte", "mrpc", "cola") for r in get_task(task).read("dev", data_dir)[0]
                 for k, v in r.items() if isinstance(v, str) and k != "label"]  # fmt: skip
    return rng.sample(paragraphs, min(n // 2, len(paragraphs))) + rng.sample(sentences, n - n // 2)


def tokenizer_figure(corpus_dir: Path, data_dir: Path, gpt1_dir: Path, n: int, reps: int) -> Figure:
    """Texts/s of gptbench's GPT-1 tokenizer (both cores) and of the released pipeline, on texts
    each side has seen once (both remember work per word or piece, as over a corpus); the note adds
    one first pass of each over ``n // 2`` held-out texts, where ours has only what the first texts
    taught it (its per-piece memory is what pays: a new piece costs more than in the released way)."""
    from gptbench.data.tokenizer import Tokenizer
    from gptbench.suite.released_text_encoder import TextEncoder

    encoder, bpe = gpt1_dir / "encoder_bpe_40000.json", gpt1_dir / "vocab_40000.bpe"
    ours, released = Tokenizer.gpt1(encoder, bpe), TextEncoder(encoder, bpe)
    drawn = bench_texts(corpus_dir, data_dir, n + n // 2)
    half = len(drawn) // 2  # paragraphs first, then sentences: both kinds in each set
    texts, held_out = drawn[: half - n // 4] + drawn[half + n // 4 :], drawn[half - n // 4 : half + n // 4]
    same = sum(a == released.encode(t) for a, t in zip(ours.encode_batch(texts), texts))  # also warms both up
    seconds = interleaved({"ours": lambda: ours.encode_batch(texts),
                           "released": lambda: [released.encode(t) for t in texts]}, reps)  # fmt: skip
    first_pass = interleaved({"ours": lambda: ours.encode_batch(held_out),
                              "released": lambda: [released.encode(t) for t in held_out]}, 1)  # fmt: skip
    fast, slow = len(texts) / seconds["ours"], len(texts) / seconds["released"]
    return Figure("GPT-1 tokenizer", fast, slow, "texts/s", ">= 5x", fast / slow,
                  f"{len(texts)} texts (book paragraphs, GLUE sentences); identical ids: {same}/{len(texts)}; "
                  f"first pass over {len(held_out)} held-out texts: {first_pass['released'] / first_pass['ours']:.2f}x",
                  spread=seconds.spread("ours", "released"))  # fmt: skip


def finetune_figure(data_dir: Path, n_layer: int, n_embd: int, n_head: int, n_ctx: int, vocab: int, batch: int,
                    examples: int, reps: int, label: str, **_) -> Figure:  # fmt: skip
    """Examples/s of fine-tuning steps (task loss + 0.5 x LM loss, backward, AdamW) on SST-2's
    training sentences with GPT-1's input transformation, on a random GPT of the given size: batches
    as the fine-tuning Trainer draws them (shuffled, padded to their longest sequence) against every
    batch padded to n_ctx (the released code). ``examples`` are drawn at random from the whole
    training split, so their lengths are the epoch's; the note adds the length-grouped batches of
    ``finetune.length_grouped=true`` (the ratio is the default's)."""
    import random

    from gptbench.data.sampling import ResumableSampler
    from gptbench.data.task_data import collate, encode_split
    from gptbench.data.tokenizer import Tokenizer
    from gptbench.models.gpt import GPTConfig
    from gptbench.tasks import get_task
    from gptbench.training.common import adamw
    from gptbench.training.finetune import FinetuneModule

    spec = get_task("sst2")
    split = spec.read("train", data_dir)[0]
    records = random.Random(0).sample(split, min(examples, len(split)))
    texts = [r["text"] for r in records]
    tok = Tokenizer.train(texts, vocab_size=vocab - 3, num_workers=1)  # any BPE: the lengths are what count
    encoded = encode_split(spec, records, tok, n_ctx)

    def batched(lengths=None):
        order = list(ResumableSampler(len(encoded), 0, lengths, batch))
        return [collate([encoded[i] for i in order[s : s + batch]]) for s in range(0, len(order), batch)]

    batches = batched()
    grouped = batched([max(map(len, ids)) for ids in encoded["input_ids"]])

    def padded_to_n_ctx(b):
        pad = n_ctx - b["input_ids"].shape[-1]
        return {**b, "input_ids": F.pad(b["input_ids"], (0, pad)), "attention_mask": F.pad(b["attention_mask"], (0, pad))}

    full = [padded_to_n_ctx(b) for b in batches]
    torch.manual_seed(0)
    module = FinetuneModule(GPTConfig(vocab_size=len(tok) - 3, n_ctx=n_ctx, n_embd=n_embd, n_layer=n_layer,
                                      n_head=n_head), "sst2", lm_coef=0.5).train()  # fmt: skip
    optimizer = adamw(module, 6.25e-5, 0.01, (0.9, 0.999), 1e-8)

    def epoch(data):
        for b in data:
            optimizer.zero_grad(set_to_none=True)
            module.training_step(b, 0).backward()
            optimizer.step()

    module.log = lambda *a, **k: None  # no Trainer attached: logging is not measured
    seconds = interleaved({"ours": lambda: epoch(batches), "grouped": lambda: epoch(grouped),
                           "padded": lambda: epoch(full)}, reps)  # fmt: skip
    mean_len = sum(int(b["attention_mask"].sum()) for b in batches) / len(encoded)
    padded_len = {name: sum(b["input_ids"].numel() for b in bs) / len(encoded) for name, bs in
                  (("ours", batches), ("grouped", grouped))}  # fmt: skip
    ours, ref = len(encoded) / seconds["ours"], len(encoded) / seconds["padded"]
    return Figure(f"fine-tuning SST-2, {label}", ours, ref, "examples/s", ">= 3x", ours / ref,
                  f"{len(encoded)} training sentences drawn from {len(split):,}, batch {batch}, mean {mean_len:.0f} "
                  f"tokens, {padded_len['ours']:.0f} padded (n_ctx {n_ctx}); length-grouped batches: "
                  f"{padded_len['grouped']:.0f} padded, {seconds['ours'] / seconds['grouped']:.2f}x the default",
                  spread=seconds.spread("ours", "padded"))  # fmt: skip


def _pretrain_memory(corpus_dir: str, gpt1_dir: str, cache_dir: str, max_bytes: int, steps: int, queue) -> None:
    """In a fresh process: pre-training steps of a small GPT on the cached corpus of ``max_bytes``;
    puts (peak RSS, anonymous RSS, file-backed RSS) in MiB and the corpus's training tokens."""
    import re as _re

    from gptbench.data.corpus import CorpusDataModule
    from gptbench.data.tokenizer import Tokenizer
    from gptbench.models.gpt import GPT, GPTConfig
    from gptbench.training.common import adamw

    torch.set_num_threads(1)
    g = Path(gpt1_dir)
    tok = Tokenizer.gpt1(g / "encoder_bpe_40000.json", g / "vocab_40000.bpe")
    data = CorpusDataModule(corpus_dir, tok, n_ctx=64, batch_size=8, val_books=1, max_bytes=max_bytes,
                            cache_dir=cache_dir)  # fmt: skip
    data.setup()
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, n_ctx=64, n_embd=64, n_layer=2, n_head=2))
    optimizer = adamw(model, 1e-4, 0.01, (0.9, 0.999), 1e-8)
    for step, (x, y) in zip(range(steps), data.train_dataloader()):
        lm_step(model.lm_logits(x.long()), y.long(), optimizer)
    status = Path("/proc/self/status").read_text()
    mib = {k: int(_re.search(rf"{k}:\s+(\d+) kB", status).group(1)) / 1024 for k in ("VmHWM", "RssAnon", "RssFile")}
    queue.put((mib["VmHWM"], mib["RssAnon"], mib["RssFile"], int(data.tokens["train"].size)))


def memory_figure(corpus_dir: Path, gpt1_dir: Path, cache_dir: Path, sizes: tuple[int, int], steps: int) -> Figure:
    """Peak RSS of pre-training on a small and a ten times larger corpus, each in a fresh process
    after the corpus was tokenized by another (tokenization itself holds one book at a time)."""
    measured = []
    for size in sizes:
        for _ in range(2):  # the first process tokenizes (cached), the second is measured
            result = in_fresh_process(_pretrain_memory, str(corpus_dir), str(gpt1_dir), str(cache_dir), size, steps)
        measured.append(result)
    (small_peak, small_anon, _, small_tokens), (large_peak, large_anon, large_file, large_tokens) = measured
    return Figure("pre-training peak RSS", large_peak, small_peak, "MiB", "~1x (memory-mapped)", large_peak / small_peak,
                  f"corpus {large_tokens:,} vs {small_tokens:,} training tokens; anonymous {large_anon:.0f} vs "
                  f"{small_anon:.0f} MiB; file-backed (the map's touched pages) {large_file:.0f} MiB")  # fmt: skip


def generation_figure(n_layer: int, n_embd: int, n_head: int, n_ctx: int, vocab: int, reps: int, label: str,
                      **_) -> Figure:  # fmt: skip
    """Tokens/s of greedy decoding from an 8-token prompt to the full context, with the key/value
    cache and by recomputing the sequence for each token; both must give the same ids."""
    model = random_gpt(n_layer, n_embd, n_head, n_ctx, vocab).eval()
    prompt = torch.randint(0, vocab, (1, 8))
    new = n_ctx - prompt.shape[1]

    @torch.no_grad()
    def recompute():
        seq = prompt
        for _ in range(new):
            seq = torch.cat([seq, model.lm_logits(seq)[:, -1].argmax(-1, keepdim=True)], dim=1)
        return seq

    same = torch.equal(model.generate(prompt, new), recompute())
    seconds = interleaved({"cache": lambda: model.generate(prompt, new), "recompute": recompute}, reps)
    ours, ref = new / seconds["cache"], new / seconds["recompute"]
    return Figure(f"greedy generation, {label}", ours, ref, "tokens/s", "report", ours / ref,
                  f"{new} new tokens after 8, batch 1; same ids: {same}", spread=seconds.spread("cache", "recompute"))  # fmt: skip


def classification_figure(n_layer: int, n_embd: int, n_head: int, n_ctx: int, vocab: int, batch: int, reps: int,
                          label: str) -> Figure:  # fmt: skip
    """Examples/s of one classification forward (eval mode; the states the task head reads) of the
    BERT encoder and of GPT at the same shape, on the same right-padded batch: the encoder reads its
    pooler at [CLS], GPT the extract token. GPT's generation cost is the greedy generation figure."""
    from gptbench.models.bert import BERT, BertConfig
    from gptbench.models.task_head import extract_states

    gpt = random_gpt(n_layer, n_embd, n_head, n_ctx, vocab).eval()
    torch.manual_seed(0)
    bert = BERT(BertConfig(vocab_size=vocab - 4, n_special=4, n_ctx=n_ctx, n_embd=n_embd, n_layer=n_layer,
                           n_head=n_head)).eval()  # fmt: skip
    ids = torch.randint(0, vocab - 4, (batch, 1, n_ctx))  # one sequence per example
    lengths = torch.randint(n_ctx // 2, n_ctx + 1, (batch, 1, 1))
    mask = (torch.arange(n_ctx) < lengths).long()  # (batch, 1, n_ctx), right padding
    sides = {"bert": lambda: extract_states(bert, ids, mask), "gpt": lambda: extract_states(gpt, ids, mask)}
    with torch.no_grad():
        for fn in sides.values():
            fn()  # warm-up
        seconds = interleaved(sides, reps)
    return Figure(f"classification forward, BERT encoder vs GPT, {label}", batch / seconds["bert"],
                  batch / seconds["gpt"], "examples/s", "report", seconds["gpt"] / seconds["bert"],
                  f"batch {batch}, mean {mask.sum().item() / batch:.0f} real tokens; parameters "
                  f"{bert.num_parameters():,} (encoder: + segments, embedding LayerNorm, MLM head, pooler) vs "
                  f"{gpt.num_parameters():,}; the encoder cannot generate (GPT: the greedy generation figure)",
                  spread=seconds.spread("bert", "gpt"))  # fmt: skip


def _allocator_steps(keep: bool, size: dict, steps: int, queue) -> None:
    """In a fresh process: one warm-up and ``steps`` timed pre-training steps of a random GPT of
    ``size``, glibc keeping freed memory or not; puts (seconds, system CPU seconds, last loss)."""
    import resource

    from gptbench.training.allocator import keep_freed_memory
    from gptbench.training.common import adamw

    if keep:
        keep_freed_memory()
    model = random_gpt(**size).train()
    optimizer = adamw(model, 1e-4, 0.01, (0.9, 0.999), 1e-8)
    x = torch.randint(0, size["vocab"], (size["batch"], size["n_ctx"] + 1))

    def step() -> float:
        return lm_step(model.lm_logits(x[:, :-1]), x[:, 1:], optimizer)

    step()
    start, sys_start = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF).ru_stime
    losses = [step() for _ in range(steps)]
    queue.put((time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_stime - sys_start, losses[-1]))


def allocator_figure(size: dict, steps: int, reps: int, label: str) -> Figure:
    """Tokens/s of pre-training steps with glibc keeping freed memory and with its defaults, each
    side in ``reps`` fresh processes taking turns (the setting is process-wide)."""
    runs: dict[bool, list[tuple[float, float, float]]] = {True: [], False: []}
    for _ in range(reps):
        for keep in (True, False):
            runs[keep].append(in_fresh_process(_allocator_steps, keep, size, steps))
    tokens = steps * size["batch"] * size["n_ctx"]
    seconds = {keep: statistics.median(r[0] for r in rs) for keep, rs in runs.items()}
    system = {keep: statistics.median(r[1] for r in rs) / steps for keep, rs in runs.items()}
    same = {r[2] for rs in runs.values() for r in rs} == {runs[True][0][2]}
    return Figure(f"pre-training step, kept freed memory, {label}", tokens / seconds[True], tokens / seconds[False],
                  "tokens/s", "report", seconds[False] / seconds[True],
                  f"system CPU per step {system[True]:.2f} s vs {system[False]:.2f} s (glibc defaults); "
                  f"identical losses: {same}")  # fmt: skip


def run_bench(out_dir: Path, data_dir: Path, gpt1_dir: Path, corpus_dir: Path, reps: int = 5, steps: int = 3,
              race: int = 200, texts: int = 2000, sst2: int = 4000, corpus_sizes: tuple[int, int] = (5_000_000, 50_000_000),
              cache_dir: Path | None = None, sizes: dict[str, dict] | None = None,
              race_shapes: dict[str, tuple[dict, int]] | None = None) -> list[Figure]:  # fmt: skip
    """Measure every figure, print the table, write ``out_dir/bench.json``. ``race_shapes``: label ->
    (GPT shape, questions) for the zero-shot RACE figure; by default a small GPT (the LM head over
    GPT-1's 40k tokens dominates it) on ``race`` questions and the paper's on 1/25 as many.

    Every side runs under the allocator setting of gptbench's Trainers (glibc keeps the memory a
    step frees: :mod:`gptbench.training.allocator`); the last figure compares it with glibc's
    defaults, in fresh processes."""
    from gptbench.training.allocator import keep_freed_memory

    keep_freed_memory()
    sizes = sizes or {
        "mini (6x256, ctx 128, 8k vocab)": dict(n_layer=6, n_embd=256, n_head=8, n_ctx=128, vocab=8003, batch=32),
        "paper (12x768, ctx 512, 40k vocab)": dict(n_layer=12, n_embd=768, n_head=12, n_ctx=512, vocab=40478, batch=2),
    }
    figures = []
    for i, (label, size) in enumerate(sizes.items()):  # torch.compile measured at the first size only
        figures += pretrain_step_figures(**size, steps=steps, reps=reps, label=label, compiled=i == 0)
        print(*(f.line() for f in figures[-3 if i == 0 else -2:]), sep="\n", flush=True)
    race_shapes = race_shapes or {
        "4x128": (dict(n_layer=4, n_embd=128, n_head=2, n_ctx=512), race),
        "paper 12x768": (dict(n_layer=12, n_embd=768, n_head=12, n_ctx=512), max(1, race // 25)),
    }
    for label, (shape, n) in race_shapes.items():
        figures.append(zero_shot_race_figure(data_dir, gpt1_dir, n, reps, shape, label))
        print(figures[-1].line(), flush=True)
    figures.append(tokenizer_figure(corpus_dir, data_dir, gpt1_dir, texts, reps))
    label, size = next(iter(sizes.items()))
    figures.append(finetune_figure(data_dir, **size, examples=sst2, reps=reps, label=label))
    figures.append(memory_figure(corpus_dir, gpt1_dir, cache_dir or default_cache_dir(), corpus_sizes, 20))
    figures.append(generation_figure(**size, reps=reps, label=label))
    figures.append(classification_figure(**size, reps=reps, label=label))
    figures.append(allocator_figure(size, steps, reps, label))
    table = ["| figure | ours | reference | ratio | target | note |", "| --- | --- | --- | --- | --- | --- |",
             *(f.line() for f in figures)]  # fmt: skip
    print("\n".join(table))
    print(f"(ratios of medians over {reps} interleaved rounds, in brackets the min-max of the rounds' ratios; "
          f"{torch.get_num_threads()} threads)")
    from gptbench.provenance import command_line, git_commit, machine

    atomic_write_json(out_dir / "bench.json", {"reps": reps, "steps": steps, "threads": torch.get_num_threads(),
                                               "torch": torch.__version__, "machine": machine(),
                                               "git_commit": git_commit(), "command": command_line(),
                                               "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                                               "figures": [asdict(f) for f in figures]})  # fmt: skip
    return figures
