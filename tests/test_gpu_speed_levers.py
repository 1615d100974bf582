"""The GPU speed levers change no number they must not: the LM head's padded vocabulary is invisible
outside the head, and the compiled training step computes the eager step's loss and resumes exactly."""

import json
import traceback
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from conftest import compiles_on_cpu, tiny_overrides
from safetensors.torch import load_file

import gptbench.training.pretrain as pretrain
from gptbench.config import ConfigError, load_config
from gptbench.models import build_model
from gptbench.models.bert import BertConfig
from gptbench.models.gpt import GPTConfig, tied_logits
from gptbench.models.lstm import LSTMConfig
from gptbench.run_identity import pretrain_dir, pretrain_settings
from gptbench.training.pretrain import PretrainModule
from test_pretrain import crash_at

# 211 + 3 rows: padded to 256 (multiple 64), as GPT-1's 40,481 to 40,512.
SHAPES = {"gpt": GPTConfig(vocab_size=211, n_ctx=16, n_embd=32, n_layer=2, n_head=2),
          "lstm": LSTMConfig(vocab_size=211, n_ctx=16, n_embd=32, n_hidden=48),
          "bert": BertConfig(vocab_size=211, n_special=4, n_ctx=16, n_embd=32, n_layer=2, n_head=2)}  # fmt: skip


def twins(kind: str):
    """The same weights as an unpadded and a padded (multiple 64) network."""
    torch.manual_seed(0)
    plain = build_model(SHAPES[kind])
    config = type(SHAPES[kind])(**{**SHAPES[kind].__dict__, "pad_vocab_multiple": 64})
    padded = build_model(config)
    padded.load_state_dict(plain.state_dict())
    return plain, padded


def test_tied_logits_equal_the_plain_product_and_pad_nothing_visible():
    torch.manual_seed(0)
    hidden, table, bias = torch.randn(3, 5, 32), torch.randn(214, 32, requires_grad=True), torch.randn(214)
    padded = tied_logits(hidden, table, 64, bias)
    assert padded.shape == (3, 5, 214)
    torch.testing.assert_close(padded, F.linear(hidden, table, bias), rtol=0, atol=1e-6)
    padded.sum().backward()
    assert table.grad.shape == (214, 32)  # the padded rows are constants, not parameters
    assert tied_logits(hidden, table, 1) is not None and tied_logits(hidden, table[:192], 64).shape[-1] == 192


@pytest.mark.parametrize("kind", ["gpt", "lstm", "bert"])
def test_padded_head_gives_the_unpadded_logits_losses_and_gradients(kind):
    plain, padded = twins(kind)
    assert plain.state_dict().keys() == padded.state_dict().keys()
    assert all(a.shape == b.shape for a, b in zip(plain.state_dict().values(), padded.state_dict().values()))
    ids = torch.randint(0, 211, (4, 16))
    for model in (plain, padded):
        model.train()
    losses, grads = [], []
    for model in (plain, padded):
        torch.manual_seed(1)  # the same dropout masks: the table is dropped before it is padded
        logits = model.lm_logits(ids)
        assert logits.shape == (4, 16, model.config.n_tokens)
        loss = F.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten())
        loss.backward()
        losses.append(loss)
        grads.append({n: p.grad for n, p in model.named_parameters()})
    torch.testing.assert_close(losses[0], losses[1], rtol=0, atol=1e-6)
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, rtol=0, atol=1e-6, msg=name)


