"""`gptbench bench` at tiny sizes, so the benchmark code cannot rot: what each figure measures (the
same work on both sides, MFU's FLOP count) is checked; speed itself is not asserted."""

import json
import sys

import pytest
import torch
from conftest import CORPUS, DATA, GPT1, compiles_on_cpu

from gptbench.cli import main
from gptbench.suite.bench import Figure, Timing, interleaved, lm_loss, random_gpt, reference_model, run_bench
from gptbench.training.allocator import keep_freed_memory


@compiles_on_cpu  # its first size measures the torch.compile lever
def test_bench_measures_every_figure_beside_its_reference(tmp_path, capsys):
    tiny = {"tiny": dict(n_layer=1, n_embd=32, n_head=2, n_ctx=16, vocab=300, batch=2)}
    race = {"tiny": (dict(n_layer=1, n_embd=32, n_head=2, n_ctx=64), 2)}
    figures = run_bench(tmp_path, DATA, GPT1, CORPUS, reps=1, steps=1, texts=40, sst2=24, corpus_sizes=(100_000, 1_000_000),
                        cache_dir=tmp_path / "cache", sizes=tiny, race_shapes=race)  # fmt: skip
    assert [f.name for f in figures] == ["pre-training step, tiny", "pre-training MFU, tiny",
                                         "pre-training step, torch.compile vs eager, tiny", "zero-shot RACE dev, tiny",
                                         "GPT-1 tokenizer", "fine-tuning SST-2, tiny", "pre-training peak RSS",
                                         "greedy generation, tiny", "classification forward, BERT encoder vs GPT, tiny",
                                         "pre-training step, kept freed memory, tiny"]  # fmt: skip
    assert all(f.ours > 0 and f.reference > 0 for f in figures)  # both sides measured
    # MFU's numerator is the step's tokens/s times the FLOPs of a token: 6 x the matmul weights (the
    # block's 12 x 32^2 and the tied head's 300 x 32, counted here on the model) + 12 x layers x
    # context x width for attention.
    matmul_weights = sum(p.numel() for name, p in random_gpt(**tiny["tiny"]).named_parameters()
                         if p.dim() == 2 and name != "positions_embed.weight")  # fmt: skip
    flops_per_token = 6 * matmul_weights + 12 * 1 * 16 * 32
    assert flops_per_token == 137_472
    assert figures[1].ours * 1e9 == pytest.approx(flops_per_token * figures[0].ours, rel=1e-9)
    assert "the first step (compiling) took" in figures[2].note  # the torch.compile lever, measured
    assert "max |score diff|" in figures[3].note and float(figures[3].note.rsplit(" ", 1)[1]) < 1e-4
    assert figures[3].note.startswith("2 questions, context 64; FLOP ratio ")  # what sharing can save at most
    assert "identical ids: 40/40; first pass over 20 held-out texts: " in figures[4].note
    assert figures[7].note.endswith("same ids: True")
    assert figures[8].note.startswith("batch 2, mean ") and "the encoder cannot generate" in figures[8].note
    assert figures[9].note.endswith("identical losses: True")  # the allocator lever changes no number
    mean_tokens = int(figures[5].note.split("mean ")[1].split(" tokens")[0])
    assert figures[5].note.startswith("24 training sentences drawn from 67,349, batch 2") and mean_tokens < 16
    assert "length-grouped batches: " in figures[5].note  # the lever, measured beside the default
    for f in figures[:4] + figures[4:6] + figures[7:9]:  # interleaved figures: the rounds' ratios around the median's
        assert f.spread[0] <= f.ratio * (1 + 1e-9) and f.ratio <= f.spread[1] * (1 + 1e-9)
    tokens = [int(x.replace(",", "")) for x in figures[6].note.split(" training tokens")[0].split()[1::2]]
    assert tokens[0] > tokens[1] > 0  # two corpus sizes, measured in fresh processes
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert [f["name"] for f in saved["figures"]] == [f.name for f in figures] and saved["reps"] == 1
    assert saved["steps"] == 1 and saved["torch"] == torch.__version__ and "CPU cores" in saved["machine"]
    out = capsys.readouterr().out
    assert "| figure | ours | reference | ratio | target | note |" in out and ">= 1.25x" in out


