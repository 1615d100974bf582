"""Bad input stopped at the door (#11): one test per class of silent wrong result or raw traceback."""

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from conftest import tiny_overrides

from gptbench.cli import main
from gptbench.config import ConfigError, load_config
from gptbench.errors import CorpusError, NonFiniteLoss, RunLocked
from gptbench.models import GPT, GPTConfig, load_pretrained
from gptbench.models.checkpoints import CheckpointError
from gptbench.run_lock import run_lock
from gptbench.tasks import DataError, get_task

STSB_ROW = "\t".join(["x"] * 7) + "\tA man plays.\tA man sings.\t{}\n"


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


# ---- silent wrong results --------------------------------------------------------------------
@pytest.mark.parametrize("score", ["nan", "inf", "-0.5", "7.5", "NaN"])
def test_scores_outside_the_tasks_range_are_errors(tmp_path, score):
    write(tmp_path / "glue/STS-B/train.tsv", "\t".join(["h"] * 10) + "\n" + STSB_ROW.format("3.2") + STSB_ROW.format(score))
    with pytest.raises(DataError, match=rf"train.tsv:3: expected a numeric score in \[0, 5\], got '{score}'"):
        get_task("stsb").read("train", tmp_path)
    write(tmp_path / "glue/STS-B/train.tsv", "\t".join(["h"] * 10) + "\n" + STSB_ROW.format("5.000"))
    assert get_task("stsb").read("train", tmp_path)[0][0]["label"] == 5.0  # the bounds are allowed


def test_a_tab_inside_a_sentence_is_an_error_not_a_column_shift(tmp_path):
    header = "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
    write(tmp_path / "glue/MRPC/train.tsv", header + "1\t1\t2\tHe said\tso.\tHe said so.\n")
    with pytest.raises(DataError, match=r"MRPC/train.tsv:2: 6 tab-separated columns where the header has 5 "
                                         r"\(a tab or a line break inside a text field\?\)"):  # fmt: skip
        get_task("mrpc").read("train", tmp_path)


@pytest.mark.parametrize("override", ["pretrain.lr=inf", "finetune.lr=nan", "finetune.lm_coef=inf",
                                      "finetune.warmup_fraction=nan", "pretrain.betas=[0.9,.nan]"])  # fmt: skip
def test_non_finite_config_numbers_are_refused(override):
    key = override.split("=")[0].replace("betas", "betas.1")
    with pytest.raises(ConfigError, match=rf"{key}=.*expected a finite number"):
        load_config("smoke", [override])


@pytest.mark.parametrize("nan_from, overrides, stopped_at, last_ckpt, snapshots", [
    # Read back at the logging interval (every 2 steps): step 8, before that step's checkpoint.
    (6, [], 8, 4, ["step0", "step4"]),
    # No logging step before the checkpoint at step 8: the checkpoint itself reads it first.
    (7, ["pretrain.log_every_n_steps=100"], 8, 4, ["step0", "step4"]),
    # No logging step, no checkpoint: the snapshot at step 12 reads it first.
    (9, ["pretrain.log_every_n_steps=100", "pretrain.checkpoint_every_n_steps=100"], 12, None, ["step0", "step4"]),
])  # fmt: skip
def test_a_loss_that_becomes_nan_stops_the_run(tmp_path, tiny_corpus, cache_dir, monkeypatch, nan_from, overrides,
                                               stopped_at, last_ckpt, snapshots):  # fmt: skip
    """The losses are checked on the device and read back at logging steps, checkpoints and
    snapshots: the run stops there, naming the first non-finite step, and no checkpoint or snapshot
    ever holds weights updated from a non-finite loss."""
    from gptbench.run_identity import pretrain_dir
    from gptbench.training import pretrain

    real = pretrain.PretrainModule.loss

    def diverging(self, x, y):
        loss = real(self, x, y)
        return loss * float("nan") if self.trainer.global_step >= nan_from else loss

    monkeypatch.setattr(pretrain.PretrainModule, "loss", diverging)
    cfg = load_config("smoke", tiny_overrides(tmp_path, tiny_corpus, cache_dir) + overrides)
    resume = (r"the last checkpoint before it is .*last.ckpt" if last_ckpt else "no checkpoint was written before it")
    with pytest.raises(NonFiniteLoss, match=rf"training loss is nan at step {nan_from}; stopped at step {stopped_at} "
                                            rf".*before any checkpoint held the weights after it; {resume}"):  # fmt: skip
        pretrain.run_pretrain(cfg)
    ckpts = pretrain_dir(cfg) / "checkpoints"
    assert not (ckpts / "on_exception.ckpt").exists()  # NaN weights are not offered for resuming
    if last_ckpt:
        assert torch.load(ckpts / "last.ckpt", weights_only=True)["global_step"] == last_ckpt
    assert sorted(p.name for p in (pretrain_dir(cfg) / "snapshots").iterdir()) == snapshots


