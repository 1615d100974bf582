import pytest
import torch

from gptbench import GPT, GPTConfig


def tiny(**kw) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(**{"vocab_size": 97, "n_ctx": 24, "n_embd": 32, "n_layer": 2, "n_head": 4, **kw})).eval()


def test_paper_parameter_count():
    model = GPT(GPTConfig.paper())
    assert model.num_parameters(include_special=False) == 116_534_784
    assert model.num_parameters() == 116_534_784 + 3 * 768
    assert sum(p.numel() for p in model.h.parameters()) == 85_054_464


def test_lm_head_is_tied_and_covers_special_tokens():
    model = tiny()
    logits = model.lm_logits(torch.randint(0, 100, (2, 5)))
    assert logits.shape == (2, 5, 100) and logits.dtype == torch.float32
    assert model.lm_head.__self__ is model  # no separate output matrix
    assert not any("lm_head" in n for n, _ in model.named_parameters())


def test_causality():
    model = tiny()
    x = torch.randint(0, 100, (1, 16))
    y = x.clone()
    y[0, 10:] = torch.randint(0, 100, (6,))
    with torch.no_grad():
        a, b = model.lm_logits(x), model.lm_logits(y)
    torch.testing.assert_close(a[:, :10], b[:, :10])
    assert not torch.allclose(a[:, 10:], b[:, 10:])


@pytest.mark.parametrize("side", ["right", "left"])
def test_padding_does_not_change_real_positions(side):
    model = tiny()
    x = torch.randint(1, 97, (1, 9))
    pad = torch.zeros(1, 5, dtype=torch.long)
    padded = torch.cat([x, pad], 1) if side == "right" else torch.cat([pad, x], 1)
    mask = (torch.arange(14) < 9) if side == "right" else (torch.arange(14) >= 5)
    with torch.no_grad():
        ref = model.lm_logits(x)
        out = model.lm_logits(padded, mask[None].long())
    real = out[:, :9] if side == "right" else out[:, 5:]
    torch.testing.assert_close(real, ref, atol=1e-5, rtol=1e-5)
    assert torch.isfinite(out).all()


def test_key_value_cache_matches_full_forward():
    model = tiny()
    prefix, cont = torch.randint(0, 97, (2, 7)), torch.randint(0, 97, (2, 4))
    with torch.no_grad():
        full, _ = model(torch.cat([prefix, cont], 1))
        _, past = model(prefix)
        tail, _ = model(cont, past_key_values=past)
    torch.testing.assert_close(tail, full[:, 7:], atol=1e-5, rtol=1e-5)


def test_dropout_is_configurable_and_only_active_in_training():
    model = tiny(embd_pdrop=0.5, attn_pdrop=0.5, resid_pdrop=0.5)
    x = torch.randint(0, 97, (1, 8))
    with torch.no_grad():
        torch.testing.assert_close(model.lm_logits(x), model.lm_logits(x))
        model.train()
        assert not torch.allclose(model.lm_logits(x), model.lm_logits(x))


def test_init_statistics():
    model = GPT(GPTConfig(vocab_size=5000, n_ctx=64, n_embd=256, n_layer=1, n_head=4))
    assert abs(model.tokens_embed.weight.std().item() - 0.02) < 1e-3
    assert model.h[0].attn.c_attn.bias.abs().max() == 0
    assert torch.all(model.h[0].ln_1.weight == 1)


def test_too_long_input_is_a_clear_error():
    with pytest.raises(ValueError, match="exceeds the model's context n_ctx=24"):
        tiny()(torch.zeros(1, 25, dtype=torch.long))


@pytest.mark.parametrize(
    "kw, message",
    [({"n_embd": 30, "n_head": 4}, "divisible"), ({"n_layer": 0}, "n_layer"), ({"attn_pdrop": 1.5}, "attn_pdrop")],
)
def test_invalid_config(kw, message):
    with pytest.raises(ValueError, match=message):
        GPTConfig(**kw)


def test_embedding_dropout_drops_the_table_shared_by_lookup_and_lm_head():
    """Released code: ``we = dropout(we, embd_pdrop, train)``; the lookup and the tied head both
    read that dropped table. Rebuilt here by hand: the same masks drawn in the same order, put
    into an eval-mode twin without dropout, must give the training-mode outputs exactly."""
    model = tiny(embd_pdrop=0.5, attn_pdrop=0.0, resid_pdrop=0.0).train()
    ids = torch.randint(0, 100, (2, 7))
    torch.manual_seed(123)
    hidden, _ = model(ids)
    logits = model.lm_head(hidden)

    torch.manual_seed(123)
    dropped_tokens = torch.nn.functional.dropout(model.tokens_embed.weight, 0.5, training=True)
    dropped_positions = torch.nn.functional.dropout(model.positions_embed.weight, 0.5, training=True)
    twin = tiny(embd_pdrop=0.0)
    with torch.no_grad():
        twin.tokens_embed.weight.copy_(dropped_tokens)
        twin.positions_embed.weight.copy_(dropped_positions)
        expected_hidden, _ = twin(ids)
    torch.testing.assert_close(hidden, expected_hidden)
    torch.testing.assert_close(logits, twin.lm_head(expected_hidden))
    # The head really used the dropped table, not the raw weights.
    assert not torch.allclose(logits, torch.nn.functional.linear(hidden, model.tokens_embed.weight))
    # Eval mode: no dropout anywhere, the head reads the table itself.
    model.eval()
    with torch.no_grad():
        h, _ = model(ids)
    torch.testing.assert_close(model.lm_head(h), torch.nn.functional.linear(h, model.tokens_embed.weight))
