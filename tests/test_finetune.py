import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import DATA, pretrained_model
from lightning.pytorch.callbacks import TQDMProgressBar
from rescoring import rescored_accuracy
from test_pretrain import crash_at

import gptbench.training.finetune as finetune
from gptbench import GPT, GPTConfig
from gptbench.config import load_config
from gptbench.tasks import get_task
from gptbench.training.common import LineProgress, progress_bar


def stage_results(cfg, task="sst2") -> Path:
    """The one results.json of a task in a run directory (its path carries the settings key)."""
    (path,) = (cfg.run_dir / "finetune" / task).glob(f"*/seed{cfg.finetune_seed}/results.json")
    return path


def test_sst2_end_to_end(pretrained):
    cfg = load_config("smoke", pretrained + ["finetune.task=sst2"])
    results = finetune.run_finetune(cfg)
    saved = json.loads(stage_results(cfg).read_text())
    assert saved == results
    assert set(saved["metrics"]) == set(saved["metrics_last_epoch"]) == {"dev"}
    # The saved model, re-scored on the same 64 dev examples by scikit-learn, gives the reported number.
    model = stage_results(cfg).parent / "model"
    assert saved["metrics"]["dev"]["accuracy"] == pytest.approx(rescored_accuracy(model, saved, "dev"), abs=1e-6)
    # Selection on a held-out slice of train (SST-2 reports dev): 10% of 67,349 capped at 2,000,
    # then max_eval_examples=64 of it; training uses 96 of the rest.
    assert {k: v["examples"] for k, v in saved["splits"].items()} == {"train": 96, "holdout": 64, "dev": 64}
    assert saved["splits"]["holdout"]["source"] == "train, held out"
    assert saved["selection"] | {"best_epoch": 0, "best_step": 0, "score": 0.5} == {
        "protocol": "holdout", "split": "holdout", "metric": "accuracy", "best_epoch": 0, "best_step": 0,
        "score": 0.5, "holdout_examples": 64}  # fmt: skip
    # the chosen epoch's holdout accuracy: the saved model is that epoch's, so it re-scores the same
    assert saved["selection"]["score"] == pytest.approx(rescored_accuracy(model, saved, "holdout"), abs=1e-6)
    assert saved["selection"]["best_epoch"] in (0, 1) and saved["reported_splits"] == ["dev"]
    assert saved["substitutions"] == {} and saved["unavailable"] == {}
    assert "pretrain/" in saved["init"] and saved["init"].endswith("/model")
    assert finetune.run_finetune(cfg) == saved  # idempotent: a finished run is not redone
    hparams = hparams_in_tensorboard(stage_results(cfg).parent / "tb")
    assert hparams["task"] == "sst2" and hparams["select"] == "holdout"
    assert hparams["hp/dev/accuracy"] == pytest.approx(saved["metrics"]["dev"]["accuracy"])
    assert hparams["hp/last_epoch/dev/accuracy"] == pytest.approx(saved["metrics_last_epoch"]["dev"]["accuracy"])
    # training, the final scoring and the HParams entry are one TensorBoard event file
    assert len(list((stage_results(cfg).parent / "tb").glob("events.out.tfevents.*"))) == 1


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_off_a_terminal_is_one_line_per_logging_interval(pretrained, capsys):
    """Output that is not a terminal (here pytest's capture; sweep logs, SLURM, CI) gets a line per
    logging interval instead of a redrawn bar. SST-2's 96 training examples in batches of 16 are 6
    steps an epoch, logged every max(1, 6 // 4) = 1 step: 2 epochs print steps 1..12."""
    assert isinstance(progress_bar(Terminal()), TQDMProgressBar)
    assert isinstance(progress_bar(io.StringIO()), LineProgress)
    cfg = load_config("smoke", pretrained + ["finetune.task=sst2", "name=progress",
                                             f"finetune.init={pretrained_model(pretrained)}"])  # fmt: skip
    capsys.readouterr()
    finetune.run_finetune(cfg)
    out = capsys.readouterr().out  # where Lightning's bar would redraw itself
    assert "\r" not in out
    lines = [line for line in out.splitlines() if line.startswith("epoch ")]
    pattern = r"epoch (\d) +step (\d+)/12 +loss \d+\.\d{4} +tokens/s [\d,]+ +ETA \d:\d\d:\d\d"
    fields = [re.fullmatch(pattern, line) for line in lines]
    assert all(fields), lines
    assert [(int(m[1]), int(m[2])) for m in fields] == [(0 if step <= 6 else 1, step) for step in range(1, 13)]
    assert lines[-1].endswith("ETA 0:00:00")