def test_the_pretraining_reference_does_the_same_work():
    """The pre-training step figure times transformers' OpenAIGPTLMHeadModel beside ours: it must hold
    our weights and compute the same loss and gradients, or the ratio compares different work."""
    ours = random_gpt(n_layer=2, n_embd=32, n_head=2, n_ctx=16, vocab=300).eval()
    theirs, _ = reference_model(ours)
    x = torch.randint(0, 300, (2, 17), generator=torch.Generator().manual_seed(0))
    ours_loss = lm_loss(ours.lm_logits(x[:, :-1]), x[:, 1:])
    theirs_loss = lm_loss(theirs.eval()(x[:, :-1]).logits, x[:, 1:])
    assert ours_loss.item() == pytest.approx(theirs_loss.item(), abs=1e-5)
    ours_loss.backward(), theirs_loss.backward()
    torch.testing.assert_close(theirs.transformer.tokens_embed.weight.grad, ours.tokens_embed.weight.grad,
                               atol=1e-5, rtol=1e-4)  # fmt: skip
    torch.testing.assert_close(theirs.transformer.h[1].mlp.c_fc.weight.grad, ours.h[1].mlp.c_fc.weight.grad.T,
                               atol=1e-5, rtol=1e-4)  # fmt: skip


def test_interleaved_takes_turns_and_medians():
    calls = []
    timing = interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, reps=3)
    assert calls == ["a", "b"] * 3 and set(timing.rounds) == {"a", "b"} and all(len(t) == 3 for t in timing.rounds.values())
    # Known values: the median of each side, and the spread of the rounds' ratios.
    timing = Timing({"fast": [1.0, 2.0, 4.0], "slow": [3.0, 5.0, 4.0]})
    assert timing["fast"] == 2.0 and timing["slow"] == 4.0
    assert timing.spread("fast", "slow") == (1.0, 3.0) and timing.spread("fast", "slow", scale=2) == (2.0, 6.0)
    figure = Figure("f", 2.0, 1.0, "x/s", ">= 1x", 2.0, spread=(1.5, 3.0))
    assert "| 2.00x (1.50x-3.00x) |" in figure.line()


def test_bench_needs_its_data(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("GPTBENCH_DATA", raising=False)
    assert main(["bench", "--out", str(tmp_path), "--gpt1-dir", str(GPT1), "--corpus-dir", str(CORPUS)]) == 2
    assert "--data-dir / GPTBENCH_DATA must name a directory" in capsys.readouterr().err


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_glibc_takes_the_allocator_settings_and_elsewhere_nothing_changes(monkeypatch):
    assert keep_freed_memory() is True
    monkeypatch.setattr(sys, "platform", "darwin")
    assert keep_freed_memory() is False


def test_scoring_flops_count_what_each_way_computes():
    """Known values: with a 1-layer, width-1 model, the body costs 24 FLOPs a token, a query-key pair
    4, a scored position 2 x vocab."""
    from gptbench.models.gpt import GPTConfig
    from gptbench.suite.bench import scoring_flops

    cfg = GPTConfig(vocab_size=10, n_ctx=16, n_embd=1, n_layer=1, n_head=1)
    # prefix 3, continuations of 2 and 1: naive runs sequences of 4 and 3 tokens.
    naive, head = scoring_flops(cfg, 3, [2, 1], shared=False)
    assert head == 2 * 10 * 3 and naive == 24 * (4 + 3) + 4 * ((1 + 2 + 3 + 4) + (1 + 2 + 3)) + head
    # shared: the prefix once (3 tokens), then 1 continuation token attending to 3 + 1 keys.
    shared, _ = scoring_flops(cfg, 3, [2, 1], shared=True)
    assert shared == 24 * (3 + 1) + 4 * ((1 + 2 + 3) + 4) + head
