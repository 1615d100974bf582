import json
import random
import time
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from conftest import tiny_overrides
from lightning.pytorch.callbacks import Callback
from safetensors.torch import load_file

import gptbench.training.pretrain as pretrain
from gptbench.config import ConfigError, load_config
from gptbench.data.corpus import _with_progress, book_text, cached_corpus, split_books
from gptbench.run_identity import pretrain_dir
from gptbench.training.common import RngStateMixin


class CrashAt(Callback):
    """Simulates a crash (power loss, pre-emption) right after optimizer step ``step``."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step == self.step:
            raise RuntimeError("simulated crash")


def crash_at(monkeypatch, module, step: int):
    make = module.make_trainer
    monkeypatch.setattr(module, "make_trainer", lambda *a, extra_callbacks=(), **kw: make(
        *a, extra_callbacks=[*extra_callbacks, CrashAt(step)], **kw))  # fmt: skip


def scalars(run_dir, tag):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tb"))
    acc.Reload()
    return sorted((e.step, e.value) for e in acc.Scalars(tag))  # event files are not read in step order


def text_events(run_dir, tag):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tb"), size_guidance={"tensors": 0})
    acc.Reload()
    return sorted((e.step, e.tensor_proto.string_val[0].decode()) for e in acc.Tensors(tag))


def test_validation_loss_falls_on_real_books(tmp_path, tiny_corpus, cache_dir):
    cfg = load_config("smoke", tiny_overrides(tmp_path, tiny_corpus, cache_dir) + ["pretrain.max_steps=60", "pretrain.warmup_steps=10",
                                                                                 "pretrain.val_every_n_steps=5"])  # fmt: skip
    export = pretrain.run_pretrain(cfg)
    val = scalars(pretrain_dir(cfg), "val/loss")
    assert [s for s, _ in val][:3] == [4, 9, 14]  # logged every 5 steps (0-based step index)
    print("val loss by step:", [(s, round(v, 3)) for s, v in val])
    assert val[-1][1] < val[0][1] - 0.3
    for tag in ("train/loss", "train/tokens_per_sec", "train/grad_norm", "val/ppl", "lr-AdamW/pg1"):
        assert scalars(pretrain_dir(cfg), tag), tag
    samples = text_events(pretrain_dir(cfg), "samples/text_summary")
    assert [step for step, _ in samples][:2] == [5, 10]  # at every validation
    assert "**it was a dark and stormy night**" in samples[-1][1] and "**the old man**" in samples[-1][1]
    metrics = json.loads((pretrain_dir(cfg) / "metrics.json").read_text())
    assert metrics["steps"] == 60 and metrics["val_ppl"] == pytest.approx(torch.tensor(metrics["val_loss"]).exp().item(), rel=1e-5)
    assert (export / "config.json").is_file() and (export / "tokenizer" / "tokenizer.json").is_file()


@pytest.mark.cpu
def test_resume_after_a_crash_is_exact(tmp_path, tiny_corpus, cache_dir, monkeypatch):
    base = tiny_overrides(tmp_path, tiny_corpus, cache_dir) + ["trainer.accelerator=cpu"]
    straight = load_config("smoke", base + ["name=straight"])
    pretrain.run_pretrain(straight)

    crashed = load_config("smoke", base + ["name=crashed"])
    with monkeypatch.context() as m:
        crash_at(m, pretrain, step=6)  # between the checkpoints at steps 4 and 8
        with pytest.raises(RuntimeError, match="simulated crash"):
            pretrain.run_pretrain(crashed)
    assert (pretrain_dir(crashed) / "checkpoints" / "on_exception.ckpt").is_file()
    with pytest.raises(ConfigError, match="resume=true"):
        pretrain.run_pretrain(crashed)
    pretrain.run_pretrain(load_config("smoke", base + ["name=crashed", "resume=true"]))

    a = load_file(straight.run_dir / "pretrain" / "model" / "model.safetensors")
    b = load_file(crashed.run_dir / "pretrain" / "model" / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    ma, mb = (json.loads((pretrain_dir(c) / "metrics.json").read_text()) for c in (straight, crashed))
    assert ma["val_loss"] == mb["val_loss"]
    # keep_steps=[0,4,12]: the snapshots of both runs are the same models; the last is the export;
    # of the periodic checkpoints only the newest is kept (plus its last.ckpt link).
    for c in (straight, crashed):
        assert sorted(p.name for p in (pretrain_dir(c) / "snapshots").iterdir()) == ["step0", "step12", "step4"]
        assert sorted(p.name for p in (pretrain_dir(c) / "checkpoints").glob("step*.ckpt")) == ["step12.ckpt"]
    for step in (0, 4, 12):
        sa, sb = (load_file(pretrain_dir(c) / "snapshots" / f"step{step}" / "model.safetensors") for c in (straight, crashed))
        assert all(torch.equal(sa[k], sb[k]) for k in sa), step
    final = load_file(pretrain_dir(straight) / "snapshots" / "step12" / "model.safetensors")
    assert all(torch.equal(final[k], a[k]) for k in a)
    first = load_file(pretrain_dir(straight) / "snapshots" / "step0" / "model.safetensors")
    assert not torch.equal(first["transformer.h.0.attn.c_attn.weight"], a["transformer.h.0.attn.c_attn.weight"])
    assert (pretrain_dir(straight) / "snapshots" / "step0" / "tokenizer" / "tokenizer.json").is_file()


@pytest.mark.cpu
def test_resume_after_kill_9_logs_each_step_once(tmp_path, tiny_corpus, cache_dir, monkeypatch):
    """A kill -9 leaves no on_exception.ckpt: the run resumes from the last periodic checkpoint
    (step 4) and trains and logs steps 5 and 6 again. TensorBoard shows each step once, with the
    uninterrupted run's values: what the killed session logged from step 4 on is purged."""
    base = tiny_overrides(tmp_path, tiny_corpus, cache_dir) + ["trainer.accelerator=cpu"]
    straight = load_config("smoke", base + ["name=straight"])
    pretrain.run_pretrain(straight)
    killed = load_config("smoke", base + ["name=killed"])
    with monkeypatch.context() as m:
        crash_at(m, pretrain, step=7)  # train/loss is logged at steps 1, 3, 5, ...
        with pytest.raises(RuntimeError, match="simulated crash"):
            pretrain.run_pretrain(killed)
    (pretrain_dir(killed) / "checkpoints" / "on_exception.ckpt").unlink()  # as after kill -9
    assert [s for s, _ in scalars(pretrain_dir(killed), "train/loss")] == [1, 3, 5]
    # TensorBoard reads event files in name order: creation second, then a per-process counter
    # (which sorts 10 before 9). A real resume is a later process; here, a later second.
    time.sleep(1.1)
    pretrain.run_pretrain(load_config("smoke", base + ["name=killed", "resume=true"]))
    for tag in ("train/loss", "lr-AdamW/pg1", "val/loss"):
        assert scalars(pretrain_dir(killed), tag) == scalars(pretrain_dir(straight), tag), tag


