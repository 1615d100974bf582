"""Data parallelism on 2 CPU processes (gloo), launched as Lightning launches them on GPUs: the
command is run again for the second rank (``strategy=ddp``). Each test runs this file as that
command (``python tests/test_ddp.py <scenario> ...``) and compares with one process."""

from __future__ import annotations

import atexit
import faulthandler
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import torch

HERE = Path(__file__).resolve()
RANK_TIMEOUT = 300  # seconds
RTE_TEST_ROWS = 7  # shared by 2 processes: 4 + 3, no padding to equal shares


def run_ranks(*args: str) -> subprocess.CompletedProcess:
    """This file as a command on 2 CPU processes; fails with the output of both ranks."""
    env = {**os.environ, "PYTHONPATH": str(HERE.parents[1]), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(HERE), *args], env=env, capture_output=True, text=True,
                          timeout=RANK_TIMEOUT + 60)  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-8000:]
    return done


def write_rank_file(path: Path, value) -> None:
    """``value`` as JSON, in place at once (the test may be reading as it is written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_suffix(".tmp").write_text(json.dumps(value))
    os.replace(path.with_suffix(".tmp"), path)


def read_rank_file(path: Path):
    """What a rank wrote: rank 1 can still be ending when rank 0, the command, has returned."""
    deadline = time.monotonic() + RANK_TIMEOUT
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} was not written"
        time.sleep(0.1)
    return json.loads(path.read_text())


def rte_test_file(data: Path, tmp_path: Path) -> Path:
    """The first RTE_TEST_ROWS rows of RTE's (unlabelled) test file."""
    test_file = tmp_path / "test.tsv"
    test_file.write_text("".join((data / "glue" / "RTE" / "test.tsv").open().readlines()[: 1 + RTE_TEST_ROWS]))
    return test_file


# ---- item: evaluation under DDP counts every example once ----------------------------------------------------


class CountScored(L.Callback):
    """How many examples this process scored in validation."""

    seen = 0

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self.seen += len(batch["labels"])


def evaluate(devices: int, data_dir: Path, cache_dir: Path, test_file: Path) -> dict:
    """Validation scores, examples scored on this process and predictions of a random tiny GPT on
    7 RTE dev examples and the 7 rows of ``test_file``, one example per batch (so that every
    example is computed alone, as on one process)."""
    import lightning as L

    import gptbench
    from conftest import GPT1

    tokenizer = gptbench.Tokenizer.gpt1(GPT1 / "encoder_bpe_40000.json", GPT1 / "vocab_40000.bpe")
    torch.manual_seed(0)
    config = gptbench.GPTConfig(vocab_size=tokenizer.vocab_size, n_ctx=48, n_embd=32, n_layer=1, n_head=2)
    module = gptbench.FinetuneModule(config, "rte")
    data = gptbench.datamodule("rte", tokenizer, data_dir=data_dir, cache_dir=cache_dir, batch_size=1,
                               max_eval_examples=RTE_TEST_ROWS, splits={"test": str(test_file)})  # fmt: skip
    count = CountScored()
    trainer = L.Trainer(accelerator="cpu", devices=devices, strategy="ddp" if devices > 1 else "auto", logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[count])  # fmt: skip
    scores = trainer.validate(module, datamodule=data, verbose=False)[0]
    predictions = trainer.predict(module, datamodule=data)
    return {"rank": trainer.global_rank, "scores": {k: v for k, v in scores.items() if not k.endswith("/loss")},
            "scored_here": count.seen, "batches": [len(b["index"]) for b in predictions],
            "index": torch.cat([b["index"] for b in predictions]).tolist(),
            "prediction": torch.cat([b["prediction"] for b in predictions]).tolist()}  # fmt: skip