def test_garbage_corpora_are_refused(tmp_path, tiny_corpus):
    from gptbench.data.corpus import split_books

    books = tmp_path / "books"
    for p in sorted(tiny_corpus.glob("*.txt"))[:3]:
        write(books / p.name, p.read_bytes())
    write(books / "picture.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" * 100)
    with pytest.raises(CorpusError, match=r"picture.txt \(binary: NUL bytes\)"):
        split_books(books, val_books=1, max_bytes=None)
    write(books / "picture.txt", "caf\xe9 ".encode("latin-1") * 1000)
    with pytest.raises(CorpusError, match=r"picture.txt \(1,000 of 5,000 bytes are not UTF-8\)"):
        split_books(books, val_books=1, max_bytes=None)


def test_a_vocabulary_the_corpus_cannot_give_is_an_error(tmp_path, tiny_corpus, cache_dir):
    from gptbench.data.tokenizer_stage import run_tokenizer

    books = tmp_path / "books"
    for i in range(2):
        write(books / f"b{i}.txt", "the cat sat on the mat. " * 50)
    cfg = load_config("smoke", tiny_overrides(tmp_path, books, cache_dir) + ["tokenizer.vocab_size=3000"])
    with pytest.raises(CorpusError, match=r"tokenizer.vocab_size=3000 was asked, but 1,199 characters of 1 training "
                                          r"book\(s\) under .* yield only \d+ BPE tokens"):  # fmt: skip
        run_tokenizer(cfg)


# ---- raw tracebacks -> one-line errors -----------------------------------------------------------
def test_bytes_that_are_not_utf8_name_the_file_and_line(tmp_path):
    write(tmp_path / "glue/SST-2/train.tsv", b"sentence\tlabel\ngood\t1\nna\xffve\t0\n")
    with pytest.raises(DataError, match=r"SST-2/train.tsv:3: not UTF-8 text \(byte b'\\xff' at offset 24\)"):
        get_task("sst2").read("train", tmp_path)
    (tmp_path / "race/RACE/train/high").mkdir(parents=True)
    write(tmp_path / "race/RACE/train/middle/7.txt", b'{"article": "caf\xe9"}')
    with pytest.raises(DataError, match=r"middle/7.txt:1: not UTF-8 text"):
        get_task("race").read("train", tmp_path)