def test_a_changed_setting_is_a_different_pretraining(tmp_path, tiny_corpus, cache_dir, capsys):
    """Run identity: `pretrain model.n_layer=1` after the 2-layer run is a new run, not 'complete';
    runs/<name>/pretrain/model names the latest finished one; the same settings are reused."""
    base = tiny_overrides(tmp_path, tiny_corpus, cache_dir) + ["pretrain.max_steps=4", "pretrain.keep_steps=null"]
    two = load_config("smoke", base)
    one = load_config("smoke", base + ["model.n_layer=1"])
    assert pretrain_dir(one) != pretrain_dir(two) and pretrain_dir(one).parent == pretrain_dir(two).parent
    assert pretrain.run_pretrain(two) == pretrain_dir(two) / "model"
    capsys.readouterr()
    assert pretrain.run_pretrain(one) == pretrain_dir(one) / "model"
    assert "already complete" not in capsys.readouterr().out
    assert json.loads((two.run_dir / "pretrain" / "model" / "config.json").read_text())["n_layer"] == 1
    assert json.loads((pretrain_dir(one) / "settings.json").read_text())["model"]["n_layer"] == 1
    assert pretrain.run_pretrain(load_config("smoke", base)) == pretrain_dir(two) / "model"
    assert "already complete" in capsys.readouterr().out
    assert json.loads((two.run_dir / "pretrain" / "model" / "config.json").read_text())["n_layer"] == 2
    # Settings that change no number share the run: logging, checkpoints, caches, resume.
    same = load_config("smoke", base + ["pretrain.log_every_n_steps=1", "pretrain.checkpoint_every_n_steps=2",
                                        f"cache_dir={tmp_path / 'elsewhere'}", "resume=true"])  # fmt: skip
    assert pretrain_dir(same) == pretrain_dir(two)


