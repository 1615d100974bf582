"""The BERT encoder's masked-LM pre-training, its export and fill-mask (issue #15)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from conftest import tiny_overrides
from gptbench.cli import main
from gptbench.config import load_config
from gptbench.evaluation.fill_mask import fill_mask
from gptbench.evaluation.loading import load_model_and_tokenizer
from gptbench.models import BERT
from gptbench.run_identity import pretrain_dir
from gptbench.training.masked_lm import IGNORE, mask_tokens, with_cls
from gptbench.training.pretrain import run_pretrain


def test_masking_follows_berts_15_percent_and_80_10_10():
    ids = torch.randint(10, 1000, (64, 512))
    ids[:, 0] = 1000  # [CLS]
    generator = torch.Generator().manual_seed(0)
    inputs, labels = mask_tokens(ids, mask_id=1003, vocab_size=1000, generator=generator)
    selected = labels != IGNORE
    assert not selected[:, 0].any() and selected.any(dim=1).all()  # never [CLS]; every window has a target
    assert torch.equal(labels[selected], ids[selected]) and torch.equal(inputs[~selected], ids[~selected])
    assert selected.float().mean().item() == pytest.approx(0.15, abs=0.005)
    masked = (inputs == 1003) & selected
    kept = (inputs == ids) & selected
    random = selected & ~masked & ~kept
    n = selected.sum().item()
    assert masked.sum().item() / n == pytest.approx(0.8, abs=0.01)
    assert random.sum().item() / n == pytest.approx(0.1, abs=0.01)  # (a random draw equal to the token counts as kept)
    assert kept.sum().item() / n == pytest.approx(0.1, abs=0.01)
    assert inputs[random].max().item() < 1000  # random replacements come from the BPE vocabulary
    again, _ = mask_tokens(ids, 1003, 1000, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again, inputs)  # a seeded generator gives the same masks (validation)
    assert torch.equal(with_cls(torch.tensor([[5, 6, 7]]), 9), torch.tensor([[9, 5, 6]]))


def test_masked_lm_loss_equals_transformers(tmp_path):
    """The loss pre-training minimises is BertForMaskedLM's loss on the same corrupted inputs and labels."""
    import transformers

    from gptbench.models import BertConfig
    from gptbench.training.pretrain import PretrainModule

    torch.manual_seed(0)
    module = PretrainModule(BertConfig(vocab_size=90, n_special=4, n_ctx=24, n_embd=32, n_layer=2, n_head=4,
                                       embd_pdrop=0, attn_pdrop=0, resid_pdrop=0), max_steps=1)  # fmt: skip
    module.model.eval().save_pretrained(tmp_path)
    hf = transformers.BertForMaskedLM.from_pretrained(tmp_path).eval()
    windows = torch.randint(0, 90, (3, 24))
    ours, n = module.masked_lm_loss(windows, torch.Generator().manual_seed(7))
    c = module.model.config
    inputs, labels = mask_tokens(with_cls(windows, c.cls_token_id), c.mask_token_id, 90, torch.Generator().manual_seed(7))
    assert n == (labels != IGNORE).sum() > 0
    assert ours.item() == pytest.approx(hf(input_ids=inputs, labels=labels).loss.item(), abs=1e-5)


@pytest.fixture(scope="module")
def bert_run(tmp_path_factory, tiny_corpus, cache_dir):
    """A tiny BERT pre-trained with the same command, corpus and budget as the tiny GPT."""
    runs = tmp_path_factory.mktemp("runs")
    overrides = [*tiny_overrides(runs, tiny_corpus, cache_dir), "architecture=bert", "pretrain.max_steps=80",
                 "pretrain.val_every_n_steps=40", "pretrain.val_windows=32", "pretrain.warmup_steps=8"]  # fmt: skip
    cfg = load_config("smoke", overrides)
    return overrides, cfg, run_pretrain(cfg)