@pytest.mark.parametrize("content, message", [
    ("model:\n  n_layer: [1\n", r"bad.yaml:\d+: not valid YAML"),
    ("- a\n- b\n", r"bad.yaml: expected a YAML mapping of config keys, got a ListConfig"),
    ("base: bad.yaml\nseed: 1\n", r"config base: chain loops: .*bad.yaml -> .*bad.yaml"),
    ("base: nowhere.yaml\n", r"nowhere.yaml \(the base: of .*bad.yaml\): no such file"),
])  # fmt: skip
def test_bad_yaml_files_are_one_line_errors(tmp_path, capsys, content, message):
    write(tmp_path / "bad.yaml", content)
    assert main(["pretrain", str(tmp_path / "bad.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gptbench: error: ") and err.count("\n") == 1
    assert re.search(message, err), err


@pytest.mark.parametrize("books, val_books", [(0, 1), (2, 2)])
def test_too_few_books_is_a_one_line_error(tmp_path, tiny_corpus, cache_dir, capsys, books, val_books):
    folder = tmp_path / "books"
    folder.mkdir()
    for p in sorted(tiny_corpus.glob("*.txt"))[:books]:
        write(folder / p.name, p.read_bytes())
    args = tiny_overrides(tmp_path, folder, cache_dir) + [f"corpus.val_books={val_books}"]
    assert main(["pretrain", "smoke", *args]) == 2
    assert f"found {books} .txt books, need more than corpus.val_books={val_books}" in capsys.readouterr().err


def test_broken_checkpoints_are_checkpoint_errors(tmp_path):
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=50, n_ctx=8, n_embd=16, n_layer=1, n_head=2))
    model.save_pretrained(tmp_path / "good")
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                "model_config": {"arch": "transformer", **model.config.__dict__}}, tmp_path / "good.ckpt")  # fmt: skip
    assert isinstance(load_pretrained(tmp_path / "good.ckpt"), GPT)
    data = (tmp_path / "good.ckpt").read_bytes()
    write(tmp_path / "truncated.ckpt", data[: len(data) // 2])
    write(tmp_path / "random.ckpt", os.urandom(4096))
    for name in ("truncated.ckpt", "random.ckpt"):
        with pytest.raises(CheckpointError, match=rf"{name}: not a readable PyTorch checkpoint"):
            load_pretrained(tmp_path / name)
    bad = tmp_path / "bad"
    bad.mkdir()
    write(bad / "config.json", "{not json")
    with pytest.raises(CheckpointError, match=r"bad/config.json: not a readable JSON file"):
        load_pretrained(bad)
    config = json.loads((tmp_path / "good" / "config.json").read_text())
    write(bad / "config.json", json.dumps(config))
    write(bad / "model.safetensors", (tmp_path / "good" / "model.safetensors").read_bytes()[:-100])
    with pytest.raises(CheckpointError, match=r"model.safetensors: unreadable weights"):
        load_pretrained(bad)
    write(bad / "config.json", json.dumps({**config, "n_head": 5}))  # 16 is not divisible by 5
    with pytest.raises(CheckpointError, match=r"config.json: model.n_embd \(16\) must be divisible by model.n_head \(5\)"):
        load_pretrained(bad)


# ---- concurrency ---------------------------------------------------------------------------------
def test_a_run_directory_is_held_by_one_process(tmp_path, capsys):
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from gptbench.run_lock import run_lock
        with run_lock(Path({str(tmp_path)!r})):
            print("held", flush=True)
            time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunLocked, match=rf"{tmp_path} is in use by pid {holder.pid} on host .* since "):
            with run_lock(tmp_path):
                pass
    finally:
        holder.kill()  # dies holding the lock: the kernel releases it, its name stays in the file
        holder.wait()
    with run_lock(tmp_path):
        assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
    assert f"took over the lock of pid {holder.pid}" in capsys.readouterr().out
    assert (tmp_path / ".lock").read_text() == ""  # released


def test_two_finetunes_of_one_run_directory(pretrained, capsys):
    from gptbench.run_identity import finetune_dir
    from gptbench.training.finetune import run_finetune

    cfg = load_config("smoke", [*pretrained, "finetune.task=rte", "finetune.seed=99", "finetune.select=holdout"])
    with run_lock(finetune_dir(cfg)):  # as a second process would find it
        with pytest.raises(RunLocked, match=rf"{finetune_dir(cfg)} is in use by pid {os.getpid()}"):
            run_finetune(cfg)
    assert not (finetune_dir(cfg) / "checkpoints").exists()  # nothing was trained into it


# ---- smaller things --------------------------------------------------------------------------
def test_help_lists_presets_tasks_keys_and_environment(capsys):
    with pytest.raises(SystemExit):
        main(["finetune", "--help"])
    out = capsys.readouterr().out
    for expected in ("presets: gpu, mini, paper, smoke", "stsb", "GPTBENCH_DATA", "gptbench/config.py", "architecture=lstm",
                     "gptbench reproduce --preset smoke"):  # fmt: skip
        assert expected in out, expected
    assert "``" not in out


def test_data_command_says_a_split_is_empty(tmp_path, capsys):
    write(tmp_path / "glue/RTE/train.tsv", "index\tsentence1\tsentence2\tlabel\n")
    assert main(["data", "rte", "--data-dir", str(tmp_path)]) == 0
    assert re.search(r"\n  train +0  empty: the file holds no examples\n", capsys.readouterr().out)


def test_step_checkpoints_keep_the_epoch_end_checkpoint(pretrained):
    """finetune.checkpoint_every_n_steps=5 on 6 updates per epoch: last.ckpt is the end of the run
    (step 12), not the last multiple of 5 (step 10)."""
    from gptbench.run_identity import finetune_dir
    from gptbench.training.finetune import run_finetune

    cfg = load_config("smoke", [*pretrained, "finetune.task=rte", "finetune.seed=5", "finetune.select=holdout",
                                "finetune.checkpoint_every_n_steps=5"])  # fmt: skip
    run_finetune(cfg)
    ckpts = finetune_dir(cfg) / "checkpoints"
    assert torch.load(ckpts / "last.ckpt", weights_only=True)["global_step"] == 12
    assert sorted(p.name for p in ckpts.glob("*step*.ckpt")) == ["epoch1-step12.ckpt", "step10.ckpt"]


def test_a_malformed_test_split_fails_before_training(pretrained, tmp_path):
    """The labelled test split is read only after training in a naive runner; here every split a
    run will use is read and validated before the first step, so no training is wasted."""
    import shutil

    from conftest import DATA

    from gptbench.run_identity import finetune_dir
    from gptbench.training.finetune import run_finetune

    data = tmp_path / "data"
    shutil.copytree(DATA / "story_cloze", data / "story_cloze")
    test_csv = data / "story_cloze" / "cloze_test_test__spring2016 - cloze_test_ALL_test.csv"
    lines = test_csv.read_text(encoding="utf-8").splitlines()
    lines[5] = lines[5][: lines[5].rindex(",")] + ",3"  # AnswerRightEnding is the last column
    test_csv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    cfg = load_config("smoke", [*pretrained, "finetune.task=story_cloze", f"finetune.data_dir={data}",
                                "finetune.select=dev", "finetune.seed=77"])  # fmt: skip
    with pytest.raises(DataError, match=r"ALL_test.csv:6: unknown label '3'"):
        run_finetune(cfg)
    assert not (finetune_dir(cfg) / "checkpoints").exists() and not (finetune_dir(cfg) / "tb").exists()


def test_a_reproductions_own_result_files_do_not_make_the_commit_dirty(tmp_path):
    import subprocess

    from gptbench.provenance import git_commit

    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True,
                       capture_output=True)  # fmt: skip

    (tmp_path / "results" / "mini").mkdir(parents=True)
    (tmp_path / "results" / "mini" / "provenance.json").write_text("{}")
    (tmp_path / "model.py").write_text("x = 1\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "start")
    commit = git_commit(tmp_path)
    assert commit and not commit.endswith("+dirty")
    (tmp_path / "results" / "mini" / "provenance.json").write_text('{"written": "by the reproduction"}')
    assert git_commit(tmp_path) == commit  # results/ is the run's output
    (tmp_path / "model.py").write_text("x = 2\n")
    assert git_commit(tmp_path) == commit + "+dirty"  # a code change is not