def test_corpus_split_and_cache(tiny_corpus, cache_dir, monkeypatch, gpt1_tokenizer):
    books = split_books(tiny_corpus, val_books=1, max_bytes=None)
    assert len(books.val) == 1 and len(books.train) == 4 and not set(books.val) & set(books.train)
    first = cached_corpus(tiny_corpus, books, gpt1_tokenizer, cache_dir)
    monkeypatch.setattr("gptbench.data.corpus.tokenize_books", lambda *a: pytest.fail("re-tokenized"))
    again = cached_corpus(tiny_corpus, books, gpt1_tokenizer, cache_dir)
    assert first["train"].size > 40_000 and (first["train"] == again["train"]).all()
    expected = [i for p in books.val for i in gpt1_tokenizer.encode(book_text(p))]
    assert len(expected) == pytest.approx(first["val"].size, rel=0.01)  # chunking only shifts boundaries


def test_tokenizing_books_shows_progress_in_a_log_as_lines(capsys):
    """Where stderr is a log (sweeps, SLURM, CI; here pytest's capture), the corpus's tokenization
    shows progress as whole lines, at most one per interval, never a bar redrawn with carriage
    returns (in a log file, every redraw of a whole tokenization on one line)."""
    books = [Path(f"book{i}.txt") for i in range(3)]
    assert list(_with_progress(books, "tokenizing books", log_every_s=0)) == books
    assert capsys.readouterr().err == "tokenizing books: 0/3\ntokenizing books: 1/3\ntokenizing books: 2/3\n"
    assert list(_with_progress(books, "tokenizing books")) == books  # (faster than the 30 s interval)
    assert capsys.readouterr().err == ""


def test_gutenberg_header_and_footer_are_cut(tmp_path):
    path = tmp_path / "b.txt"
    path.write_bytes(b"License blah\r\n*** START OF THE PROJECT GUTENBERG EBOOK X ***\r\n\r\nCall me\r\nIshmael.\r\n\r\n"
                     b"Second para.\r\n*** END OF THE PROJECT GUTENBERG EBOOK X ***\r\nfooter\r\n")  # fmt: skip
    assert book_text(path) == "Call me Ishmael.\nSecond para."


def test_missing_corpus_is_a_config_error(tmp_path):
    cfg = load_config("smoke", ["corpus.path=" + str(tmp_path / "nope"), f"runs_dir={tmp_path}"])
    with pytest.raises(ConfigError, match="corpus.path=.*directory does not exist"):
        pretrain.run_pretrain(cfg)


def test_weight_decay_only_on_matrices_and_schedules():
    from gptbench import GPT, GPTConfig
    from gptbench.training.common import adamw, warmup_cosine, warmup_linear

    model = GPT(GPTConfig(vocab_size=50, n_ctx=8, n_embd=16, n_layer=1, n_head=2))
    decay, no_decay = adamw(model, 1e-3, 0.01, (0.9, 0.999), 1e-8).param_groups
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() < 2 for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))
    cosine = warmup_cosine(warmup=10, total=110)
    assert [cosine(s) for s in (0, 5, 10, 60, 110)] == pytest.approx([0.0, 0.5, 1.0, 0.5, 0.0])
    linear = warmup_linear(warmup_fraction=0.002, total=1000)  # the released formula, x = step / total
    assert [linear(s) for s in (0, 1, 2, 500, 1000)] == pytest.approx([0.0, 0.5 * 0.999, 0.998, 0.5, 0.0])
    short = warmup_linear(warmup_fraction=0.002, total=234)  # RTE: 3 epochs of 78 updates; warm-up < 1 update
    assert short(0) == 0.0 and short(1) == pytest.approx(1 - 1 / 234)
    assert warmup_linear(warmup_fraction=0.0, total=10)(0) == 1.0  # no warm-up asked for: none


