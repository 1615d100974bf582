"""The bit-exact tests on a CUDA device: a resumed run equals the uninterrupted one, dropout and
masks drawn from the CUDA generators. Skipped, with the reason, where there is no CUDA device.

They need no data from ../shared: books of synthetic sentences, a tokenizer trained on them, and a
synthetic SST-2. ``benchmarks/gpu_checks.sh`` runs this file (and the GPU bench) on a GPU machine.
"""

from __future__ import annotations

import random
import warnings
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import Callback
from conftest import tiny_overrides
from safetensors.torch import load_file

from gptbench.config import load_config
from gptbench.run_identity import pretrain_dir
from gptbench.training import finetune, pretrain

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (the CPU variants are the tests "
                                                              "marked cpu)"),  # fmt: skip
]

SYLLABLES = ("ka", "to", "ri", "men", "sa", "lo", "ve", "dun", "pi", "ar", "el", "mo", "tes", "ni", "bra", "qu")


def synthetic_book(seed: int, n_bytes: int) -> str:
    """Sentences of pseudo-words (a few hundred distinct ones), deterministic in ``seed``."""
    rng = random.Random(seed)
    words = ["".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 3))) for _ in range(300)]
    sentences, size = [], 0
    while size < n_bytes:
        sentence = " ".join(rng.choice(words) for _ in range(rng.randint(4, 14))).capitalize() + "."
        sentences.append(sentence)
        size += len(sentence) + 1
    return "\n".join(sentences) + "\n"


