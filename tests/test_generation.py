"""Decoding: parity with transformers' generate, the cache against recomputation, the filters on
known distributions, the context policies, bad input, and the CLI on a tiny pre-trained run."""

import pytest
import torch

from gptbench import GPT
from gptbench.models import LSTMConfig, build_model
from gptbench.models.decoding import _IncrementalLM, generate, top_k_filter, top_p_filter
from tests.conftest import pretrained_model, saved_hf_gpt

transformers = pytest.importorskip("transformers")

PROMPTS = ([5, 17, 3], [40, 2, 2, 9, 101, 7, 64], [150])


@pytest.fixture(scope="module")
def hf_and_ours(tmp_path_factory):
    """A random tiny OpenAIGPTLMHeadModel, and the same weights through GPT.from_pretrained."""
    path = tmp_path_factory.mktemp("hf")
    return saved_hf_gpt(path, n_positions=24), GPT.from_pretrained(path).eval()


def hf_generate(hf, prompt, new, **kw):
    ids = torch.tensor([prompt])
    with torch.no_grad():
        return hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new, min_new_tokens=new,
                           do_sample=False, pad_token_id=0, **kw)  # fmt: skip


@pytest.mark.parametrize("prompt", PROMPTS)
@pytest.mark.parametrize("new", [1, 6, 15])
def test_greedy_equals_transformers(hf_and_ours, prompt, new):
    hf, ours = hf_and_ours
    assert torch.equal(ours.generate(prompt, new), hf_generate(hf, prompt, new))


@pytest.mark.parametrize("prompt", PROMPTS)
@pytest.mark.parametrize("new,beams", [(5, 3), (12, 4), (8, 1)])
def test_beam_search_equals_transformers(hf_and_ours, prompt, new, beams):
    hf, ours = hf_and_ours
    want = hf_generate(hf, prompt, new, num_beams=beams, num_return_sequences=beams)
    got = ours.generate(prompt, new, strategy="beam", num_beams=beams, num_return_sequences=beams)
    assert torch.equal(got, want)  # every beam, in transformers' order (best first)


def naive_beam_search(model, prompt, new, beams):
    """Beam search that recomputes every sequence from scratch (no cache, no reordering)."""
    hyps = [(0.0, list(prompt))]
    for _ in range(new):
        cands = []
        for score, seq in hyps:
            logp = model.lm_logits(torch.tensor([seq]))[0, -1, : model.config.vocab_size].log_softmax(-1)
            cands += [(score + float(lp), seq + [t]) for t, lp in enumerate(logp)]
        hyps = sorted(cands, key=lambda c: -c[0])[:beams]
    return hyps[0][1]


def tiny_lstm():
    torch.manual_seed(1)
    return build_model(LSTMConfig(vocab_size=60, n_special=3, n_ctx=16, n_embd=16, n_hidden=24)).eval()


def test_lstm_beam_search_reorders_its_state(hf_and_ours):
    lstm = tiny_lstm()
    with torch.no_grad():
        want = naive_beam_search(lstm, [4, 9, 1], 6, 3)
    assert lstm.generate([4, 9, 1], 6, strategy="beam", num_beams=3)[0].tolist() == want


@pytest.mark.parametrize("which", ["gpt", "lstm"])
def test_cached_logits_equal_recomputed(hf_and_ours, which):
    model = hf_and_ours[1] if which == "gpt" else tiny_lstm()
    torch.manual_seed(2)
    seqs = torch.randint(0, 60, (3, 4))
    lm = _IncrementalLM(model, seqs)
    with torch.no_grad():
        for step in range(10):
            cached = lm.next_logits()
            full = model.lm_logits(lm.seqs)[:, -1, : model.config.vocab_size]
            torch.testing.assert_close(cached, full, atol=1e-5, rtol=1e-5)
            lm.append(torch.randint(0, 60, (3,)), rows=torch.tensor([2, 0, 0]) if step % 3 == 1 else None)


def test_filters_on_known_distributions():
    logits = torch.tensor([0.5, 0.3, 0.15, 0.05]).log()
    kept = lambda filtered: (filtered > -float("inf")).tolist()  # noqa: E731
    assert kept(top_k_filter(logits, 2)) == [True, True, False, False]
    assert kept(top_k_filter(logits, 10)) == [True] * 4
    assert kept(top_p_filter(logits, 0.8)) == [True, True, False, False]  # 0.5 + 0.3 reaches 0.8
    assert kept(top_p_filter(logits, 0.81)) == [True, True, True, False]
    assert kept(top_p_filter(logits, 0.3)) == [True, False, False, False]  # always the most likely
    assert kept(top_p_filter(logits, 1.0)) == [True] * 4
    shuffled = logits[[2, 0, 3, 1]]  # the filter works in vocabulary order, not sorted order
    assert kept(top_p_filter(shuffled, 0.8)) == [False, True, False, True]
    # Sampling after the filters never leaves the kept set, and visits all of it.
    model = tiny_lstm()
    drawn = {int(t) for t in generate(model, [1] * 16, 1, strategy="sample", num_return_sequences=300,
                                      top_k=3, seed=0, context="slide")[:, -1]}  # fmt: skip
    with torch.no_grad():
        top3 = set(model.lm_logits(torch.tensor([[1] * 16]))[0, -1, :60].topk(3).indices.tolist())
    assert drawn == top3