def test_a_padded_export_is_the_unpadded_one_and_loads_in_transformers(tmp_path):
    transformers = pytest.importorskip("transformers")
    plain, padded = twins("gpt")
    padded.eval().save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["vocab_size"] == 214 and "pad_vocab_multiple" not in json.dumps(config)
    assert load_file(tmp_path / "model.safetensors")["transformer.tokens_embed.weight"].shape == (214, 32)
    theirs = transformers.OpenAIGPTLMHeadModel.from_pretrained(tmp_path).eval()
    ids = torch.randint(0, 211, (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(theirs(ids).logits, padded.lm_logits(ids), rtol=1e-5, atol=1e-5)


def test_padding_is_validated_and_keys_of_unpadded_runs_do_not_move(tmp_path, tiny_corpus, cache_dir):
    with pytest.raises(ConfigError, match="pad_vocab_multiple must be >= 1"):
        load_config("smoke", ["model.pad_vocab_multiple=0"])
    base = tiny_overrides(tmp_path, tiny_corpus, cache_dir)
    plain = pretrain_settings(load_config("smoke", base))
    assert "pad_vocab_multiple" not in plain["model"] and "compile" not in plain  # published keys unchanged
    assert pretrain_settings(load_config("smoke", base + ["model.pad_vocab_multiple=64"]))["model"]["pad_vocab_multiple"] == 64
    assert pretrain_settings(load_config("smoke", base + ["trainer.compile=true"]))["compile"] is True
    paper = load_config("paper")
    assert paper.model.pad_vocab_multiple == 64 and paper.trainer.compile
    assert load_config("mini").model.pad_vocab_multiple == 1 and not load_config("mini").trainer.compile


@compiles_on_cpu
def test_compiled_training_loss_equals_eager_without_dropout():
    config = GPTConfig(vocab_size=211, n_ctx=16, n_embd=32, n_layer=2, n_head=2, embd_pdrop=0, attn_pdrop=0,
                       resid_pdrop=0, pad_vocab_multiple=64)  # fmt: skip
    torch.manual_seed(0)
    eager = PretrainModule(config)
    compiled = PretrainModule(config, compile=True)
    compiled.load_state_dict(eager.state_dict())
    x = torch.randint(0, 211, (4, 17))
    a, b = eager.training_loss(x[:, :-1], x[:, 1:]), compiled.training_loss(x[:, :-1], x[:, 1:])
    torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)
    a.backward(), b.backward()
    for (name, p), q in zip(eager.named_parameters(), compiled.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-6, msg=name)


@compiles_on_cpu
def test_compiled_pretraining_resumes_exactly(tmp_path, tiny_corpus, cache_dir, monkeypatch):
    base = tiny_overrides(tmp_path, tiny_corpus, cache_dir) + ["trainer.compile=true", "model.pad_vocab_multiple=64",
                                                               "pretrain.max_steps=8", "pretrain.keep_steps=[8]"]  # fmt: skip
    straight = load_config("smoke", base + ["name=straight"])
    pretrain.run_pretrain(straight)
    crashed = load_config("smoke", base + ["name=crashed"])
    with monkeypatch.context() as m:
        crash_at(m, pretrain, step=6)
        with pytest.raises(RuntimeError, match="simulated crash"):
            pretrain.run_pretrain(crashed)
    pretrain.run_pretrain(load_config("smoke", base + ["name=crashed", "resume=true"]))
    a, b = (load_file(pretrain_dir(c) / "model" / "model.safetensors") for c in (straight, crashed))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert a["transformer.tokens_embed.weight"].shape[0] == 400 + 3  # exported unpadded


@compiles_on_cpu
def test_gpu_bench_code_path_runs_on_cpu_at_a_tiny_shape(tmp_path):
    """The GPU bench's own code (sides, MFU, the Trainer pipeline, fine-tuning) at a tiny shape on the
    CPU; the figures themselves come from a GPU."""
    pytest.importorskip("transformers")
    from gptbench.suite.bench_gpu import flops_per_token, run_gpu_bench

    # nanoGPT's count for GPT-2 124M at ctx 1024 (its 6N + 12 L T C): 6 x 85M + 12 x 12 x 1024 x 768 ~= 0.87 GFLOP
    assert flops_per_token(n_layer=12, n_embd=768, n_ctx=1024, n_tokens=50304) == 6 * (12 * 12 * 768**2 + 50304 * 768) + 12 * 12 * 1024 * 768
    tiny = dict(n_layer=1, n_embd=32, n_head=2, n_ctx=16, vocab_size=211)
    figures = run_gpu_bench(tmp_path, reps=1, steps=1, batch=4, pipeline_steps=8, finetune_steps=8, shape=tiny,
                            device="cpu", matmul_n=64)  # fmt: skip
    names = [f.name.split(",")[0] for f in figures]
    assert names == ["pre-training step vs transformers", "pre-training step", "pre-training step",
                     "pre-training step", "pre-training MFU", "pre-training through the Trainer",
                     "pre-training through the Trainer", "fine-tuning through the Trainer"]  # fmt: skip
    levers = [f.name.split(", ")[1] for f in figures[1:4]]
    assert levers == ["padded vs unpadded table", "chunked vs plain loss (both padded",
                      "compiled vs eager (both padded)"]
    assert "deterministic False vs True (the preset's)" in figures[6].name  # the paper preset's choice, and its cost
    assert "compile True; reference eager, unpadded; padded eager " in figures[7].note  # all three fine-tuning sides
    written = json.loads((tmp_path / "bench_gpu.json").read_text())
    assert written["gpu"] == "cpu" and len(written["figures"]) == len(figures)
    mfu = next(f for f in figures if f.name.startswith("pre-training MFU"))
    assert mfu.ratio == pytest.approx(mfu.ours / mfu.reference)


@compiles_on_cpu
def test_compiled_finetuning_losses_equal_eager_across_batch_lengths():
    """The fine-tuning step compiled (dynamic sequence length: batches are padded to their longest)
    gives eager's losses and gradients with dropout off, for batches of different lengths."""
    from gptbench.training.finetune import FinetuneModule

    config = GPTConfig(vocab_size=211, n_ctx=32, n_embd=32, n_layer=2, n_head=2, embd_pdrop=0, attn_pdrop=0,
                       resid_pdrop=0, pad_vocab_multiple=64)  # fmt: skip
    torch.manual_seed(0)
    eager = FinetuneModule(config, "rte", clf_pdrop=0.0)
    compiled = FinetuneModule(config, "rte", clf_pdrop=0.0, compile=True)
    compiled.load_state_dict(eager.state_dict())
    for T in (9, 17, 23):
        ids = torch.randint(0, 211, (4, 1, T))
        mask = (torch.arange(T) < torch.tensor([T, T - 3, 5, T - 1])[:, None]).long()[:, None, :]
        batch = {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([0, 1, 1, 0])}
        a, b = eager.losses(batch), compiled.training_losses(batch)
        assert a.keys() == b.keys() == {"loss", "task_loss", "lm_loss"}
        for key in a:
            torch.testing.assert_close(b[key], a[key], rtol=1e-5, atol=1e-5, msg=f"{key} at T={T}")
        eager.zero_grad(), compiled.zero_grad()
        a["loss"].backward(), b["loss"].backward()
        for (name, p), q in zip(eager.named_parameters(), compiled.parameters()):
            torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-6, msg=f"{name} at T={T}")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU: GPT-1's 40,481-row head on cuBLAS")