def hparams_in_tensorboard(tb_dir: Path) -> dict:
    """The HParams tab's view of a run: its hyperparameters and the values of its hp/ metrics."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    acc = EventAccumulator(str(tb_dir), size_guidance={"scalars": 0})
    acc.Reload()
    content = acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    start = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
    values = {k: v.string_value or v.number_value for k, v in start.hparams.items()}
    metrics = {tag: acc.Scalars(tag)[-1].value for tag in acc.Tags()["scalars"] if tag.startswith("hp/")}
    return values | metrics


def finetune_crashed_and_resumed(cfg, monkeypatch) -> None:
    """Fine-tune ``cfg`` (two 6-step epochs), crashed at step 3, mid-way through the first, then resumed."""
    with monkeypatch.context() as m:
        crash_at(m, finetune, step=3)
        with pytest.raises(RuntimeError, match="simulated crash"):
            finetune.run_finetune(cfg)
    cfg.resume = True
    finetune.run_finetune(cfg)


def assert_same_last_checkpoints(*cfgs) -> None:
    """The fine-tunes of ``cfgs`` ended at step 12 with equal weights, bit for bit."""
    first, *others = [torch.load(stage_results(c).parent / "checkpoints/last.ckpt", weights_only=True) for c in cfgs]
    assert [c["global_step"] for c in (first, *others)] == [12] * len(cfgs)
    for key, value in first["state_dict"].items():
        for other in others:
            assert torch.equal(value, other["state_dict"][key]), key


@pytest.mark.cpu
def test_finetune_resume_after_a_crash_is_exact(pretrained, monkeypatch):
    base = pretrained + ["finetune.seed=5", "trainer.accelerator=cpu"]
    straight = load_config("smoke", base)
    finetune.run_finetune(straight)
    crashed = load_config("smoke", base + ["name=tiny_crashed", f"finetune.init={straight.run_dir / 'pretrain' / 'model'}"])
    finetune_crashed_and_resumed(crashed, monkeypatch)
    assert_same_last_checkpoints(straight, crashed)


def test_a_changed_setting_is_a_different_run(pretrained, capsys):
    """Run identity: finished stages are reused only for the same settings (issue: after the
    default run, an ablation printed 'already complete' and returned the default's results)."""
    base = load_config("smoke", pretrained + ["finetune.task=rte"])
    default = finetune.run_finetune(base)
    ablation = load_config("smoke", pretrained + ["finetune.task=rte", "finetune.init=none", "finetune.lm_coef=0"])
    capsys.readouterr()
    result = finetune.run_finetune(ablation)
    assert "already complete" not in capsys.readouterr().out
    assert result["init"].startswith("none") and result["finetune"]["lm_coef"] == 0
    assert result["settings_key"] != default["settings_key"]
    dirs = {p.name for p in (base.run_dir / "finetune" / "rte").iterdir()}  # other tests' runs share the folder
    assert {default["settings_key"], result["settings_key"]} <= dirs
    assert default["settings_key"].startswith("pretrained-lm0.5") and result["settings_key"].startswith("scratch-lm0-")
    settings = json.loads((ablation.run_dir / "finetune" / "rte" / result["settings_key"] / "settings.json").read_text())
    assert settings["init"] == {"none": settings["init"]["none"]} and settings["finetune"]["lm_coef"] == 0
    assert finetune.run_finetune(ablation) == result  # the same settings: reused
    assert "already complete" in capsys.readouterr().out


def test_selection_protocols(pretrained):
    """last: no selection, the final epoch's scores are the reported ones; dev where a labelled
    test split is reported (Story Cloze) under auto."""
    last = finetune.run_finetune(load_config("smoke", pretrained + ["finetune.task=rte", "finetune.select=last"]))
    assert last["selection"]["protocol"] == "last" and last["selection"]["split"] is None
    assert last["selection"]["best_epoch"] == 1 and last["metrics"] == last["metrics_last_epoch"]
    assert "holdout" not in last["splits"] and last["splits"]["train"]["examples"] == 96
    cloze = finetune.run_finetune(load_config("smoke", pretrained + ["finetune.task=story_cloze"]))
    assert cloze["selection"]["protocol"] == "dev" and set(cloze["metrics"]) == {"dev", "test"}
    assert cloze["reported_splits"] == ["dev", "test"]
    race = load_config("smoke", pretrained + ["finetune.task=race"])  # its test split is absent here
    assert finetune.resolve_selection(race, get_task("race"), DATA) == "holdout"
    assert finetune.resolve_selection(race, get_task("race"), None) == "dev"  # the hub has RACE test


def tiny_module(task="sst2", **optim):
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=50, n_ctx=16, n_embd=16, n_layer=1, n_head=2))
    return finetune.FinetuneModule(model, task, total_steps=10, **optim)