@pytest.fixture(scope="module")
def synthetic_corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("books")
    for i in range(4):
        (root / f"book{i}.txt").write_text(synthetic_book(i, 40_000), encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def synthetic_data(tmp_path_factory) -> Path:
    """A data folder with SST-2's train and dev splits: pseudo-word sentences, random labels."""
    root = tmp_path_factory.mktemp("data")
    rng = random.Random(0)
    for split, n in (("train", 96), ("dev", 64)):
        rows = []
        for i in range(n):
            words = synthetic_book(1000 * (split == "dev") + i, 40).split()[:6]
            rows.append(f"{' '.join(words).lower()}\t{int(rng.random() < 0.5)}")
        path = root / "glue" / "SST-2" / f"{split}.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("sentence\tlabel\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return root


def overrides(tmp_path: Path, corpus: Path, data: Path, accelerator: str) -> list[str]:
    """The tests' tiny run (dropout on, the preset's 0.1) on ``accelerator``, synthetic data only."""
    return [*tiny_overrides(tmp_path, corpus, tmp_path / "cache"), f"trainer.accelerator={accelerator}",
            "trainer.devices=1", "tokenizer.train_bytes=100000", f"finetune.data_dir={data}"]  # fmt: skip


def crashed_and_resumed(run, cfg_of, crash_module, step: int) -> None:
    """Run ``name=crashed`` up to a simulated crash after optimizer step ``step``, then resume it."""
    from test_pretrain import crash_at

    with pytest.MonkeyPatch.context() as m:
        crash_at(m, crash_module, step)
        with pytest.raises(RuntimeError, match="simulated crash"):
            run(cfg_of("crashed"))
    resumed = cfg_of("crashed")
    resumed.resume = True
    run(resumed)


def assert_pretraining_resume_is_exact(tmp_path: Path, corpus: Path, data: Path, accelerator: str,
                                       architecture: str) -> None:  # fmt: skip
    base = [*overrides(tmp_path, corpus, data, accelerator), f"architecture={architecture}"]

    def cfg_of(name):
        return load_config("smoke", [*base, f"name={name}"])

    pretrain.run_pretrain(cfg_of("straight"))
    crashed_and_resumed(pretrain.run_pretrain, cfg_of, pretrain, step=6)  # between the checkpoints at 4 and 8
    link = "model" if architecture == "transformer" else f"{architecture}-model"
    a, b = (load_file(cfg_of(n).run_dir / "pretrain" / link / "model.safetensors") for n in ("straight", "crashed"))
    assert a.keys() == b.keys()
    assert [k for k in a if not torch.equal(a[k], b[k])] == []
    ckpt = torch.load(pretrain_dir(cfg_of("crashed")) / "checkpoints" / "last.ckpt", weights_only=True)
    assert ("cuda" in ckpt["rng_states"]) == (accelerator == "gpu")


@pytest.mark.parametrize("architecture", ["transformer", "bert"])
def test_pretraining_resume_is_exact_on_cuda(tmp_path, synthetic_corpus, synthetic_data, architecture):
    """GPT (dropout) and the BERT encoder (dropout and masked-LM masks), crashed at step 6 and
    resumed from the checkpoint at step 4, end with the uninterrupted run's weights, bit for bit."""
    assert_pretraining_resume_is_exact(tmp_path, synthetic_corpus, synthetic_data, "gpu", architecture)


def assert_finetuning_resume_is_exact(tmp_path: Path, corpus: Path, data: Path, accelerator: str) -> None:
    base = [*overrides(tmp_path, corpus, data, accelerator), "finetune.task=sst2", "finetune.seed=5"]
    pretrained = load_config("smoke", [*base, "name=pretrained"])
    pretrain.run_pretrain(pretrained)
    init = pretrained.run_dir / "pretrain" / "model"

    def cfg_of(name):
        return load_config("smoke", [*base, f"name={name}", f"finetune.init={init}"])

    finetune.run_finetune(cfg_of("straight"))
    crashed_and_resumed(finetune.run_finetune, cfg_of, finetune, step=3)  # mid-way through the first epoch
    ckpts = [torch.load(next((cfg_of(n).run_dir / "finetune" / "sst2").glob("*/seed5/checkpoints/last.ckpt")),
                        weights_only=True) for n in ("straight", "crashed")]  # fmt: skip
    assert ckpts[0]["global_step"] == ckpts[1]["global_step"] == 12
    assert [k for k, v in ckpts[0]["state_dict"].items() if not torch.equal(v, ckpts[1]["state_dict"][k])] == []


def test_finetuning_resume_is_exact_on_cuda(tmp_path, synthetic_corpus, synthetic_data):
    """Fine-tuning (task-head and body dropout, auxiliary LM loss) crashed at step 3 and resumed
    ends with the uninterrupted run's weights, bit for bit."""
    assert_finetuning_resume_is_exact(tmp_path, synthetic_corpus, synthetic_data, "gpu")


def test_per_step_checks_do_not_wait_for_the_gpu():
    """The checks that run every step (LSTM padding, non-finite loss, token count) queue their work
    on the device: under torch's sync debug mode "error" any host-device synchronisation raises."""
    from types import SimpleNamespace

    from gptbench.models.lstm import check_right_padding
    from gptbench.training.common import StopOnNonFiniteLoss, TokensPerSecond

    mask = torch.tensor([[1] * 8, [1] * 5 + [0] * 3], device="cuda")
    loss = torch.tensor(float("nan"), device="cuda")
    stop, meter = StopOnNonFiniteLoss(Path("no-checkpoints")), TokensPerSecond()
    trainer = SimpleNamespace(global_step=3, log_every_n_steps=2)
    meter.on_train_batch_start(trainer, None, None, 0)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        check_right_padding(mask)  # the LSTM's, on every forward
        stop.on_before_backward(trainer, None, loss)
        meter.on_train_batch_end(trainer, None, None, {"attention_mask": mask}, 0)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert int(meter._tokens) == 13 and int(stop._first_step) == 3  # read afterwards: the NaN was seen


class SyncWatch(Callback):
    """Turns torch's sync debug mode to "warn" from the start of each training batch whose step is
    neither a logging nor a checkpoint step, up to the next batch, validation or the end. The first
    step is left out: it initialises (optimizer states, cuBLAS handles) once."""

    def __init__(self, log_every: int, checkpoint_every: int):
        self.log_every, self.checkpoint_every = log_every, checkpoint_every

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        step = trainer.global_step + 1
        quiet = step > 1 and step % self.log_every and step % self.checkpoint_every
        torch.cuda.set_sync_debug_mode("warn" if quiet else "default")

    def on_validation_start(self, trainer, pl_module) -> None:
        torch.cuda.set_sync_debug_mode("default")

    def on_train_end(self, trainer, pl_module) -> None:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.parametrize("stage", ["pretrain", "finetune"])
def test_training_waits_for_the_gpu_only_at_logging_and_checkpoint_steps(tmp_path, synthetic_corpus, synthetic_data,
                                                                        stage, monkeypatch):  # fmt: skip
    """Every host-device synchronisation (``.item()``, a blocking copy, a boolean index...) between
    logging steps stalls the GPU's queue; torch's sync debug mode reports each one. Logging every 3
    steps, checkpoints every 4 (pre-training); fine-tuning logs every step of its 6-step epochs, so
    it is watched with logging every 5 through the Trainer's own setting."""
    base = [*overrides(tmp_path, synthetic_corpus, synthetic_data, "gpu"), "finetune.task=sst2",
            "pretrain.log_every_n_steps=3", "pretrain.checkpoint_every_n_steps=4"]  # fmt: skip
    cfg = load_config("smoke", base)
    module = pretrain if stage == "pretrain" else finetune
    if stage == "finetune":
        pretrain.run_pretrain(cfg)
    watch = SyncWatch(3, 4) if stage == "pretrain" else SyncWatch(5, 10**9)
    make = module.make_trainer

    def watched(*args, **kwargs):
        if stage == "finetune":
            kwargs["log_every_n_steps"] = 5
        trainer = make(*args, **kwargs)
        trainer.callbacks.insert(0, watch)  # first: it must switch the mode before any callback reads
        return trainer

    monkeypatch.setattr(module, "make_trainer", watched)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        (pretrain.run_pretrain if stage == "pretrain" else finetune.run_finetune)(cfg)
    torch.cuda.set_sync_debug_mode("default")
    syncs = [f"{w.filename}:{w.lineno}: {w.message}" for w in caught if "synchroniz" in str(w.message)]
    assert syncs == []