def test_padded_head_on_cuda_gives_the_unpadded_logits_at_gpt1s_vocabulary():
    """At GPT-1's vocabulary the padded and unpadded products run different cuBLAS kernels (that is
    the point); in fp32 they agree to rounding, under bf16 autocast to bf16's resolution."""
    torch.manual_seed(0)
    hidden = torch.randn(8, 512, 768, device="cuda")
    table = torch.randn(40481, 768, device="cuda") * 0.02
    plain = F.linear(hidden, table)
    torch.testing.assert_close(tied_logits(hidden, table, 64), plain, rtol=1e-5, atol=1e-5)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        a, b = F.linear(hidden, table), tied_logits(hidden, table, 64)
    assert a.shape == b.shape == (8, 512, 40481)
    torch.testing.assert_close(b.float(), a.float(), rtol=1.6e-2, atol=1e-2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_compiled_training_loss_on_cuda_equals_eager_without_dropout():
    config = GPTConfig(vocab_size=40478, n_ctx=128, n_embd=256, n_layer=2, n_head=4, embd_pdrop=0, attn_pdrop=0,
                       resid_pdrop=0, pad_vocab_multiple=64)  # fmt: skip
    torch.manual_seed(0)
    eager = PretrainModule(config).cuda()
    compiled = PretrainModule(config, compile=True).cuda()
    compiled.load_state_dict(eager.state_dict())
    x = torch.randint(0, 40478, (8, 129), device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        a, b = eager.training_loss(x[:, :-1], x[:, 1:]), compiled.training_loss(x[:, :-1], x[:, 1:])
    torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-3)


# Tensor methods that move a value to the host: on a GPU each one waits for every queued kernel.
HOST_READS = ("item", "tolist", "cpu", "numpy", "__float__", "__int__", "__bool__", "__format__", "__repr__")


class HostReads(Callback):
    """Records, per optimizer step, where tensors were read on the host (HOST_READS) from the start of
    its training batch to the next batch or validation: the step, the callbacks, logging and
    checkpoints. Left out are reads of tensors that stay on the CPU in a GPU run too: a DataLoader
    drawing its workers' seed from its CPU generator, and AdamW's per-tensor implementation reading
    its step counter (on the CPU only: on GPUs the fused AdamW keeps the counter on the device)."""

    def __init__(self, monkeypatch):
        self.step, self.reads = None, {}
        for name in HOST_READS:
            monkeypatch.setattr(torch.Tensor, name, self._counted(name, getattr(torch.Tensor, name)))

    def _counted(self, name, original):
        def read(tensor, *args, **kwargs):
            stack = traceback.extract_stack(limit=14)[:-1]
            if self.step is not None and not any(cpu_side in frame.filename for frame in stack
                                                 for cpu_side in ("torch/optim/", "torch/utils/data/")):
                caller = " <- ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(stack[-6:]))
                self.reads.setdefault(self.step, []).append(f"{name}: {caller}")
            return original(tensor, *args, **kwargs)

        return read

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.step = trainer.global_step + 1  # the step this batch makes

    def on_validation_start(self, trainer, pl_module) -> None:
        self.step = None

    def on_train_end(self, trainer, pl_module) -> None:
        self.step = None


def count_host_reads(monkeypatch, module) -> HostReads:
    """Every Trainer ``module`` makes gets a HostReads as its first callback (it must see a batch start
    before any other callback reads)."""
    counter = HostReads(monkeypatch)
    make = module.make_trainer

    def make_counted(*args, **kwargs):
        trainer = make(*args, **kwargs)
        trainer.callbacks.insert(0, counter)
        return trainer

    monkeypatch.setattr(module, "make_trainer", make_counted)
    return counter


def test_pretraining_reads_device_values_only_at_logging_and_checkpoint_steps(tmp_path, tiny_corpus, cache_dir,
                                                                             monkeypatch):  # fmt: skip
    """A GPU runs ahead of Python only while nothing reads a device value back: one ``.item()`` a step
    (Lightning does one for every ``prog_bar=True`` value) stalls its queue every step. Counted on
    the CPU by patching the tensor methods that read; logging every 3 steps, checkpoints every 4."""
    counter = count_host_reads(monkeypatch, pretrain)
    cfg = load_config("smoke", tiny_overrides(tmp_path, tiny_corpus, cache_dir) + [
        "pretrain.log_every_n_steps=3", "pretrain.checkpoint_every_n_steps=4", "pretrain.keep_steps=[0,4,12]",
        "pretrain.val_every_n_steps=12"])  # fmt: skip
    pretrain.run_pretrain(cfg)
    unexpected = {s: reads for s, reads in counter.reads.items() if s % 3 and s % 4}
    assert not unexpected, "\n".join(f"step {s}: {r}" for s, reads in unexpected.items() for r in reads)
    assert set(counter.reads) == {3, 4, 6, 8, 9, 12}  # logging and checkpoints do read: the counter sees them


def test_finetuning_reads_device_values_only_at_logging_and_checkpoint_steps(tmp_path, tiny_corpus, cache_dir,
                                                                            monkeypatch):  # fmt: skip
    """The same for a fine-tune with the auxiliary LM (96 examples, batch 16: 6 steps an epoch, logged
    every max(1, 6 // 4) = 1 step, so logging is turned down to every 4th through the Trainer)."""
    import gptbench.training.finetune as finetune

    base = tiny_overrides(tmp_path, tiny_corpus, cache_dir) + ["finetune.task=rte", "finetune.max_train_examples=200",
                                                               "finetune.epochs=1"]  # fmt: skip
    cfg = load_config("smoke", base)
    pretrain.run_pretrain(cfg)
    counter = count_host_reads(monkeypatch, finetune)
    finetune.run_finetune(cfg)
    log_every = 200 // 16 // 4  # finetune's log_every_n_steps: max(1, min(50, batches per epoch // 4))
    unexpected = {s: reads for s, reads in counter.reads.items() if s % log_every}
    assert not unexpected, "\n".join(f"step {s}: {r}" for s, reads in unexpected.items() for r in reads)
    assert counter.reads


def test_terminal_progress_shows_the_loss_of_the_last_logging_step():
    """The terminal bar reads the loss at logging steps only: between them it shows the last one read."""
    from types import SimpleNamespace

    from gptbench.training.common import TerminalProgress

    bar = TerminalProgress()
    trainer = SimpleNamespace(loggers=[], progress_bar_metrics={}, training=True, log_every_n_steps=3)
    shown = {}
    for step, loss in ((1, 9.0), (3, 2.5), (4, 1.0), (6, 0.5)):
        trainer.global_step, trainer.callback_metrics = step, {"train/loss": torch.tensor(loss)}
        shown[step] = bar.get_metrics(trainer, None).get("loss")
    assert shown == {1: None, 3: "2.5000", 4: "2.5000", 6: "0.5000"}


def fake_trainer(device: str):
    from types import SimpleNamespace

    return SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device(device)), global_rank=0, world_size=1,
                           global_step=0, accumulate_grad_batches=1)  # fmt: skip