def test_masked_lm_pretraining_learns_and_exports_a_fill_mask_model(bert_run):
    import transformers

    _, cfg, export = bert_run
    stage = pretrain_dir(cfg)
    assert stage.name.startswith("bert2x32-ctx32-")
    metrics = json.loads((stage / "metrics.json").read_text())
    model, tokenizer = load_model_and_tokenizer(export)
    assert isinstance(model, BERT) and model.config.n_special == 4
    assert metrics["architecture"] == "bert" and metrics["parameters"] == model.num_parameters()
    # Learned: the masked-LM loss is well below guessing uniformly over the vocabulary (measured: 5.58 vs 5.99;
    # the masked LM learns from 15% of the positions, so more slowly than the next-token model: 5.42).
    assert metrics["val_loss"] < math.log(model.config.vocab_size) - 0.3
    assert (cfg.run_dir / "pretrain" / "bert-model").resolve() == export.resolve()

    # transformers reads the export as a fill-mask model: same logits, [MASK] at gptbench's id.
    hf = transformers.BertForMaskedLM.from_pretrained(export).eval()
    hf_tok = transformers.AutoTokenizer.from_pretrained(export)
    assert hf_tok.mask_token == "[MASK]" and hf_tok.mask_token_id == model.config.mask_token_id
    ids = torch.tensor([[model.config.cls_token_id, *tokenizer.encode("the old man was"), model.config.mask_token_id]])
    assert torch.allclose(hf(input_ids=ids).logits, model.lm_logits(ids), atol=1e-4)
    card = (export / "README.md").read_text()
    assert "pipeline_tag: fill-mask" in card and "masked LM: 15% of positions" in card

    # gptbench's fill-mask: one list of top-k candidates per [MASK], probabilities descending.
    masks = fill_mask(model, tokenizer, "the old [MASK] was [MASK] .", top_k=4)
    assert len(masks) == 2 and all(len(m) == 4 for m in masks)
    assert all(m[0].probability >= m[-1].probability > 0 for m in masks)
    hf_best = hf(input_ids=torch.tensor([[model.config.cls_token_id, *tokenizer.encode("the old"),
                                          model.config.mask_token_id]])).logits[0, -1, : model.config.vocab_size]  # fmt: skip
    assert masks[0][0].token.replace(" ", "</w>").rstrip() in (
        tokenizer.id_to_token(int(hf_best.argmax())), tokenizer.id_to_token(int(hf_best.argmax())).rstrip())


