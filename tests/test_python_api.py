"""The public Python API with a user's own plain Lightning Trainer (no gptbench runner)."""

import re
import shutil
from pathlib import Path

import lightning as L
import pytest
import torch
from conftest import DATA, SHARED, pretrained_model
from rescoring import accuracy_of

import gptbench
from gptbench.data.task_data import random_subset, read_split
from gptbench.tasks import SplitUnavailable

README = Path(__file__).resolve().parents[1] / "README.md"


def plain_trainer(**kwargs) -> L.Trainer:
    return L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, deterministic=True, **kwargs)  # fmt: skip


def test_readme_python_blocks_run(pretrained, cache_dir, tmp_path, monkeypatch, capsys):
    """Every ```python block of the README, run as written, from a checkout whose main job
    left a (here: tiny) pre-trained model in runs/smoke, with ../shared beside it."""
    repo = tmp_path / "repo"
    shutil.copytree(pretrained_model(pretrained), repo / "runs" / "smoke" / "pretrain" / "model")
    (tmp_path / "shared").symlink_to(SHARED)
    monkeypatch.chdir(repo)
    monkeypatch.setenv("GPTBENCH_CACHE", str(cache_dir))
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 2
    namespace = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)

    trainer, module = namespace["trainer"], namespace["module"]
    assert trainer.current_epoch == 3 and module.hparams.task == "rte"
    assert re.search(r"\[\{'dev/loss': [\d.]+, 'dev/accuracy': [\d.]+\}\]", capsys.readouterr().out)
    rows = (repo / "glue_submission" / "RTE.tsv").read_text().splitlines()
    assert rows[0] == "index\tprediction" and len(rows) == 1 + 3000  # every row of glue/RTE/test.tsv
    assert [int(r.split("\t")[0]) for r in rows[1:]] == list(range(3000))
    assert {r.split("\t")[1] for r in rows[1:]} <= {"entailment", "not_entailment"}
    assert (repo / "export" / "model.safetensors").is_file()  # the loading block ran too
    assert (repo / "rte-model" / "task_head.safetensors").is_file()  # and the task-model block


@pytest.fixture(scope="module")
def tokenizer(pretrained):
    return gptbench.Tokenizer.load(pretrained_model(pretrained) / "tokenizer")


class RecordLearningRate(L.Callback):
    def __init__(self):
        self.lrs = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])


def test_first_learning_rates_on_a_small_task(pretrained, tokenizer, cache_dir, tmp_path):
    """Released warmup_linear: the first update runs at lr 0 even when 0.2% of the updates is
    less than one, then the rate decays linearly; the length comes from the Trainer."""
    data = gptbench.datamodule("rte", tokenizer, data_dir=DATA, cache_dir=cache_dir, batch_size=16,
                               max_train_examples=64, max_eval_examples=32)  # fmt: skip
    module = gptbench.FinetuneModule.from_pretrained(pretrained_model(pretrained), task="rte", lr=1e-3)
    lrs = RecordLearningRate()
    trainer = plain_trainer(max_epochs=2, callbacks=[lrs])
    trainer.fit(module, datamodule=data)
    total = 2 * 64 // 16  # 8 updates
    assert lrs.lrs == pytest.approx([1e-3 * (1 - k / total) if k else 0.0 for k in range(total)])
    assert {"train/loss", "train/task_loss", "train/lm_loss", "dev/accuracy"} <= set(trainer.logged_metrics)

    path = tmp_path / "rte.ckpt"
    trainer.save_checkpoint(path)
    again = gptbench.FinetuneModule.load_from_checkpoint(path)
    assert again.hparams.task == "rte" and again.lr == 1e-3
    for key, value in module.state_dict().items():
        assert torch.equal(value, again.state_dict()[key]), key


def test_trainer_test_scores_labelled_test_splits(pretrained, tokenizer, cache_dir):
    data = gptbench.datamodule("story_cloze", tokenizer, data_dir=DATA, cache_dir=cache_dir, batch_size=16,
                               max_eval_examples=48)  # fmt: skip
    module = gptbench.FinetuneModule.from_pretrained(pretrained_model(pretrained), task="story_cloze")
    scores = plain_trainer().test(module, datamodule=data, verbose=False)
    assert data.test_splits == ["test"]
    # The same network and head, asked example by example on the test file's 48 drawn stories and
    # scored by scikit-learn, give the Trainer's number.
    stories = random_subset(read_split(gptbench.get_task("story_cloze"), "test", DATA)[0], 48, 0)
    task_model = gptbench.TaskModel(module.model, module.head, "story_cloze", tokenizer)
    assert scores[0]["test/accuracy"] == pytest.approx(accuracy_of(task_model, stories), abs=1e-6)
    race = gptbench.datamodule("race", tokenizer, data_dir=DATA, cache_dir=cache_dir)
    with pytest.raises(SplitUnavailable, match="no labelled test split.*RACE/test: not found"):
        race.test_dataloader()
    assert set(race.unavailable) == {"test"}