def test_loaders_pin_their_batches_for_cuda_only(tiny_corpus, cache_dir):
    from gptbench.data.corpus import CorpusDataModule
    from gptbench.data.loaders import loader_options
    from gptbench.data.tokenizer import Tokenizer

    assert loader_options(None) == {"pin_memory": False, "num_workers": 0}
    assert loader_options(fake_trainer("cuda"), 2, 4, False) == {"pin_memory": True, "num_workers": 2,
                                                                 "prefetch_factor": 4, "persistent_workers": False}
    tokenizer = Tokenizer.train([(tiny_corpus / "book0.txt").read_text()[:20_000]], vocab_size=300)
    data = CorpusDataModule(tiny_corpus, tokenizer, n_ctx=16, batch_size=2, val_books=1, cache_dir=cache_dir)
    for device, pinned in (("cuda", True), ("cpu", False)):
        data.trainer = fake_trainer(device)
        assert data.train_dataloader().pin_memory is pinned and data.val_dataloader().pin_memory is pinned
        assert data.train_dataloader().num_workers == 0  # see CorpusDataModule: a batch is 64 memmap slices


@pytest.mark.cpu
def test_finetuning_with_workers_equals_without_and_resumes_exactly(pretrained, monkeypatch):
    """Workers build the batches of the same sampler order: the weights after two epochs equal those of
    a run without workers, and a run with workers crashed mid-epoch and resumed equals both."""
    import gptbench.training.finetune as finetune
    from test_finetune import assert_same_last_checkpoints, finetune_crashed_and_resumed

    base = pretrained + ["finetune.seed=5", "trainer.accelerator=cpu"]
    plain = load_config("smoke", base)
    finetune.run_finetune(plain)
    init = f"finetune.init={plain.run_dir / 'pretrain' / 'model'}"
    workers = base + [init, "finetune.num_workers=2", "finetune.prefetch_factor=3"]
    straight = load_config("smoke", workers + ["name=tiny_workers"])
    finetune.run_finetune(straight)
    crashed = load_config("smoke", workers + ["name=tiny_workers_crashed"])
    finetune_crashed_and_resumed(crashed, monkeypatch)
    assert_same_last_checkpoints(plain, straight, crashed)