def test_lm_loss_averages_real_positions_per_sequence():
    module = tiny_module().eval()
    ids = torch.tensor([[[50, 5, 6, 52, 0, 0]], [[50, 7, 8, 9, 10, 52]]])
    mask = (ids != 0).long()
    _, hidden = module(ids, mask)
    logits = module.model.lm_head(hidden)
    expected = torch.stack([
        F.cross_entropy(logits[0, :3], ids[0, 0, 1:4]),
        F.cross_entropy(logits[1, :5], ids[1, 0, 1:6]),
    ]).mean()  # fmt: skip
    torch.testing.assert_close(module.lm_loss(hidden, ids, mask), expected)


def test_prediction_reads_the_extract_token():
    module = tiny_module().eval()
    ids = torch.tensor([[[50, 5, 6, 52, 0, 0]]])
    logits, hidden = module(ids, (ids != 0).long())
    torch.testing.assert_close(logits, module.head.linear(hidden[:, 3]))


@pytest.mark.parametrize("transformation, C, out", [("similarity", 2, (4, 3)), ("multiple_choice", 4, (4, 4))])
def test_head_shapes_and_shared_dropout(transformation, C, out):
    head = finetune.TaskHead(8, transformation, num_outputs=3, pdrop=0.5, init_std=0.02).train()
    h = torch.ones(4, C, 8)
    torch.manual_seed(0)
    assert head(h).shape == out
    if transformation == "multiple_choice":  # same mask for every choice -> equal scores
        scores = head(h)
        assert torch.allclose(scores, scores[:, :1].expand_as(scores))


def test_n_transfer_reinitialises_later_blocks(pretrained):
    cfg = load_config("smoke", pretrained + ["finetune.n_transfer=1"])
    module, tokenizer, _ = finetune.initial_module(cfg)
    model = module.model
    reference = GPT.from_pretrained(cfg.run_dir / "pretrain" / "model")
    assert torch.equal(model.h[0].attn.c_attn.weight, reference.h[0].attn.c_attn.weight)
    assert not torch.equal(model.h[1].attn.c_attn.weight, reference.h[1].attn.c_attn.weight)
    assert torch.equal(model.tokens_embed.weight[: tokenizer.vocab_size], reference.tokens_embed.weight[: tokenizer.vocab_size])
    assert finetune.initial_module(load_config("smoke", pretrained + ["finetune.init=none"]))[2].startswith("none")


def test_linear_probe_trains_only_the_head(pretrained):
    from gptbench.config import ConfigError
    from gptbench.training.task_model import TaskModel

    cfg = load_config("smoke", pretrained + ["finetune.task=rte", "finetune.freeze_body=true", "finetune.lm_coef=0",
                                             "finetune.lr=1e-2"])  # fmt: skip
    results = finetune.run_finetune(cfg)
    assert results["finetune"]["freeze_body"] is True
    (stage,) = (cfg.run_dir / "finetune" / "rte").glob(f"{results['settings_key']}/seed{cfg.finetune_seed}")
    probe = TaskModel.from_pretrained(stage / "model", device="cpu")
    reference = GPT.from_pretrained(cfg.run_dir / "pretrain" / "model")
    v = reference.config.vocab_size  # the BPE rows and every block are the pre-trained ones, unchanged
    assert torch.equal(probe.model.tokens_embed.weight[:v], reference.tokens_embed.weight[:v])
    for mine, theirs in zip(probe.model.h.parameters(), reference.h.parameters()):
        assert torch.equal(mine, theirs)
    module, _, _ = finetune.initial_module(cfg)
    assert all(not p.requires_grad for p in module.model.parameters())
    assert module.train().model.training is False and module.head.training is True  # no dropout in the body
    full = finetune.run_finetune(load_config("smoke", pretrained + ["finetune.task=rte"]))
    assert full["settings_key"] != results["settings_key"]
    with pytest.raises(ConfigError, match="finetune.lm_coef=0.5: expected 0 with finetune.freeze_body=true"):
        load_config("smoke", pretrained + ["finetune.freeze_body=true"])


def test_foreign_weights_must_match_the_tokenizer(pretrained, tmp_path):
    from gptbench.models.checkpoints import CheckpointError
    from gptbench.config import ConfigError

    GPT(GPTConfig(vocab_size=211, n_ctx=16, n_embd=16, n_layer=1, n_head=2)).save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match="model vocabulary 211 != tokenizer vocabulary 40478"):
        finetune.initial_module(load_config("smoke", pretrained + [f"finetune.init={tmp_path}", "tokenizer.kind=gpt1"]))
    with pytest.raises(ConfigError, match="no tokenizer/ beside the weights"):
        finetune.initial_module(load_config("smoke", pretrained + [f"finetune.init={tmp_path}"]))


def write_tsv(path, header, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(["\t".join(header), *("\t".join(map(str, r)) for r in rows)]) + "\n")