def test_pretrain_module_with_a_plain_trainer(pretrained, tiny_corpus, tokenizer, cache_dir, tmp_path):
    config = gptbench.GPTConfig(vocab_size=tokenizer.vocab_size, n_ctx=32, n_embd=32, n_layer=2, n_head=2)
    module = gptbench.PretrainModule(config, lr=3e-3, warmup_steps=2)
    data = gptbench.CorpusDataModule(tiny_corpus, tokenizer, batch_size=8, val_books=1, val_windows=8,
                                     max_bytes=400_000, cache_dir=cache_dir)  # fmt: skip
    trainer = plain_trainer(max_steps=6, val_check_interval=3, check_val_every_n_epoch=None)
    trainer.fit(module, datamodule=data)
    assert trainer.global_step == 6 and {"train/loss", "val/loss", "val/ppl"} <= set(trainer.logged_metrics)
    trainer.save_checkpoint(tmp_path / "lm.ckpt")
    again = gptbench.PretrainModule.load_from_checkpoint(tmp_path / "lm.ckpt")
    assert again.model.config == config
    assert torch.equal(again.model.tokens_embed.weight, module.model.tokens_embed.weight)
    assert gptbench.GPT.from_pretrained(tmp_path / "lm.ckpt").config == config


def test_bad_arguments_fail_at_construction(tokenizer):
    config = gptbench.GPTConfig(vocab_size=tokenizer.vocab_size, n_ctx=32, n_embd=32, n_layer=1, n_head=2)
    with pytest.raises(ValueError, match="lr=-1"):
        gptbench.FinetuneModule(config, "rte", lr=-1)
    with pytest.raises(ValueError, match="zero-shot only"):
        gptbench.FinetuneModule(config, "dprd")
    with pytest.raises(ValueError, match="n_transfer must be"):
        gptbench.FinetuneModule.from_pretrained(gptbench.GPT(config), "rte", n_transfer=5)
    with pytest.raises(ValueError, match=r"\['validation'\] are not splits of rte"):
        gptbench.datamodule("rte", tokenizer, splits={"validation": "dev"})
    with pytest.raises(ValueError, match="batch_size must be positive"):
        gptbench.datamodule("rte", tokenizer, batch_size=0)
    with pytest.raises(gptbench.tasks.DataError, match="data_dir='/nonexistent'"):
        gptbench.datamodule("rte", tokenizer, data_dir="/nonexistent")
    with pytest.raises(KeyError, match="unknown task 'rtee'"):
        gptbench.datamodule("rtee", tokenizer)


def test_public_names():
    for name in gptbench.__all__:
        assert getattr(gptbench, name).__doc__ or name in ("TASKS",), name


def test_ddp_over_two_cpu_processes_matches_one_process(pretrained, tokenizer, cache_dir):
    """Data parallelism through Lightning's strategies: 2 CPU processes (gloo) with 8 examples
    each fine-tune like 1 process with the same global batch of 16 (dropout off, so the only
    difference is the order of floating-point sums)."""
    no_dropout = {"embd_pdrop": 0.0, "attn_pdrop": 0.0, "resid_pdrop": 0.0}

    def fit(devices: int, batch_size: int) -> dict:
        torch.manual_seed(0)
        module = gptbench.FinetuneModule.from_pretrained(pretrained_model(pretrained), task="rte", lr=1e-3,
                                                         clf_pdrop=0.0, model_overrides=no_dropout)  # fmt: skip
        data = gptbench.datamodule("rte", tokenizer, data_dir=DATA, cache_dir=cache_dir, batch_size=batch_size,
                                   max_train_examples=64, max_eval_examples=32)  # fmt: skip
        strategy = "ddp_spawn" if devices > 1 else "auto"
        trainer = plain_trainer(max_epochs=2, accelerator="cpu", devices=devices, strategy=strategy)
        trainer.fit(module, datamodule=data)
        assert devices > 1 or trainer.global_step == 8  # (ddp_spawn's trainer state stays in its processes)
        return {k: v.clone() for k, v in module.state_dict().items()}

    one, two = fit(1, 16), fit(2, 8)
    start = gptbench.GPT.from_pretrained(pretrained_model(pretrained)).state_dict()
    moved = max((one[f"model.{k}"] - v).abs().max().item() for k, v in start.items() if "tokens_embed" not in k)
    diff = max((one[k] - two[k]).abs().max().item() for k in one)
    print(f"DDP vs single process: max |weight difference| {diff:.2e} (weights moved up to {moved:.2e})")
    assert moved > 1e-3 and diff < 1e-5
