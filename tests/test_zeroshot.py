"""Zero-shot heuristics (paper Section 5): controlled toy models, shared-prefix == naive scores,
and an end-to-end run of the four tasks on the tiny pre-trained model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import DATA, pretrained_model
from gptbench.cli import main
from gptbench.evaluation import zeroshot as zs
from gptbench.evaluation.loading import load_model_and_tokenizer
from gptbench.models.gpt import GPT, GPTConfig


def tiny_gpt(vocab_size: int, n_ctx: int = 64, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=vocab_size, n_ctx=n_ctx, n_embd=16, n_layer=2, n_head=2)).eval()


def biased(model: GPT, prefer: dict[int, float]) -> GPT:
    """The model with its LM head replaced: every position predicts the same fixed logits."""
    logits = torch.zeros(model.config.n_tokens)
    for i, v in prefer.items():
        logits[i] = v
    model.lm_head = lambda h: logits.expand(*h.shape[:-1], -1)
    return model


def test_sst2_prefers_positive(gpt1_tokenizer):
    tok = gpt1_tokenizer
    pos, neg = tok.encode("positive"), tok.encode("negative")
    assert len(pos) == len(neg) == 1  # one token each in GPT-1's vocabulary
    model = biased(tiny_gpt(tok.vocab_size), {pos[0]: 5.0})
    assert zs.sst2_predict(model, tok, ["a fine film .", "dull ."]) == [1, 1]
    model = biased(tiny_gpt(tok.vocab_size), {neg[0]: 5.0})
    assert zs.sst2_predict(model, tok, ["a fine film ."], shared=False) == [0]


def test_cola_threshold_maximises_matthews():
    scores = [-5.0, -4.0, -3.0, -2.5, -2.0, -1.0]
    labels = [0, 0, 1, 0, 1, 1]
    t, mcc = zs.best_threshold(scores, labels)
    assert mcc == pytest.approx(max(zs.matthews(np.array(scores) > c, labels) for c in np.linspace(-6, 0, 601)))
    assert -4.0 < t < -2.0  # between the last clear 0 and the first 1s
    assert zs.matthews([1, 0, 1, 0], [1, 0, 1, 0]) == 1.0
    assert zs.matthews([1, 1, 1, 1], [1, 0, 1, 0]) == 0.0  # undefined -> 0


def test_cola_score_is_mean_logprob_given_start(gpt1_tokenizer):
    tok = gpt1_tokenizer
    model = biased(tiny_gpt(tok.vocab_size), {})  # uniform: every token has log-prob -log(V)
    s = zs.cola_scores(model, tok, ["the cat sat .", "a"])
    assert s == pytest.approx([-np.log(len(tok))] * 2, abs=1e-5)


def test_dprd_substitution():
    head, rest = zs.dprd_substitute("The sniper shot the terrorist because he was a bad guy.", "he", "The sniper")
    assert head + rest == "The sniper shot the terrorist because The sniper was a bad guy."
    assert rest == " was a bad guy."
    # whole words only: 'he' inside 'the'/'shelter' is not the pronoun; case-insensitive fallback
    head, rest = zs.dprd_substitute("He hid in the shelter.", "he", "Bob")
    assert (head, rest) == ("Bob", " hid in the shelter.")
    with pytest.raises(ValueError):
        zs.dprd_substitute("No pronoun here.", "she", "x")


def test_dprd_scores_only_the_rest(gpt1_tokenizer):
    tok = gpt1_tokenizer
    record = {"text": "John thanked Bill because he helped him.", "pronoun": "he", "choices": ["John", "Bill"], "label": 1}
    rest = tok.encode(" helped him.")
    model = biased(tiny_gpt(tok.vocab_size), {rest[0]: 3.0})
    s = zs.dprd_scores(model, tok, record)
    assert s[0] == pytest.approx(s[1])  # same rest, context-free head: equal
    assert zs.dprd_predict(model, tok, [record]) == [0]  # tie -> first


@pytest.mark.parametrize("n_ctx", [64, 24])
def test_shared_prefix_equals_naive(n_ctx):
    model = tiny_gpt(50, n_ctx=n_ctx, seed=1)
    rng = np.random.default_rng(0)
    for _ in range(5):  # RACE-like: long prefix, 4 answers of different lengths
        prefix = [50] + rng.integers(0, 50, size=int(rng.integers(1, 40))).tolist()
        answers = [rng.integers(0, 50, size=int(rng.integers(1, 8))).tolist() for _ in range(4)]
        prefix, answers = zs.fit_context(prefix, answers, n_ctx)
        assert len(prefix) + max(map(len, answers)) <= n_ctx and prefix[0] == 50
        a = zs.continuation_logprobs(model, prefix, answers)
        b = zs.continuation_logprobs_naive(model, [(prefix, c) for c in answers])
        for x, y, c in zip(a, b, answers):
            assert len(x) == len(y) == len(c)
            np.testing.assert_allclose(x, y, atol=1e-4)


def test_shared_prefix_equals_naive_on_tasks(gpt1_tokenizer):
    tok = gpt1_tokenizer
    model = tiny_gpt(tok.vocab_size, n_ctx=48, seed=2)
    rec = {"context": "Tom went to the market on Monday. He bought apples and a very large melon for his sister. " * 3,
           "question": "What did Tom buy?", "choices": ["apples and a melon", "bread", "nothing at all", "a car"], "label": 0}
    np.testing.assert_allclose(zs.race_scores(model, tok, rec, True), zs.race_scores(model, tok, rec, False), atol=1e-4)
    texts = ["a charming and often affecting journey .", "it 's a bore ."]
    assert zs.sst2_predict(model, tok, texts, True) == zs.sst2_predict(model, tok, texts, False)


def test_normalised_score():
    paper = {"race": {"sota": 53.3, "random_baseline": 25.0}, "cola": {"sota": 35.0, "random_baseline": 0.0},
             "dprd": {"sota": None, "random_baseline": 50.0}}
    assert zs.normalised_score("race", 0.533, paper) == pytest.approx(1.0)
    assert zs.normalised_score("race", 0.25, paper) == pytest.approx(0.0)
    assert zs.normalised_score("cola", 0.175, paper) == pytest.approx(0.5)
    assert zs.normalised_score("dprd", 0.6, paper) is None
    assert zs.normalised_score("sst2", 0.932) == pytest.approx(1.0)  # results/paper.yaml


def test_end_to_end_tiny_pretrained(pretrained, tmp_path, capsys):
    model_dir = pretrained_model(pretrained)
    model, tok = load_model_and_tokenizer(model_dir, device="cpu")
    results = zs.evaluate_zero_shot(model, tok, zs.ZERO_SHOT_TASKS, DATA, max_examples=8)
    assert set(results) == set(zs.ZERO_SHOT_TASKS)
    for task, r in results.items():
        assert r["n"] == 8 and r["split"] == zs.EVAL_SPLIT[task]
        lo = -1.0 if task == "cola" else 0.0
        assert lo <= r["score"] <= 1.0, (task, r)
    assert results["dprd"]["normalised"] is None and results["race"]["normalised"] is not None
    assert np.isfinite(results["cola"]["threshold"])

    out = tmp_path / "zs.json"
    rc = main(["zeroshot", str(model_dir), "tasks=sst2,dprd", "max_examples=4", f"data_dir={DATA}", f"out={out}"])
    assert rc == 0
    saved = json.loads(out.read_text())["results"]
    assert set(saved) == {"sst2", "dprd"} and saved["sst2"]["n"] == 4
    assert "sst2" in capsys.readouterr().out


def test_cli_errors(tmp_path, capsys):
    assert main(["zeroshot", str(tmp_path / "missing"), f"data_dir={DATA}"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["zeroshot", str(tmp_path), "tasks=sst2,mnli", f"data_dir={DATA}"]) == 2
    err = capsys.readouterr().err
    assert "unknown task" in err and err.count("\n") == 1
    assert main(["zeroshot", str(tmp_path), "bogus=1"]) == 2


class Loaded(Exception):
    """Raised by the stand-in loader: the test needs the device, not the scores."""


@pytest.mark.parametrize("accelerator, cuda_present, device", [
    ("cpu", True, "cpu"), ("gpu", True, "cuda"), ("cuda", True, "cuda"), ("auto", True, "cuda"), ("auto", False, "cpu"),
])  # fmt: skip
def test_figure2_scores_snapshots_on_the_runs_accelerator(tmp_path, monkeypatch, accelerator, cuda_present, device):
    """Figure 2's zero-shot curve loads each snapshot on the device of trainer.accelerator (it was
    always the CPU: 18 snapshots with RACE's 512-token contexts at the paper's size)."""
    import gptbench.evaluation.loading as loading
    import gptbench.suite.results as results
    import gptbench.training.pretrain as pretrain
    from gptbench.suite.figure2 import run_zero_shot_curve

    devices = []

    def load(path, gpt1_dir=None, device=None):
        devices.append(device)
        raise Loaded

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda_present)
    monkeypatch.setattr(loading, "load_model_and_tokenizer", load)
    monkeypatch.setattr(pretrain, "run_pretrain", lambda cfg: None)  # the snapshots "exist"
    monkeypatch.setattr(results, "write_pretrain_results", lambda cfg, results_dir: None)
    with pytest.raises(Loaded):
        run_zero_shot_curve("figure2_zeroshot", "smoke", [f"runs_dir={tmp_path}", f"trainer.accelerator={accelerator}"],
                            results_dir=tmp_path / "results", tasks=["sst2"])  # fmt: skip
    assert devices == [device]