def test_fill_mask_command(bert_run, pretrained, capsys):
    from conftest import pretrained_model

    *_, export = bert_run
    assert main(["fill-mask", str(export), "the old [MASK] was tired", "top_k=3"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("[MASK] 1: ") and len(out[0].split("  ")) == 3
    assert main(["fill-mask", str(export), "no mask here"]) == 2
    assert "has no [MASK]" in capsys.readouterr().err
    assert main(["fill-mask", str(pretrained_model(pretrained)), "the [MASK]"]) == 2  # a GPT cannot fill masks
    assert "gptbench generate" in capsys.readouterr().err
    assert main(["generate", str(export), "the old man"]) == 2  # and the encoder cannot continue text
    assert "fill-mask" in capsys.readouterr().err
    assert main(["zeroshot", str(export), "tasks=sst2", f"data_dir={export.parent}"]) == 2  # nor score zero-shot
    assert "zero-shot heuristics reads next-token probabilities, which the bert network" in capsys.readouterr().err


@pytest.mark.cpu
def test_masked_lm_resume_is_exact(tmp_path, tiny_corpus, cache_dir, monkeypatch):
    """The masks come from the global RNG, which checkpoints save: a run interrupted and resumed ends
    with the same weights and validation loss as one that never stopped."""
    from test_pretrain import crash_at
    from gptbench.training import pretrain

    base = [*tiny_overrides(tmp_path, tiny_corpus, cache_dir), "architecture=bert", "trainer.accelerator=cpu"]
    straight = load_config("smoke", [*base, "name=straight"])
    run_pretrain(straight)
    crashed = load_config("smoke", [*base, "name=crashed"])
    with monkeypatch.context() as m:
        crash_at(m, pretrain, step=6)  # between the checkpoints at steps 4 and 8
        with pytest.raises(RuntimeError, match="simulated crash"):
            run_pretrain(crashed)
    run_pretrain(load_config("smoke", [*base, "name=crashed", "resume=true"]))
    a, b = (load_file(c.run_dir / "pretrain" / "bert-model" / "model.safetensors") for c in (straight, crashed))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ma, mb = (json.loads((pretrain_dir(c) / "metrics.json").read_text()) for c in (straight, crashed))
    assert ma["val_loss"] == mb["val_loss"]


def test_bert_input_conventions(gpt1_tokenizer):
    """[CLS] a [SEP] b [SEP] with segment B after the first [SEP]; similarity in one order; the GPT
    layouts unchanged (tests/test_tasks.py)."""
    from conftest import DATA
    from gptbench.data.task_data import encode_split
    from gptbench.models.task_head import segment_ids
    from gptbench.tasks import get_task

    t = gpt1_tokenizer
    cls, sep = t.start_id, t.delimiter_id
    rte = get_task("rte").read("dev", DATA)[0][0]
    [seq] = encode_split(get_task("rte"), [rte], t, n_ctx=512, input_format="bert")[0]["input_ids"]
    p, h = t.encode(rte["premise"]), t.encode(rte["hypothesis"])
    assert seq == [cls, *p, sep, *h, sep]
    segments = segment_ids(torch.tensor([seq + [0, 0]]), sep)[0].tolist()
    assert segments == [0] * (len(p) + 2) + [1] * (len(h) + 1) + [1, 1]  # (pads are masked out)
    mrpc = get_task("mrpc").read("dev", DATA)[0][0]
    seqs = encode_split(get_task("mrpc"), [mrpc], t, n_ctx=512, input_format="bert")[0]["input_ids"]
    assert seqs == [[cls, *t.encode(mrpc["text_a"]), sep, *t.encode(mrpc["text_b"]), sep]]
    sst2 = get_task("sst2").read("dev", DATA)[0][0]
    assert encode_split(get_task("sst2"), [sst2], t, 512, "bert")[0]["input_ids"] == [[cls, *t.encode(sst2["text"]), sep]]
    with pytest.raises(ValueError, match="input_format"):
        encode_split(get_task("sst2"), [sst2], t, 512, "xlnet")


def test_fine_tuning_the_encoder_reads_the_pooled_cls(bert_run, tmp_path):
    """The encoder fine-tunes through the same command, selection and result files as GPT, reading
    [CLS] through the pooler; the saved task model loads as the encoder; with lm_coef > 0 the
    auxiliary loss is the masked-LM one, and it trains the MLM head."""
    from gptbench import TaskModel
    from gptbench.models.task_head import extract_states
    from gptbench.training.finetune import FinetuneModule, run_finetune

    overrides, _, export = bert_run
    tuned = load_config("smoke", [*overrides, "finetune.task=rte", "finetune.lm_coef=0", "finetune.max_train_examples=64",
                                  "finetune.max_eval_examples=32", "finetune.epochs=1"])  # fmt: skip
    results = run_finetune(tuned)
    assert results["init"] == str(pretrain_dir(tuned) / "model") and 0 <= results["metrics"]["dev"]["accuracy"] <= 1
    [run] = (tuned.run_dir / "finetune" / "rte").glob("*/seed1234")
    assert run.parent.name.startswith("bert-pretrained-lm0-") and results["selection"]["protocol"] == "holdout"
    task_model = TaskModel.from_pretrained(run / "model")
    assert isinstance(task_model.model, BERT)

    # The head reads the pooler's output at [CLS] (position 0): changing the last token changes it.
    ids = torch.tensor([[[task_model.model.config.cls_token_id, 5, 6, task_model.model.config.sep_token_id]]])
    states, hidden = extract_states(task_model.model, ids, torch.ones_like(ids))
    assert torch.allclose(states[0, 0], task_model.model.pooler(hidden)[0])

    module = FinetuneModule.from_pretrained(export, "rte", lm_coef=0.5)
    batch = ids.expand(2, 1, 4).clone()
    loss = module.lm_loss(None, batch, torch.ones_like(batch))
    loss.backward()
    assert torch.isfinite(loss) and module.model.mlm_dense.weight.grad.abs().sum() > 0


def test_encoder_pretraining_result_files_sit_beside_the_transformers(bert_run, tmp_path):
    """A sweep that pre-trains the encoder adds ``bert_pretrain`` to provenance.json and its own curve
    file; the Transformer's entries are left as they were, and the report names the objective."""
    from gptbench.suite.report import provenance_lines
    from gptbench.suite.results import write_pretrain_results

    _, cfg, _ = bert_run
    (tmp_path / "provenance.json").write_text(json.dumps({"preset": "tiny", "pretrain": {"val_loss": 4.0}}))
    write_pretrain_results(cfg, tmp_path)
    provenance = json.loads((tmp_path / "provenance.json").read_text())
    assert provenance["pretrain"] == {"val_loss": 4.0} and provenance["bert_pretrain"]["objective"] == "masked LM"
    assert provenance["bert_pretrain"]["tokens_seen"] == 80 * 8 * 32
    assert (tmp_path / "pretrain_curve_bert.csv").is_file() and not (tmp_path / "pretrain_curve.csv").exists()
    [line] = [x for x in provenance_lines(provenance, {"parameters": 1, "perplexity": 1, "corpus": "x"}) if "BERT" in x]
    assert "masked-LM validation loss" in line and "masked LM" in line