def test_ddp_evaluation_scores_every_example_once_and_gathers_predictions(cache_dir, tmp_path):
    """Lightning's default DistributedSampler pads 7 examples to 2 x 4, scoring one twice, and
    ``trainer.predict`` returned each process's share only. Now: 4 + 3 examples scored, the same
    accuracy as one process, and every process holds all 7 predictions in order, batched as one
    process batches them."""
    from conftest import DATA

    test_file = rte_test_file(DATA, tmp_path)
    one = evaluate(1, DATA, cache_dir, test_file)  # (also fills the cache the two processes read)
    assert one["scored_here"] == RTE_TEST_ROWS and one["index"] == list(range(RTE_TEST_ROWS))
    accuracy = one["scores"]["dev/accuracy"]
    assert 0 < accuracy < 1  # so a count of 8 could not give the same accuracy (k/7 != j/8 for 0 < k < 7)

    out = tmp_path / "ranks"
    run_ranks("evaluate", str(DATA), str(cache_dir), str(test_file), str(out))
    ranks = [read_rank_file(out / f"rank{r}.json") for r in (0, 1)]
    assert [r["scored_here"] for r in ranks] == [4, 3]
    for rank in ranks:
        assert rank["scores"] == one["scores"], rank["rank"]
        assert (rank["index"], rank["prediction"], rank["batches"]) == (one["index"], one["prediction"], one["batches"])


def test_every_process_destroys_its_gloo_process_group_before_the_interpreter_ends(cache_dir, tmp_path):
    """Lightning leaves a Gloo group to interpreter finalization, where a process that had
    finished everything aborted now and then (SIGABRT, "terminate called without an active
    exception": CI's two-process fine-tune). Now each rank's group is destroyed at exit, before
    the handlers registered ahead of the run (here: the one that records what it finds)."""
    from conftest import DATA

    test_file = rte_test_file(DATA, tmp_path)
    out = tmp_path / "ranks"
    run_ranks("initialized_at_exit", str(DATA), str(cache_dir), str(test_file), str(out))
    assert [read_rank_file(out / f"rank{r}.exit.json") for r in (0, 1)] == [False, False]


# ---- item: the BERT encoder trains under DDP, and its files are written once ----------------------------------


def test_every_trained_parameter_of_the_encoder_gets_a_gradient():
    """What DDP (without find_unused_parameters) needs of every step, checked on one process:
    each parameter that requires a gradient gets one. The pooler in masked-LM pre-training and the
    masked-LM head in fine-tuning with lm_coef=0 got none."""
    import gptbench
    from gptbench.models.bert import BertConfig

    def untrained(module, loss) -> list[str]:
        loss.backward()
        return [name for name, p in module.named_parameters() if p.requires_grad and p.grad is None]

    torch.manual_seed(0)
    config = BertConfig(vocab_size=50, n_special=4, n_ctx=16, n_embd=16, n_layer=1, n_head=2)
    pretraining = gptbench.PretrainModule(config)
    windows = torch.randint(50, (4, 16))
    assert untrained(pretraining, pretraining.training_step((windows, windows), 0)) == []
    assert not pretraining.model.pooler_dense.weight.requires_grad

    ids = torch.cat([torch.full((4, 1, 1), config.cls_token_id), torch.randint(50, (4, 1, 14)),
                     torch.full((4, 1, 1), config.sep_token_id)], dim=2)  # fmt: skip
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": torch.tensor([0, 1, 0, 1])}
    for lm_coef in (0.0, 0.5):
        finetuning = gptbench.FinetuneModule(config, "rte", lm_coef=lm_coef)
        assert untrained(finetuning, finetuning.training_step(batch, 0)) == []
        assert finetuning.model.mlm_bias.requires_grad == (lm_coef > 0)  # trained when the auxiliary loss reads it



