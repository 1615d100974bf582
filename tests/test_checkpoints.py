"""Parity with transformers' OpenAIGPTLMHeadModel and OpenAI's released .npy format."""

import json

import numpy as np
import pytest
import torch

from gptbench import GPT
from gptbench.models.checkpoints import CheckpointError
from tests.conftest import saved_hf_gpt

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def hf_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("hf")
    return saved_hf_gpt(path, n_positions=40), path


def hf_logits(model, ids):
    with torch.no_grad():
        return model(ids).logits


def test_load_hf_directory_gives_identical_logits(hf_model):
    hf, path = hf_model
    ours = GPT.from_pretrained(path).eval()
    assert ours.config.vocab_size == 211 and ours.config.n_special == 3
    ids = torch.randint(0, 211, (3, 40))
    with torch.no_grad():
        diff = (ours.lm_logits(ids)[..., :211] - hf_logits(hf, ids)).abs().max().item()
    assert diff <= 1e-4


def test_load_pytorch_model_bin(hf_model, tmp_path):
    hf, path = hf_model
    (tmp_path / "config.json").write_text((path / "config.json").read_text())
    torch.save(hf.transformer.state_dict(), tmp_path / "pytorch_model.bin")  # OpenAIGPTModel keys
    ours = GPT.from_pretrained(tmp_path).eval()
    ids = torch.randint(0, 211, (2, 10))
    with torch.no_grad():
        assert (ours.lm_logits(ids)[..., :211] - hf_logits(hf, ids)).abs().max() <= 1e-4


def test_save_pretrained_loads_in_transformers(tmp_path):
    torch.manual_seed(1)
    from gptbench import GPTConfig

    ours = GPT(GPTConfig(vocab_size=150, n_ctx=20, n_embd=32, n_layer=2, n_head=2)).eval()
    ours.save_pretrained(tmp_path)
    hf = transformers.OpenAIGPTLMHeadModel.from_pretrained(tmp_path).eval()
    ids = torch.randint(0, 153, (2, 20))  # special tokens included
    with torch.no_grad():
        assert (hf_logits(hf, ids) - ours.lm_logits(ids)).abs().max() <= 1e-4
    again = GPT.from_pretrained(tmp_path)
    assert again.config == ours.config
    torch.testing.assert_close(again.tokens_embed.weight, ours.tokens_embed.weight, rtol=0, atol=0)


def write_openai_shards(hf, path, n_shards=10):
    """Write the weights of an OpenAIGPTModel exactly as OpenAI released theirs."""
    sd = {k.removeprefix("transformer."): v for k, v in hf.state_dict().items()}
    arrays = [sd["positions_embed.weight"], sd["tokens_embed.weight"]]
    for i in range(hf.config.n_layer):
        for key in ("attn.c_attn", "attn.c_proj"):
            arrays += [sd[f"h.{i}.{key}.weight"][None], sd[f"h.{i}.{key}.bias"]]
        arrays += [sd[f"h.{i}.ln_1.weight"], sd[f"h.{i}.ln_1.bias"]]
        for key in ("mlp.c_fc", "mlp.c_proj"):
            arrays += [sd[f"h.{i}.{key}.weight"][None], sd[f"h.{i}.{key}.bias"]]
        arrays += [sd[f"h.{i}.ln_2.weight"], sd[f"h.{i}.ln_2.bias"]]
    arrays = [a.numpy().astype(np.float32) for a in arrays]
    (path / "params_shapes.json").write_text(json.dumps([list(a.shape) for a in arrays]))
    for i, shard in enumerate(np.array_split(np.concatenate([a.ravel() for a in arrays]), n_shards)):
        np.save(path / f"params_{i}.npy", shard)


def test_openai_npy_shards_give_identical_logits(hf_model, tmp_path):
    hf, _ = hf_model
    write_openai_shards(hf, tmp_path)
    ours = GPT.from_pretrained(tmp_path, n_head=4).eval()
    ids = torch.randint(0, 211, (2, 40))
    with torch.no_grad():
        assert (ours.lm_logits(ids)[..., :211] - hf_logits(hf, ids)).abs().max() <= 1e-4


def test_real_params_shapes_describe_the_paper_model():
    from conftest import GPT1

    from gptbench import GPTConfig

    shapes = json.loads((GPT1 / "params_shapes.json").read_text())
    assert len(shapes) == 146
    assert sum(int(np.prod(s)) for s in shapes) == GPT(GPTConfig.paper()).num_parameters(include_special=False)


def test_wrong_shapes_name_the_key(hf_model, tmp_path):
    hf, _ = hf_model
    write_openai_shards(hf, tmp_path)
    with pytest.raises(CheckpointError, match=r"'tokens_embed.weight' has shape \(211, 48\), expected \(214, 64\)"):
        GPT.from_pretrained(tmp_path, n_head=4, n_embd=64)  # claims a different width
    np.save(tmp_path / "params_9.npy", np.zeros(3, dtype=np.float32))
    with pytest.raises(CheckpointError, match="shards hold"):
        GPT.from_pretrained(tmp_path, n_head=4)


def test_unrecognised_path(tmp_path):
    with pytest.raises(CheckpointError, match="not a recognised checkpoint"):
        GPT.from_pretrained(tmp_path)
