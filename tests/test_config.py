import pytest
from conftest import DATA

from gptbench.config import ConfigError, load_config, require_dir


def test_presets_load_and_merge_overrides():
    cfg = load_config("smoke", ["model.n_layer=3", "finetune.lm_coef=0", "seed=7"])
    assert cfg.name == "smoke" and cfg.model.n_layer == 3 and cfg.finetune.lm_coef == 0 and cfg.seed == 7
    paper = load_config("paper")
    assert (paper.model.n_layer, paper.model.n_embd, paper.model.n_head, paper.model.n_ctx) == (12, 768, 12, 512)
    assert paper.pretrain.lr == 2.5e-4 and paper.pretrain.warmup_steps == 2000 and paper.pretrain.batch_size == 64
    assert paper.finetune.lr == 6.25e-5 and paper.finetune.batch_size == 32 and paper.finetune.epochs == 3
    assert paper.finetune.lm_coef == 0.5 and paper.finetune.warmup_fraction == 0.002 and paper.tokenizer.kind == "gpt1"
    assert load_config("mini").tokenizer.kind in ("gpt1", "trained")


def test_environment_variables_give_path_defaults(monkeypatch):
    monkeypatch.setenv("GPTBENCH_DATA", str(DATA))
    assert load_config("smoke").finetune.data_dir == str(DATA)
    monkeypatch.delenv("GPTBENCH_DATA")
    assert load_config("smoke").finetune.data_dir is None


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.n_layers=3", "model.n_layers"),  # unknown key
        ("pretrain.lr=fast", "pretrain.lr"),  # wrong type
        ("model.n_embd=130", "n_embd \\(130\\) must be divisible by model.n_head"),
        ("finetune.task=nope", "finetune.task='nope'"),
        ("tokenizer.kind=wordpiece", "tokenizer.kind"),
        ("pretrain.warmup_steps=100000", "pretrain.warmup_steps"),
        ("finetune.n_transfer=99", "finetune.n_transfer"),
        ("finetune.init=/no/such/ckpt", "finetune.init"),
        ("trainer.precision=8-bit", "trainer.precision"),
        ("trainer.precision=bf16-true", "trainer.precision='bf16-true': expected not bf16-true: it keeps the weights "
                                        "and Adam's moments in bf16 with no fp32 master copy.*use bf16-mixed"),
        ("trainer.float32_matmul_precision=tf32", "trainer.float32_matmul_precision='tf32': expected one of "
                                                  "\\('highest', 'high', 'medium'\\)"),
        ("model.vocab_size=5", "model.vocab_size cannot be set"),
        ("model.attn_pdrop=1.5", "attn_pdrop"),
        ("justakey", "not of the form key=value"),
    ],
)
def test_invalid_values_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config("smoke", [override])


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ConfigError, match="presets: .*smoke"):
        load_config("nonexistent")


def test_unknown_key_in_yaml_file(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("base: " + str(load_config.__globals__["EXPERIMENTS_DIR"] / "smoke.yaml") + "\npretrain:\n  max_step: 3\n")
    with pytest.raises(ConfigError, match="pretrain.max_step"):
        load_config(path)


def test_missing_directories():
    with pytest.raises(ConfigError, match="finetune.data_dir is not set.*GPTBENCH_DATA"):
        require_dir(None, "finetune.data_dir", "GPTBENCH_DATA", "the benchmark data root")
    with pytest.raises(ConfigError, match="corpus.path='/no/such/dir': directory does not exist"):
        require_dir("/no/such/dir", "corpus.path", "GPTBENCH_CORPUS", "books")


def test_float32_matmul_precision_is_set_by_the_trainer_and_keyed_when_not_exact(tmp_path):
    """32-true on an Ampere-or-newer GPU is full fp32 unless trainer.float32_matmul_precision says
    otherwise; TF32 changes the numbers, so a run made with it has its own key (the exact default
    keeps the keys of runs made before the setting existed)."""
    import torch

    from gptbench.run_identity import finetune_settings, pretrain_settings
    from gptbench.training.common import make_trainer

    exact, tf32 = load_config("smoke"), load_config("smoke", ["trainer.float32_matmul_precision=high"])
    assert exact.trainer.float32_matmul_precision == "highest"
    assert "float32_matmul_precision" not in pretrain_settings(exact) | finetune_settings(exact)
    assert pretrain_settings(tf32)["float32_matmul_precision"] == "high"
    assert finetune_settings(tf32)["float32_matmul_precision"] == "high"
    try:
        make_trainer(tmp_path, tf32.trainer, [])
        assert torch.get_float32_matmul_precision() == "high"
        make_trainer(tmp_path, exact.trainer, [])
        assert torch.get_float32_matmul_precision() == "highest"
    finally:
        torch.set_float32_matmul_precision("highest")