def plain_tied_loss(hidden, table, targets, weights):
    return (weights * F.cross_entropy(F.linear(hidden, table).float(), targets, reduction="none")).sum()


@pytest.mark.parametrize("multiple", [1, 64])
def test_chunked_loss_and_gradients_equal_the_plain_ones(multiple):
    """Known inputs where the padded rows would win: every real logit is negative and the padded rows'
    are 0, so a padded row in the softmax (or given gradient) would move the loss and the gradients."""
    from gptbench.training.chunked_loss import chunked_lm_loss

    torch.manual_seed(0)
    hidden = -torch.rand(37, 16).requires_grad_()  # 37 rows: chunks of 8 leave 5
    table = (torch.rand(214, 16) + 0.1).requires_grad_()
    targets = torch.randint(0, 214, (37,))
    weights = torch.rand(37) * (torch.arange(37) % 5 != 0)  # some positions weigh 0
    expected = plain_tied_loss(hidden, table, targets, weights)
    want = torch.autograd.grad(expected, (hidden, table))
    for chunk in (1, 8, 37, 100):
        loss = chunked_lm_loss(hidden, table, targets, weights, multiple, chunk)
        got = torch.autograd.grad(loss, (hidden, table))
        torch.testing.assert_close(loss, expected, rtol=1e-6, atol=0)
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-6)  # fp32 rounding of sums of ~1
    mean = chunked_lm_loss(hidden, table, targets, multiple=multiple, chunk=8)  # no weights: the mean
    torch.testing.assert_close(mean, F.cross_entropy(F.linear(hidden, table), targets), rtol=1e-6, atol=0)
    with pytest.raises(ValueError, match="chunk must be >= 1"):
        chunked_lm_loss(hidden, table, targets, chunk=0)