def test_sampling_top_k_1_is_greedy_and_seeded(hf_and_ours):
    _, ours = hf_and_ours
    greedy = ours.generate([5, 17, 3], 12)
    assert torch.equal(ours.generate([5, 17, 3], 12, strategy="sample", top_k=1, seed=3), greedy)
    a = ours.generate([5, 17, 3], 12, strategy="sample", temperature=1.5, seed=7, num_return_sequences=2)
    b = ours.generate([5, 17, 3], 12, strategy="sample", temperature=1.5, seed=7, num_return_sequences=2)
    c = ours.generate([5, 17, 3], 12, strategy="sample", temperature=1.5, seed=8, num_return_sequences=2)
    assert a.shape == (2, 15) and torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(a[0], a[1])  # two independent samples
    assert ours.training is False and ours.generate([5], 1, strategy="sample").shape == (1, 2)


def test_context_policies(hf_and_ours):
    _, ours = hf_and_ours  # n_ctx = 24
    prompt = list(range(1, 21))
    assert ours.generate(prompt, 10).shape == (1, 24)  # "stop": ends when the context is full
    with pytest.raises(ValueError, match="more than the model's context n_ctx=24.*context='slide'"):
        ours.generate(list(range(30)), 5)
    slid = ours.generate(prompt, 10, context="slide")
    assert slid.shape == (1, 30) and torch.equal(slid[:, :24], ours.generate(prompt, 4))
    with torch.no_grad():  # past the context, each token is the greedy choice on the last 24 tokens
        for t in range(24, 30):
            window = slid[:, t - 24 : t]
            assert int(ours.lm_logits(window)[0, -1].argmax()) == int(slid[0, t])
    long = ours.generate(list(range(1, 31)), 3, context="slide")  # a long prompt keeps its last n_ctx tokens
    assert long.shape == (1, 27) and long[0, :24].tolist() == list(range(7, 31))


@pytest.mark.parametrize("options,message", [
    ({"temperature": 0}, "temperature must be > 0"),
    ({"temperature": -1.0}, "temperature must be > 0"),
    ({"top_p": 0.0}, r"top_p must be in \(0, 1\]"),
    ({"top_p": 1.5}, r"top_p must be in \(0, 1\]"),
    ({"strategy": "beam", "num_beams": 0}, "num_beams must be >= 1"),
    ({"strategy": "nucleus"}, "strategy must be one of"),
    ({"top_k": 0}, "top_k must be >= 1"),
    ({"num_return_sequences": 2}, "greedy decoding returns one sequence"),
    ({"context": "wrap"}, "context must be one of"),
])  # fmt: skip
def test_bad_options_are_named(hf_and_ours, options, message):
    with pytest.raises(ValueError, match=message):
        hf_and_ours[1].generate([1, 2], 3, **options)


def test_bad_prompts_are_named(hf_and_ours):
    _, ours = hf_and_ours
    with pytest.raises(ValueError, match="the prompt is empty"):
        ours.generate([], 3)
    with pytest.raises(ValueError, match=r"token ids in \[0, 214\)"):
        ours.generate([5, 999], 3)


def test_cli_generate(pretrained, capsys):
    from gptbench.cli import main

    model = str(pretrained_model(pretrained))
    assert main(["generate", model, "the old man", "max_new_tokens=5"]) == 0
    greedy = capsys.readouterr().out
    assert main(["generate", model, "the old man", "max_new_tokens=5", "strategy=sample", "top_k=1", "seed=4"]) == 0
    assert capsys.readouterr().out == greedy and " >>> " in greedy
    assert main(["generate", model, "the old man", "max_new_tokens=4", "strategy=beam", "num_beams=3",
                 "num_return_sequences=2"]) == 0  # fmt: skip
    assert capsys.readouterr().out.count("--- ") == 2
    for bad, message in ((["top_p=2"], "top_p must be in"), (["temperature=hot"], "temperature must be float"),
                         (["beams=2"], "expected key=value with key in")):  # fmt: skip
        assert main(["generate", model, "the old man", *bad]) == 2
        assert message in capsys.readouterr().err
    assert main(["generate", model, "  "]) == 2
    assert "the prompt is empty" in capsys.readouterr().err


def test_cli_generate_on_gpt1_weights_in_transformers_format(tmp_path, capsys):
    """A Hugging Face openai-gpt directory (here: random, tiny, with GPT-1's 40,478-token vocabulary)
    and GPT-1's released BPE: the CLI's greedy text is transformers' greedy continuation."""
    from conftest import GPT1

    from gptbench import Tokenizer
    from gptbench.cli import main

    config = transformers.OpenAIGPTConfig(vocab_size=40478, n_positions=32, n_embd=16, n_layer=1, n_head=2)
    torch.manual_seed(0)
    hf = transformers.OpenAIGPTLMHeadModel(config).eval()
    hf.save_pretrained(tmp_path)
    tok = Tokenizer.gpt1(GPT1 / "encoder_bpe_40000.json", GPT1 / "vocab_40000.bpe")
    ids = tok.encode("the old man")
    want = tok.decode(hf_generate(hf, ids, 5)[0, len(ids):].tolist())
    assert main(["generate", str(tmp_path), "the old man", "max_new_tokens=5", f"gpt1_dir={GPT1}", "device=cpu"]) == 0
    assert capsys.readouterr().out.strip() == f"the old man >>> {want}"
    assert main(["generate", str(tmp_path), "the old man"]) == 2
    assert "pass gpt1_dir=PATH for GPT-1 weights" in capsys.readouterr().err