def written_files_log(root: Path, log: Path) -> None:
    """Record every file this process opens for writing, or renames into place, under ``root``
    (an audit hook: it sees every writer), into ``log``/rank<LOCAL_RANK>.json at exit."""
    written: list[str] = []

    def audit(event: str, args) -> None:
        if event == "open" and isinstance(args[0], (str, os.PathLike)) and os.fspath(args[0]).startswith(str(root)):
            mode, flags = args[1], args[2]
            if (mode and set(mode) & set("wax+")) or (mode is None and flags & (os.O_WRONLY | os.O_RDWR)):
                written.append(os.fspath(args[0]))
        elif event == "os.rename" and str(args[1]).startswith(str(root)):
            written.append(str(args[1]))

    def save() -> None:
        write_rank_file(log / f"rank{os.environ.get('LOCAL_RANK', '0')}.json", written)

    sys.addaudithook(audit)
    atexit.register(save)


def pretrain_then_finetune(overrides: list[str]) -> None:
    from gptbench.config import load_config
    from gptbench.training.finetune import run_finetune
    from gptbench.training.pretrain import run_pretrain

    run_pretrain(load_config("smoke", overrides))
    run_finetune(load_config("smoke", [*overrides, "finetune.task=rte", "finetune.lm_coef=0"]))


def test_bert_pretrains_and_finetunes_under_ddp_and_rank_zero_writes_the_files(tiny_corpus, cache_dir, tmp_path):
    """The encoder's pooler (pre-training) and masked-LM head (fine-tuning with lm_coef=0, BERT's
    recipe) get no gradient: DDP failed at the second step. And every process wrote the export,
    metrics.json, the model card and results.json. Now: 2 + 1 epoch's steps on 2 processes, and
    the second process writes none of the run's outputs."""
    from conftest import tiny_overrides

    runs = tmp_path / "runs"
    overrides = [*tiny_overrides(runs, tiny_corpus, cache_dir, name="ddp"), "architecture=bert",
                 "pretrain.max_steps=2", "pretrain.val_every_n_steps=2", "pretrain.checkpoint_every_n_steps=2",
                 "pretrain.keep_steps=[0,2]", "finetune.epochs=1", "finetune.max_train_examples=16",
                 "finetune.max_eval_examples=8", "finetune.holdout_max=8", "finetune.batch_size=4",
                 "trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp"]  # fmt: skip
    log = tmp_path / "written"
    run_ranks("pretrain_then_finetune", str(runs), str(log), *overrides)

    (metrics,) = runs.glob("ddp/pretrain/*/metrics.json")
    assert json.loads(metrics.read_text())["steps"] == 2
    (results,) = runs.glob("ddp/finetune/rte/*/seed*/results.json")
    assert json.loads(results.read_text())["finetune"]["lm_coef"] == 0
    outputs = {metrics, metrics.parent / "model" / "README.md", metrics.parent / "model" / "config.json", results,
               results.parent / "model" / "config.json"}  # fmt: skip
    by_rank = [{Path(p) for p in read_rank_file(log / f"rank{r}.json")} for r in (0, 1)]
    assert outputs <= by_rank[0]
    after_fit = {p for p in by_rank[1] if "model" in p.relative_to(runs).parts or p.name in ("metrics.json", "results.json",
                                                                                           "README.md")}  # fmt: skip
    assert not after_fit, sorted(after_fit)


if __name__ == "__main__":  # one rank of a test's command (Lightning runs it again for rank 1)
    sys.path.insert(0, str(HERE.parent))
    faulthandler.dump_traceback_later(RANK_TIMEOUT, exit=True)  # a rank left waiting for a dead one says where, and ends
    scenario, *args = sys.argv[1:]
    if scenario in ("evaluate", "initialized_at_exit"):
        data_dir, cache, test_file, out = map(Path, args)
        if scenario == "initialized_at_exit":
            rank = os.environ.get("LOCAL_RANK", "0")
            atexit.register(lambda: write_rank_file(out / f"rank{rank}.exit.json", torch.distributed.is_initialized()))
        result = evaluate(2, data_dir, cache, test_file)
        write_rank_file(out / f"rank{result['rank']}.json", result)
    elif scenario == "pretrain_then_finetune":
        root, log, *overrides = args
        written_files_log(Path(root), Path(log))
        pretrain_then_finetune(overrides)