@pytest.mark.parametrize("kind", ["gpt", "lstm"])
@pytest.mark.parametrize("multiple", [1, 64])
def test_chunked_pretraining_loss_equals_the_plain_one_with_every_gradient(kind, multiple):
    """Dropout on: the chunked loss draws nothing, so both modules see the same masks."""
    config = type(SHAPES[kind])(**{**SHAPES[kind].__dict__, "pad_vocab_multiple": multiple})
    torch.manual_seed(0)
    plain, chunked = PretrainModule(config), PretrainModule(config, loss_chunk=24)  # 4 x 16 positions: 3 chunks
    chunked.load_state_dict(plain.state_dict())
    x = torch.randint(0, 211, (4, 17))
    losses = []
    for module in (plain, chunked):
        torch.manual_seed(1)
        losses.append(module.training_loss(x[:, :-1], x[:, 1:]))
        losses[-1].backward()
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-6, atol=0)
    for (name, p), q in zip(plain.named_parameters(), chunked.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-5, atol=1e-7, msg=name)


def test_chunked_auxiliary_lm_loss_equals_the_plain_one_with_every_gradient():
    from gptbench.training.finetune import FinetuneModule

    config = GPTConfig(vocab_size=211, n_ctx=32, n_embd=32, n_layer=2, n_head=2, pad_vocab_multiple=64)
    torch.manual_seed(0)
    plain, chunked = FinetuneModule(config, "rte"), FinetuneModule(config, "rte", loss_chunk=7)
    chunked.load_state_dict(plain.state_dict())
    ids = torch.randint(0, 211, (4, 1, 19))
    mask = (torch.arange(19) < torch.tensor([19, 12, 5, 1])[:, None]).long()[:, None, :]  # one sequence of 1 token
    batch = {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([0, 1, 1, 0])}
    losses = []
    for module in (plain, chunked):
        torch.manual_seed(1)
        losses.append(module.training_losses(batch))
        losses[-1]["loss"].backward()
    for key in ("lm_loss", "task_loss", "loss"):
        torch.testing.assert_close(losses[1][key], losses[0][key], rtol=1e-6, atol=0, msg=key)
    for (name, p), q in zip(plain.named_parameters(), chunked.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-5, atol=1e-7, msg=name)


def test_loss_chunk_is_validated_and_keyed_only_when_on(tmp_path, tiny_corpus, cache_dir):
    with pytest.raises(ConfigError, match="trainer.loss_chunk=-1"):
        load_config("smoke", ["trainer.loss_chunk=-1"])
    base = tiny_overrides(tmp_path, tiny_corpus, cache_dir)
    assert "loss_chunk" not in pretrain_settings(load_config("smoke", base))
    chunked = load_config("smoke", base + ["trainer.loss_chunk=8192"])
    assert pretrain_settings(chunked)["loss_chunk"] == 8192
    from gptbench.run_identity import finetune_settings

    assert finetune_settings(chunked)["loss_chunk"] == 8192
    assert "loss_chunk" not in finetune_settings(load_config("smoke", base))


def test_chunked_loss_under_bf16_autocast_matches_the_plain_one_to_bf16s_resolution():
    """Under autocast the chunks' products run in bf16 as the plain head's do; gradients reach the fp32
    parameters in fp32."""
    config = GPTConfig(vocab_size=211, n_ctx=16, n_embd=32, n_layer=2, n_head=2, pad_vocab_multiple=64)
    torch.manual_seed(0)
    plain, chunked = PretrainModule(config), PretrainModule(config, loss_chunk=24)
    chunked.load_state_dict(plain.state_dict())
    x = torch.randint(0, 211, (4, 17))
    losses = []
    for module in (plain, chunked):
        torch.manual_seed(1)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            losses.append(module.training_loss(x[:, :-1], x[:, 1:]))
        losses[-1].backward()
    assert losses[1].dtype == torch.float32
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-3, atol=0)
    for (name, p), q in zip(plain.named_parameters(), chunked.parameters()):
        assert q.grad.dtype == torch.float32
        torch.testing.assert_close(q.grad, p.grad, rtol=2e-2, atol=2e-3, msg=name)