# ---- exact resume: every generator, every process --------------------------------------------
def draws() -> tuple:
    """One draw from each generator a checkpoint restores (CPU torch, NumPy, Python)."""
    return torch.rand(4), np.random.rand(4), random.random()


def assert_same_draws(a: tuple, b: tuple) -> None:
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]


def through_a_file(checkpoint: dict, path) -> dict:
    """The checkpoint as a resumed run reads it (plain tensors and numbers: weights_only loads it)."""
    torch.save(checkpoint, path)
    return torch.load(path, weights_only=True)


def fake_cuda(monkeypatch, states: list[torch.Tensor]) -> list[torch.Tensor]:
    """CUDA started, with two devices whose generator states are ``states``; returns the list the
    states set on the devices are appended to."""
    restored: list[torch.Tensor] = []
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: len(states))
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: [s.clone() for s in states])
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", restored.extend)
    return restored


def test_checkpoints_restore_every_generator_they_save(tmp_path, monkeypatch):
    """The CUDA generators (dropout, task-head and masked-LM masks on a GPU) are saved with the CPU
    ones, and what is saved is what a resume restores."""
    cuda = [torch.arange(8, dtype=torch.uint8), torch.arange(8, 16, dtype=torch.uint8)]
    restored = fake_cuda(monkeypatch, cuda)
    L.seed_everything(1)
    checkpoint = {}
    RngStateMixin().on_save_checkpoint(checkpoint)
    expected = draws()
    assert [torch.equal(a, b) for a, b in zip(checkpoint["rng_states"]["cuda"], cuda)] == [True, True]
    assert "rng_states_per_rank" not in checkpoint  # one process: its states are rng_states
    L.seed_everything(2)
    RngStateMixin().on_load_checkpoint(through_a_file(checkpoint, tmp_path / "a.ckpt"))
    assert_same_draws(draws(), expected)
    assert len(restored) == 2 and all(torch.equal(a, b) for a, b in zip(restored, cuda))


def test_a_checkpoint_without_cuda_states_still_loads(tmp_path, monkeypatch):
    """Checkpoints written on CPU, or before CUDA states were saved, restore the CPU generators and
    leave the CUDA ones as seeded."""
    L.seed_everything(3)
    checkpoint = {}
    RngStateMixin().on_save_checkpoint(checkpoint)  # CUDA not started here: no CUDA states
    expected = draws()
    assert set(checkpoint["rng_states"]) == {"torch", "numpy", "python"}
    restored = fake_cuda(monkeypatch, [torch.zeros(8, dtype=torch.uint8)])
    L.seed_everything(4)
    RngStateMixin().on_load_checkpoint(through_a_file(checkpoint, tmp_path / "a.ckpt"))
    assert_same_draws(draws(), expected) and restored == []


