"""The BERT encoder: parity with transformers' BertForMaskedLM, bidirectional attention, padding, and
the interface it shares with GPT and the LSTM."""

import json

import pytest
import torch

import gptbench
from gptbench import BERT, GPT, BertConfig, GPTConfig
from gptbench.errors import NoNextTokenModel
from gptbench.models import build_model, load_pretrained, model_spec
from gptbench.models.checkpoints import CheckpointError

transformers = pytest.importorskip("transformers")

SIZES = {"vocab_size": 99, "n_ctx": 32, "n_embd": 32, "n_layer": 2, "n_head": 4}


def tiny(**kw) -> BERT:
    torch.manual_seed(0)
    return BERT(BertConfig(**{**SIZES, **kw})).eval()


def perturb(model: torch.nn.Module) -> torch.nn.Module:
    """Add noise to every parameter, so that zero biases and unit LayerNorms also have to be mapped right."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


def padded_batch(n_tokens: int):
    """Three sequences of 12 positions, right-padded to 12, 8 and 5 real tokens; segment 1 from position 4."""
    torch.manual_seed(2)
    ids = torch.randint(0, n_tokens, (3, 12))
    lengths = torch.tensor([12, 8, 5])
    mask = (torch.arange(12)[None, :] < lengths[:, None]).long()  # (3, 12)
    segments = (torch.arange(12)[None, :] >= 4).long().expand(3, -1)
    return ids, mask, segments, lengths


def assert_close_on_real_positions(a, b, lengths, atol=1e-4):
    for row, n in enumerate(lengths.tolist()):
        assert (a[row, :n] - b[row, :n]).abs().max().item() <= atol


def saved_hf_bert(path, **kw):
    """A random tiny transformers BertForMaskedLM (vocab 99, 2 x 32, 4 heads, MLP width 48), every
    parameter perturbed, in eval mode, saved to ``path``."""
    config = transformers.BertConfig(**{"vocab_size": 99, "hidden_size": 32, "num_hidden_layers": 2,
                                        "num_attention_heads": 4, "intermediate_size": 48,
                                        "max_position_embeddings": 32, "hidden_act": "gelu", **kw})
    torch.manual_seed(0)
    model = perturb(transformers.BertForMaskedLM(config)).eval()
    model.save_pretrained(path)
    return model


def hf_logits(model, ids, mask, segments):
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask, token_type_ids=segments).logits


def test_loads_transformers_bert_with_identical_logits(tmp_path):
    hf = saved_hf_bert(tmp_path)
    ours = BERT.from_pretrained(tmp_path).eval()
    assert isinstance(load_pretrained(tmp_path), BERT)  # the loader of any network finds it too
    assert (ours.config.vocab_size, ours.config.n_special, ours.config.n_inner) == (99, 0, 48)
    ids, mask, segments, lengths = padded_batch(99)
    with torch.no_grad():
        logits = ours.lm_logits(ids, mask, segments)
    assert_close_on_real_positions(logits, hf_logits(hf, ids, mask, segments), lengths)


def test_loads_legacy_bert_for_pretraining_weights(tmp_path):
    """pytorch_model.bin with LayerNorm gamma/beta names and the next-sentence head, as early BERT releases."""
    hf = saved_hf_bert(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    state = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
             for k, v in hf.state_dict().items()}  # fmt: skip
    state["cls.seq_relationship.weight"] = torch.zeros(2, 32)
    torch.save(state, tmp_path / "pytorch_model.bin")
    ours = load_pretrained(tmp_path).eval()
    ids, mask, segments, lengths = padded_batch(99)
    with torch.no_grad():
        logits = ours.lm_logits(ids, mask, segments)
    assert_close_on_real_positions(logits, hf_logits(hf, ids, mask, segments), lengths)


def test_save_pretrained_round_trips_through_transformers(tmp_path):
    ours = perturb(tiny(n_special=3))
    ours.save_pretrained(tmp_path)
    hf, info = transformers.BertForMaskedLM.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["mismatched_keys"]
    ids, mask, segments, lengths = padded_batch(102)  # special tokens included
    with torch.no_grad():
        logits = ours.lm_logits(ids, mask, segments)
        hidden, _ = ours(ids, mask, token_type_ids=segments)
    assert logits.shape == (3, 12, 102)
    assert_close_on_real_positions(logits, hf_logits(hf.eval(), ids, mask, segments), lengths)

    # BertModel reads the pooler that BertForMaskedLM leaves out.
    base = transformers.BertModel.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        pooled = base(input_ids=ids, attention_mask=mask, token_type_ids=segments).pooler_output
    assert (ours.pooler(hidden) - pooled).abs().max().item() <= 1e-4

    again = BERT.from_pretrained(tmp_path).eval()
    assert again.config == ours.config
    with torch.no_grad():
        again_hidden, _ = again(ids, mask, token_type_ids=segments)
        torch.testing.assert_close(again.lm_logits(ids, mask, segments), logits, rtol=0, atol=0)
    torch.testing.assert_close(again.pooler(again_hidden), ours.pooler(hidden), rtol=0, atol=0)


@pytest.mark.parametrize("name", ["GPT", "LSTMLM", "BERT"])
def test_every_network_loads_its_own_export_and_refuses_another(name, tmp_path):
    """One way for all three networks: ``gptbench.<Network>.from_pretrained`` reads the network's
    ``save_pretrained`` export back with the same outputs, and refuses another network's export,
    naming what it holds."""
    torch.manual_seed(0)
    networks = {"GPT": GPT(GPTConfig(**SIZES)), "BERT": BERT(BertConfig(**SIZES, n_special=4)),
                "LSTMLM": gptbench.LSTMLM(gptbench.LSTMConfig(vocab_size=99, n_ctx=32, n_embd=32, n_hidden=40))}
    for network_name, network in networks.items():
        perturb(network).eval().save_pretrained(tmp_path / network_name)
    network_cls = getattr(gptbench, name)
    again = network_cls.from_pretrained(tmp_path / name).eval()
    assert type(again) is network_cls
    ids = torch.randint(0, 99, (2, 10))
    with torch.no_grad():
        torch.testing.assert_close(again.lm_logits(ids), networks[name].lm_logits(ids), rtol=0, atol=0)
    for other in networks.keys() - {name}:
        with pytest.raises(CheckpointError, match=rf"{other}: holds a {other}, not a {name}; load it with "
                                                  rf"{other}\.from_pretrained"):  # fmt: skip
            network_cls.from_pretrained(tmp_path / other)


def test_missing_pooler_is_freshly_initialised_but_missing_mlm_head_is_an_error(tmp_path):
    saved_hf_bert(tmp_path)
    assert load_pretrained(tmp_path).pooler_dense.bias.abs().max() == 0  # BertForMaskedLM saved none
    transformers.BertModel.from_pretrained(tmp_path).save_pretrained(tmp_path / "base")  # no MLM head
    with pytest.raises(CheckpointError, match="missing.*cls.predictions"):
        load_pretrained(tmp_path / "base")


def test_only_the_erf_gelu_is_supported(tmp_path):
    saved_hf_bert(tmp_path, hidden_act="relu")
    with pytest.raises(CheckpointError, match="hidden_act='relu'"):
        load_pretrained(tmp_path)


def test_lightning_checkpoint_dispatches_on_arch(tmp_path):
    ours = perturb(tiny(n_special=4))
    ckpt = {"model_config": model_spec(ours), "state_dict": {f"model.{k}": v for k, v in ours.state_dict().items()}}
    torch.save(ckpt, tmp_path / "last.ckpt")
    loaded = load_pretrained(tmp_path / "last.ckpt", dropout={"attn_pdrop": 0.0}).eval()
    assert isinstance(loaded, BERT) and loaded.config.attn_pdrop == 0.0 and loaded.config.n_special == 4
    ids = torch.randint(0, 103, (2, 9))
    with torch.no_grad():
        torch.testing.assert_close(loaded.lm_logits(ids), ours.lm_logits(ids), rtol=0, atol=0)


def test_attention_is_bidirectional():
    x = torch.randint(0, 99, (1, 16))
    y = x.clone()
    y[0, 12] = (x[0, 12] + 1) % 99
    with torch.no_grad():
        a, _ = tiny()(x)
        b, _ = tiny()(y)
        gpt = GPT(GPTConfig(**SIZES)).eval()
        ga, gb = gpt(x)[0], gpt(y)[0]
    assert not torch.allclose(a[:, :12], b[:, :12])  # earlier positions see the later token
    torch.testing.assert_close(ga[:, :12], gb[:, :12])  # GPT's do not


def test_padding_does_not_change_real_positions():
    model = tiny()
    x = torch.randint(0, 99, (1, 9))
    padded = torch.cat([x, torch.zeros(1, 5, dtype=torch.long)], 1)
    mask = (torch.arange(14) < 9).long()[None]
    with torch.no_grad():
        ref, _ = model(x)
        out, _ = model(padded, mask)
        all_pad, _ = model(padded, torch.zeros_like(mask))
        unmasked, _ = model(padded)
    torch.testing.assert_close(out[:, :9], ref, atol=1e-5, rtol=1e-5)
    assert torch.isfinite(out).all()
    # A sequence of pads only has no key to attend to: it attends to every position instead (no NaN).
    torch.testing.assert_close(all_pad, unmasked)


def test_segments_change_the_output():
    model = tiny()
    x = torch.randint(0, 99, (1, 8))
    with torch.no_grad():
        a, _ = model(x)
        b, _ = model(x, token_type_ids=torch.ones_like(x))
    assert not torch.allclose(a, b)


def test_build_model_and_model_spec_round_trip():
    model = tiny(n_inner=40, n_special=4)
    spec = model_spec(model)
    assert spec["arch"] == "bert"
    rebuilt = build_model(spec)
    assert isinstance(rebuilt, BERT) and rebuilt.config == model.config
    assert rebuilt.h[0].mlp.c_fc.out_features == 40


def test_interface_methods():
    model = tiny(n_special=3)
    special_params = 3 * (32 + 1)  # embedding rows and output biases
    assert model.num_parameters() - model.num_parameters(include_special=False) == special_params
    with torch.no_grad():
        model.mlm_bias.fill_(1.0)
        bpe_rows = model.tokens_embed.weight[:99].clone()
    model.init_special_embeddings()
    torch.testing.assert_close(model.tokens_embed.weight[:99], bpe_rows, rtol=0, atol=0)
    assert model.mlm_bias[99:].abs().max() == 0 and torch.all(model.mlm_bias[:99] == 1)
    # gptbench's encoder (n_special=4): [CLS] and [MASK] keep their pre-trained rows, [SEP] and extract are re-drawn.
    encoder = tiny(n_special=4)
    with torch.no_grad():
        encoder.mlm_bias.fill_(1.0)
    before = encoder.tokens_embed.weight.detach().clone()
    encoder.init_special_embeddings()
    c = encoder.config
    assert (c.cls_token_id, c.sep_token_id, c.mask_token_id) == (99, 100, 102)
    for row in (c.cls_token_id, c.mask_token_id):
        assert torch.equal(encoder.tokens_embed.weight[row], before[row]) and encoder.mlm_bias[row] == 1
    for row in (c.sep_token_id, 101):
        assert not torch.equal(encoder.tokens_embed.weight[row], before[row]) and encoder.mlm_bias[row] == 0
    block0 = model.h[0].attn.c_attn.weight.clone()
    model.reinit_blocks_from(1)
    torch.testing.assert_close(model.h[0].attn.c_attn.weight, block0, rtol=0, atol=0)
    with pytest.raises(NoNextTokenModel, match="no next-token decoding"):
        model.generate([1, 2, 3])
    with pytest.raises(NoNextTokenModel, match="no next-token decoding"):
        model.expand_past(None, 2)


def test_errors():
    model = tiny()
    with pytest.raises(ValueError, match="no key/value cache"):
        model(torch.zeros(1, 4, dtype=torch.long), past_key_values=((torch.zeros(1), torch.zeros(1)),))
    with pytest.raises(ValueError, match="exceeds the model's context n_ctx=32"):
        model(torch.zeros(1, 33, dtype=torch.long))
    with pytest.raises(ValueError, match="attention_mask has shape"):
        model(torch.zeros(1, 4, dtype=torch.long), torch.ones(1, 5))


@pytest.mark.parametrize(
    "kw, message",
    [({"n_embd": 30}, "divisible"), ({"n_inner": 0}, "n_inner"), ({"type_vocab_size": 0}, "type_vocab_size"),
     ({"attn_pdrop": 1.5}, "attn_pdrop")],
)  # fmt: skip
def test_invalid_config(kw, message):
    with pytest.raises(ValueError, match=message):
        BertConfig(**{**SIZES, **kw})


def test_dropout_only_in_training():
    model = tiny(embd_pdrop=0.5, attn_pdrop=0.5, resid_pdrop=0.5)
    x = torch.randint(0, 99, (1, 8))
    with torch.no_grad():
        torch.testing.assert_close(model.lm_logits(x), model.lm_logits(x))
        model.train()
        assert not torch.allclose(model.lm_logits(x), model.lm_logits(x))


def test_saved_config_records_the_special_rows(tmp_path):
    tiny(n_special=4).save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["vocab_size"] == 103 and cfg["gptbench"] == {"vocab_size": 99, "n_special": 4}
    assert cfg["model_type"] == "bert" and cfg["hidden_act"] == "gelu" and cfg["intermediate_size"] == 128