@pytest.mark.parametrize("init", ["weights", "none"])
def test_finetuning_takes_the_presets_speed_settings(pretrained, init):
    """A fine-tune gets the padded table, the compiled step and the chunked loss from the config, from
    pre-trained weights (loaded unpadded, padded in the head) and from scratch."""
    from conftest import pretrained_model

    from gptbench.training.finetune import initial_module

    source = pretrained_model(pretrained) if init == "weights" else "none"
    cfg = load_config("smoke", pretrained + [f"finetune.init={source}", "finetune.task=rte", "trainer.compile=true",
                                             "model.pad_vocab_multiple=64", "trainer.loss_chunk=4096"])  # fmt: skip
    module, _, _ = initial_module(cfg)
    assert module.model.config.pad_vocab_multiple == 64 and module.loss_chunk == 4096
    assert hasattr(module.training_losses, "_torchdynamo_orig_callable")  # the step's function, compiled
    assert module.model.lm_head(torch.zeros(1, 32)).shape == (1, 400 + 3)  # padding invisible outside the head


def test_chunked_loss_without_gradients_is_the_same_loss():
    """Under no_grad (validation) the gradient products are skipped; the loss is unchanged."""
    from gptbench.training.chunked_loss import chunked_lm_loss

    torch.manual_seed(0)
    hidden, table, targets = torch.randn(37, 16), torch.randn(214, 16), torch.randint(0, 214, (37,))
    with torch.no_grad():
        loss = chunked_lm_loss(hidden, table, targets, multiple=64, chunk=8)
    torch.testing.assert_close(loss, F.cross_entropy(F.linear(hidden, table), targets), rtol=1e-6, atol=0)


@pytest.mark.parametrize("trains", ["hidden", "table"])
def test_chunked_loss_gives_the_gradient_of_what_trains_only(trains):
    """With one input frozen (e.g. a frozen table), the other's gradient equals the plain path's and
    the frozen one gets none."""
    from gptbench.training.chunked_loss import chunked_lm_loss

    torch.manual_seed(0)
    hidden, table, targets = torch.randn(37, 16), torch.randn(214, 16), torch.randint(0, 214, (37,))
    weights = torch.full((37,), 1 / 37)
    learner = (hidden if trains == "hidden" else table).requires_grad_()
    (want,) = torch.autograd.grad(plain_tied_loss(hidden, table, targets, weights), learner)
    (got,) = torch.autograd.grad(chunked_lm_loss(hidden, table, targets, weights, multiple=64, chunk=8), learner)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_a_pretraining_with_the_chunked_loss_ends_where_the_plain_one_does(pretrained):
    """Through the whole pipeline (training, validation, export): 12 steps with chunks of 100 of the
    8 x 32 positions end at the plain run's validation loss, up to rounding."""
    plain = load_config("smoke", pretrained)
    chunked = load_config("smoke", pretrained + ["trainer.loss_chunk=100"])
    pretrain.run_pretrain(chunked)
    assert pretrain_dir(chunked) != pretrain_dir(plain)  # keyed: its own run directory
    a, b = (json.loads((pretrain_dir(c) / "metrics.json").read_text())["val_loss"] for c in (plain, chunked))
    assert b == pytest.approx(a, rel=1e-5) and a != 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_chunked_loss_on_cuda_equals_the_plain_one_at_gpt1s_vocabulary():
    """GPT-1's 40,481 rows padded to 40,512, 4,096 positions in chunks of 1,024: in fp32 the loss and
    gradients equal the plain ones to rounding, under bf16 autocast to bf16's resolution."""
    from gptbench.training.chunked_loss import chunked_lm_loss

    torch.manual_seed(0)
    hidden = torch.randn(4096, 768, device="cuda", requires_grad=True)
    table = (torch.randn(40481, 768, device="cuda") * 0.02).requires_grad_()
    targets = torch.randint(0, 40481, (4096,), device="cuda")
    for autocast, rtol in ((False, 1e-5), (True, 1.6e-2)):
        results = []
        for chunk in (0, 1024):
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
                loss = (chunked_lm_loss(hidden, table, targets, multiple=64, chunk=chunk) if chunk else
                        F.cross_entropy(tied_logits(hidden, table, 64).float(), targets))  # fmt: skip
            results.append((loss, *torch.autograd.grad(loss, (hidden, table))))
        for name, got, want in zip(("loss", "hidden", "table"), results[1], results[0]):  # atol: at each one's scale
            torch.testing.assert_close(got, want, rtol=rtol, atol=rtol * float(want.abs().max()),
                                       msg=f"{name}, autocast {autocast}")  # fmt: skip
