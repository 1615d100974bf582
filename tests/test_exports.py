"""Exported directories open in transformers as they are (model, tokenizer, pipeline), carry a model
card, and fine-tuned task models load and predict in a few lines."""

import json
import random
import re
import shutil

import pytest
import torch
from conftest import DATA, GPT1, SHARED, pretrained_model

import gptbench.training.finetune as finetune
from gptbench import TaskModel, Tokenizer
from gptbench.config import ConfigError, load_config
from gptbench.data.hf_export import transformers_tokenizer
from gptbench.data.task_data import random_subset, read_split
from gptbench.evaluation.loading import load_model_and_tokenizer
from gptbench.models import load_pretrained
from gptbench.models.checkpoints import CheckpointError
from gptbench.tasks import get_task
from gptbench.tasks.base import TRANSFORMATION_FIELDS

transformers = pytest.importorskip("transformers")


def book_paragraphs(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    books = sorted((SHARED / "corpus").rglob("*.txt"))
    out = []
    for book in rng.sample(books, 20):
        paragraphs = [p.strip() for p in book.read_text(encoding="utf-8").split("\n\n") if len(p.strip()) > 40]
        out += rng.sample(paragraphs, min(n // 20, len(paragraphs)))
    return out


def task_sentences(n: int, seed: int = 0) -> list[str]:
    """The text fields of ``n // 6`` random dev records of each of six GLUE tasks: only the fields
    the task's input transformation reads, never a record's bookkeeping (its ``_where`` names the
    file, so it would depend on where the data lives)."""
    rng = random.Random(seed)
    texts = []
    for name in ("sst2", "rte", "mrpc", "cola", "qnli", "stsb"):
        task = get_task(name)
        records = read_split(task, "dev", DATA)[0]
        for r in rng.sample(records, n // 6):
            texts += [r[field] for field in TRANSFORMATION_FIELDS[task.transformation]]
    return texts


def readable(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


@pytest.fixture(scope="module")
def exported(pretrained):
    model_dir = pretrained_model(pretrained)
    return model_dir, Tokenizer.load(model_dir / "tokenizer")


@pytest.mark.parametrize("source", ["book", "task"])
def test_auto_tokenizer_ids_equal_gptbench(exported, source):
    model_dir, ours = exported
    theirs = transformers.AutoTokenizer.from_pretrained(model_dir)
    assert len(theirs) == len(ours) == load_pretrained(model_dir).config.n_tokens
    assert theirs.convert_tokens_to_ids(["_start_", "_delimiter_", "_classify_"]) == [
        ours.start_id, ours.delimiter_id, ours.extract_id]  # fmt: skip
    texts = book_paragraphs(200) if source == "book" else task_sentences(240)
    assert not any("/" + DATA.name + "/" in t for t in texts)  # text only: nothing depends on where the data lives
    same = [ours.encode(t) == theirs(t, add_special_tokens=False)["input_ids"] for t in texts]
    # The README states the agreement; measured 98.8% of book paragraphs, 98.2-98.4% of GLUE dev texts.
    assert sum(same) / len(texts) >= 0.96, f"{sum(same)}/{len(texts)} texts tokenized identically"
    for text, equal in zip(texts, same):
        if equal:  # decode(encode(text)) reads as gptbench's decode
            ids = ours.encode(text)
            assert readable(theirs.decode(ids)) == readable(ours.decode(ids))
    plain = "The old man sat by the fire. \"I don't know,\" she said -- and then it's gone... Mr. Smith's dog!"
    assert theirs(plain, add_special_tokens=False)["input_ids"] == ours.encode(plain)
    assert "</w>" not in theirs.decode(ours.encode(plain))


def test_released_vocabulary_exports_what_openai_gpt_tokenizer_reads(tmp_path):
    from gptbench.data.hf_export import save_for_transformers

    gpt1 = Tokenizer.gpt1(GPT1 / "encoder_bpe_40000.json", GPT1 / "vocab_40000.bpe")
    written = save_for_transformers(gpt1, tmp_path, 512)
    assert {p.name for p in written} == {"tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt"}
    fast = transformers.AutoTokenizer.from_pretrained(tmp_path)
    assert len(fast) == 40481 and fast("the old man sat")["input_ids"] == gpt1.encode("the old man sat")
    # OpenAIGPTTokenizer reads vocab.json + merges.txt: the same vocabulary behind BERT's
    # pre-tokenization, which splits man|'|s where GPT-1 (spaCy) has man|'s (the README says when).
    slow = transformers.OpenAIGPTTokenizer.from_pretrained(tmp_path)
    assert slow("the old man sat")["input_ids"] == gpt1.encode("the old man sat")
    assert slow("the man's dog")["input_ids"] != gpt1.encode("the man's dog") == fast("the man's dog")["input_ids"]
    agreement = transformers_tokenizer(gpt1)
    texts = task_sentences(120, seed=1)
    assert sum(gpt1.encode(t) == agreement.encode(t).ids for t in texts) / len(texts) >= 0.95


def test_transformers_pipeline_and_generate_agree_with_gptbench(exported):
    model_dir, ours = exported
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir).eval()
    mine = load_pretrained(model_dir).eval()
    for prompt in ("the old man", "she looked at him and said"):
        ids = ours.encode(prompt)
        greedy = mine.generate(ids, 8)
        with torch.no_grad():
            theirs = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                    max_new_tokens=8, min_new_tokens=8, do_sample=False)  # fmt: skip
        assert torch.equal(theirs, greedy)
        generate = transformers.pipeline("text-generation", model=model, tokenizer=tokenizer)
        text = generate(prompt, max_new_tokens=8, min_new_tokens=8, do_sample=False, return_full_text=False)
        assert readable(text[0]["generated_text"]) == readable(ours.decode(greedy[0, len(ids):].tolist()))


def test_model_card(exported, pretrained):
    model_dir, _ = exported
    finetune.run_finetune(load_config("smoke", pretrained + ["finetune.task=sst2"]))  # the card lists it
    card = (model_dir / "README.md").read_text()
    metrics = json.loads((model_dir.resolve().parent / "metrics.json").read_text())
    for fact in (f"{metrics['parameters']:,}", f"{metrics['train_tokens']:,} tokens seen",
                 f"loss {metrics['val_loss']:.4f}", f"perplexity {metrics['val_ppl']:.2f}",
                 "AutoModelForCausalLM.from_pretrained", "pipeline_tag: text-generation"):  # fmt: skip
        assert fact in card, fact
    assert metrics["command"] and "commit" in metrics and f"at commit {metrics['commit'] or 'unknown'}" in card
    assert re.search(r"\| sst2 \| pretrained-\S+ \| 1234 \| dev \| accuracy 0\.\d{4} \| holdout", card)


def test_fine_tuned_task_model_predicts_as_it_scored(pretrained):
    cfg = load_config("smoke", pretrained + ["finetune.task=rte"])
    results = finetune.run_finetune(cfg)
    (model_dir,) = (cfg.run_dir / "finetune" / "rte").glob(f"{results['settings_key']}/seed{cfg.finetune_seed}/model")
    rte = TaskModel.from_pretrained(model_dir, device="cpu")
    assert rte.fields == ("premise", "hypothesis") and "## " not in (model_dir / "README.md").read_text()[:3]
    assert rte.predict(("A man is playing a guitar.", "A man plays music.")) in (["entailment"], ["not_entailment"])
    # The exported checkpoint reproduces the reported dev score on the same 64 dev examples.
    records = random_subset(read_split(get_task("rte"), "dev", DATA)[0], 64, 0)
    predicted = rte.predict([(r["premise"], r["hypothesis"]) for r in records], batch_size=16)
    accuracy = sum(p == get_task("rte").labels[r["label"]] for p, r in zip(predicted, records)) / len(records)
    assert accuracy == pytest.approx(results["metrics"]["dev"]["accuracy"])
    with pytest.raises(ValueError, match=r"lacks field\(s\) \['hypothesis'\]"):
        rte.predict({"premise": "a"})


def test_missing_or_mismatched_tokenizer_is_named(exported, tmp_path):
    model_dir, _ = exported
    broken = tmp_path / "model"
    shutil.copytree(model_dir, broken)
    other = Tokenizer.train(["a b c d e f g h " * 50], vocab_size=40)
    (broken / "tokenizer.json").write_text(transformers_tokenizer(other).to_str())
    with pytest.raises(CheckpointError, match=r"tokenizer\.json: \d+ tokens, but the model's embedding has \d+ rows"):
        load_model_and_tokenizer(broken, device="cpu")
    other.save(broken / "tokenizer")
    with pytest.raises(CheckpointError, match=r"tokenizer/tokenizer\.json: tokenizer vocabulary \d+ != the model's"):
        load_model_and_tokenizer(broken, device="cpu")
    shutil.rmtree(broken / "tokenizer")
    with pytest.raises(ConfigError, match=r"tokenizer/tokenizer\.json: missing"):
        load_model_and_tokenizer(broken, device="cpu")
    with pytest.raises(CheckpointError, match=r"task\.json: missing; not a gptbench task model"):
        TaskModel.from_pretrained(model_dir)


def test_an_older_export_gains_the_transformers_files_on_rerun(exported, pretrained):
    from gptbench.training.pretrain import run_pretrain

    model_dir = exported[0].resolve()
    for name in ("tokenizer.json", "tokenizer_config.json", "README.md"):
        (model_dir / name).unlink()
    assert run_pretrain(load_config("smoke", pretrained)).resolve() == model_dir  # nothing retrained
    assert transformers.AutoTokenizer.from_pretrained(model_dir)("the old man")["input_ids"] == exported[1].encode("the old man")
    assert "perplexity" in (model_dir / "README.md").read_text()