def written_data(root):
    """Small files in the original formats of the splits absent here (MNLI, QQP, QNLI, SciTail)."""
    sentences = [r["text"] for r in get_task("sst2").read("dev", DATA)[0][:40]]
    pairs = list(zip(sentences[:20], sentences[20:]))
    mnli = ["index", "promptID", "pairID", "genre", "s1b", "s2b", "s1p", "s2p", "sentence1", "sentence2", "label1"]
    labels = ("entailment", "neutral", "contradiction")
    write_tsv(root / "glue/MNLI/train.tsv", mnli + ["gold_label"],
              [(i, 0, 0, "g", "(", "(", "(", "(", a, b, labels[i % 3], labels[i % 3]) for i, (a, b) in enumerate(pairs)])
    for name in ("dev_matched", "dev_mismatched"):
        write_tsv(root / f"glue/MNLI/{name}.tsv", mnli + ["label2", "label3", "label4", "label5", "gold_label"],
                  [(i, 0, 0, "g", "(", "(", "(", "(", a, b, *[labels[i % 3]] * 6) for i, (a, b) in enumerate(pairs)])
    for name in ("train", "dev"):
        write_tsv(root / f"glue/QQP/{name}.tsv", ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"],
                  [(i, 1, 2, a, b, i % 2) for i, (a, b) in enumerate(pairs)])
        write_tsv(root / f"glue/QNLI/{name}.tsv", ["index", "question", "sentence", "label"],
                  [(i, a, b, ("entailment", "not_entailment")[i % 2]) for i, (a, b) in enumerate(pairs)])
    for name in ("train", "dev", "test"):
        rows = "".join(f"{a}\t{b}\t{('entails', 'neutral')[i % 2]}\n" for i, (a, b) in enumerate(pairs))
        path = root / f"scitail/SciTailV1.1/tsv_format/scitail_1.0_{name}.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rows)
    return root


EXPECTED_METRICS = {
    "cola": {"dev": ["accuracy", "matthews"]},
    "sst2": {"dev": ["accuracy"]},
    "mrpc": {"dev": ["accuracy", "f1"]},
    "stsb": {"dev": ["pearson", "spearman"]},
    "rte": {"dev": ["accuracy"]},
    "wnli": {"dev": ["accuracy"]},
    "race": {"dev": ["accuracy", "high/accuracy", "middle/accuracy"]},
    "story_cloze": {"dev": ["accuracy"], "test": ["accuracy"]},
    "snli": {"dev": ["accuracy"], "test": ["accuracy"]},
    "mnli": {"dev_matched": ["accuracy"], "dev_mismatched": ["accuracy"]},
    "qqp": {"dev": ["accuracy", "f1"]},
    "qnli": {"dev": ["accuracy"]},
    "scitail": {"dev": ["accuracy"], "test": ["accuracy"]},
}


@pytest.mark.parametrize("task", sorted(EXPECTED_METRICS))
def test_smoke_finetune_of_every_task(pretrained, task, tmp_path):
    overrides = [f"finetune.task={task}", "finetune.epochs=1", "finetune.max_train_examples=32",
                 "finetune.max_eval_examples=32", f"name=every_{task}"]  # fmt: skip
    if task in ("mnli", "qqp", "qnli", "scitail"):  # absent here: files written in the original format
        overrides.append(f"finetune.data_dir={written_data(tmp_path)}")
    if task == "snli":  # no train split here: train on dev, select on test (recorded)
        overrides += ["finetune.splits.train=dev", "finetune.splits.dev=test"]
    cfg = load_config("smoke", pretrained + overrides + [f"finetune.init={Path(pretrained_model(pretrained))}"])
    results = finetune.run_finetune(cfg)
    assert {split: sorted(m) for split, m in results["metrics"].items()} == EXPECTED_METRICS[task]
    for metrics in results["metrics"].values():
        assert all(np.isfinite(v) for v in metrics.values())
    if task == "snli":
        assert results["substitutions"] == {"train": "dev", "dev": "test"}
        assert results["splits"]["train"]["source"] == "split dev"
    if task == "scitail":  # read from the original tsv_format, not this machine's CSV conversion
        assert results["splits"]["test"]["source"] == "test" and results["splits"]["test"]["examples"] == 20
    if task == "race":
        assert results["unavailable"] == {"test": results["unavailable"]["test"]}
        assert "not found" in results["unavailable"]["test"]


def test_zero_shot_task_and_unknown_split_are_config_errors(pretrained):
    from gptbench.config import ConfigError

    with pytest.raises(ConfigError, match="zero-shot only"):
        finetune.run_finetune(load_config("smoke", pretrained + ["finetune.task=dprd"]))
    with pytest.raises(ConfigError, match=r"\['validation'\] are not splits of sst2"):
        finetune.run_finetune(load_config("smoke", pretrained + ["finetune.splits.validation=dev"]))