def _save_and_restore_on_rank(rank: int, world: int, init_file: str, out_dir: str) -> None:
    """One process of :func:`test_each_process_restores_its_own_generators`."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        L.seed_everything(100 + rank, verbose=False)  # processes draw different dropout masks
        checkpoint = {}
        RngStateMixin().on_save_checkpoint(checkpoint)  # every process saves together; rank 0 writes
        expected = torch.rand(4)
        if rank == 0:
            torch.save(checkpoint, f"{out_dir}/ckpt.pt")
        dist.barrier()
        L.seed_everything(0, verbose=False)
        RngStateMixin().on_load_checkpoint(torch.load(f"{out_dir}/ckpt.pt", weights_only=True))
        torch.save({"expected": expected, "resumed": torch.rand(4)}, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_each_process_restores_its_own_generators(tmp_path):
    """Under DDP (2 gloo processes), the checkpoint rank 0 writes holds every rank's states and each
    rank resumes from its own: with rank 0's states everywhere, rank 1 would draw rank 0's masks."""
    import torch.multiprocessing as mp

    mp.spawn(_save_and_restore_on_rank, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    assert not torch.equal(ranks[0]["expected"], ranks[1]["expected"])
    for r in ranks:
        assert torch.equal(r["resumed"], r["expected"])
    assert len(torch.load(tmp_path / "ckpt.pt", weights_only=True)["rng_states_per_rank"]) == 2


# ---- many processes: the run key and the token counts -----------------------------------------
def test_world_size_is_in_the_pretraining_key_and_token_count():
    """Batch sizes are per process: a 2-device pre-training is another run than the 1-device one
    (it was silently reused) and reads twice the tokens per step. One-process keys stay as they
    were (the key below is the one gptbench gave this run before world size was keyed), so
    published runs and results are still found."""
    from gptbench.run_identity import finetune_dir

    base = ["corpus.path=/nonexistent", "runs_dir=/runs"]
    one, two = load_config("smoke", base), load_config("smoke", [*base, "trainer.devices=2"])
    nodes = load_config("smoke", [*base, "trainer.num_nodes=2"])
    assert pretrain_dir(one).name == "4x128-ctx64-bpe3000-800steps-23e6a2d0e9"
    assert finetune_dir(one).parent.name == "pretrained-lm0.5-lr0.001-1ep-auto-bef48961f0"
    assert pretrain_dir(two) != pretrain_dir(one) and pretrain_dir(nodes) == pretrain_dir(two)
    steps, n_ctx = 10, one.model.n_ctx
    assert pretrain.tokens_trained(one, steps, n_ctx) == steps * one.pretrain.batch_size * n_ctx
    assert pretrain.tokens_trained(two, steps, n_ctx) == 2 * pretrain.tokens_trained(one, steps, n_ctx)


class FakeModule:
    """What TokensPerSecond logs, and with which reduction across processes."""

    device = torch.device("cpu")

    def __init__(self):
        self.logged = []

    def log(self, name, value, **kwargs):
        self.logged.append((name, value, kwargs))


def test_tokens_per_second_counts_on_the_device_and_sums_over_processes():
    """Real tokens are added up as a tensor (no host read per step) and read at the logging step;
    Lightning sums the processes' rates (each process counts its own batches)."""
    from types import SimpleNamespace

    from gptbench.training.common import TokensPerSecond

    meter, module = TokensPerSecond(), FakeModule()
    trainer = SimpleNamespace(global_step=1, log_every_n_steps=2)
    batch = {"attention_mask": torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])}
    meter.on_train_batch_start(trainer, module, batch, 0)
    meter.on_train_batch_end(trainer, module, None, batch, 0)
    assert module.logged == [] and isinstance(meter._tokens, torch.Tensor) and int(meter._tokens) == 5
    trainer.global_step = 2
    meter.on_train_batch_end(trainer, module, None, batch, 1)
    ((name, rate, kwargs),) = module.logged
    assert name == "train/tokens_per_sec" and kwargs == {"sync_dist": True, "reduce_fx": "sum"} and float(rate) > 0


def test_validation_is_every_n_optimizer_steps_with_gradient_accumulation(tmp_path, tiny_corpus, cache_dir):
    """Lightning's val_check_interval counts batches: with 2 batches per update, validating every 3
    updates is every 6 batches (it was every 3 batches, i.e. every 1.5 updates)."""
    cfg = load_config("smoke", tiny_overrides(tmp_path, tiny_corpus, cache_dir) + [
        "pretrain.max_steps=6", "pretrain.accumulate_grad_batches=2", "pretrain.val_every_n_steps=3",
        "pretrain.keep_steps=null", "pretrain.batch_size=4"])  # fmt: skip
    pretrain.run_pretrain(cfg)
    # After updates 3 and 6 (0-based index), then the final validation after training.
    assert [s for s, _ in scalars(pretrain_dir(cfg), "val/loss")] == [2, 5, 6]
    metrics = json.loads((pretrain_dir(cfg) / "metrics.json").read_text())
    assert metrics["train_tokens"] == 6 * 4 * 2 * cfg.model.n_ctx
