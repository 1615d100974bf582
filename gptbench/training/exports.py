"""What a pre-training hands to its users: a directory that gptbench and ``transformers`` both load as
it is (weights, config, gptbench's tokenizer, the tokenizer files of ``transformers``), with a model
card (``README.md``, the Hugging Face Hub's convention) saying what the model is and how it was made.

The card is rewritten when a fine-tune of the model finishes, so it lists the fine-tuning results
that exist in the run directory.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from gptbench.data.hf_export import save_for_transformers
from gptbench.data.tokenizer import Tokenizer
from gptbench.io import atomic_write_text
from gptbench.models.bert import BERT
from gptbench.models.checkpoints import BERT_MODEL_TYPE, LSTM_MODEL_TYPE


def export_language_model(model, tokenizer: Tokenizer, directory: str | Path) -> Path:
    """Weights + config (``save_pretrained``), ``tokenizer/`` (gptbench's exact pipeline) and
    ``tokenizer.json`` + ``tokenizer_config.json`` (``AutoTokenizer``)."""
    directory = Path(directory)
    model.save_pretrained(directory)
    tokenizer.save(directory / "tokenizer")
    save_for_transformers(tokenizer, directory, model.config.n_ctx, with_mask=isinstance(model, BERT))
    return directory


def finetune_results_of(export_dir: Path) -> list[dict]:
    """The results.json of every finished fine-tune in the run directory that started from
    ``export_dir`` (a run's ``runs/<name>/pretrain/<key>/model``)."""
    source = Path(export_dir).resolve()  # runs/<name>/pretrain/model is a link to the newest run's
    run_dir = source.parents[2]
    found = []
    for path in sorted(run_dir.glob("finetune/*/*/seed*/results.json")):
        try:
            results = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue  # a file being written by a running fine-tune; the next card has it
        if results.get("init") and Path(results["init"]).resolve() == source:
            found.append(results)
    return found


def _network_line(config: dict) -> str:
    if config.get("model_type") == BERT_MODEL_TYPE:
        return (f"BERT-style encoder (post-LN, bidirectional), {config['num_hidden_layers']} layers x "
                f"{config['hidden_size']}, {config['num_attention_heads']} heads, {config['max_position_embeddings']} "
                "positions, masked-LM head tied to the token embedding, [CLS] pooler; transformers' BertForMaskedLM")  # fmt: skip
    if config.get("model_type") == LSTM_MODEL_TYPE:
        return (f"LSTM language model (the paper's Table 5 baseline): {config['n_layer']} layer(s) of "
                f"{config['n_hidden']} units projected to {config['n_embd']}, tied LM head; gptbench format "
                "(transformers has no LSTM class)")  # fmt: skip
    return (f"GPT-1 Transformer decoder (post-LN), {config['n_layer']} layers x {config['n_embd']}, "
            f"{config['n_head']} heads, context {config['n_positions']} tokens; transformers' openai-gpt")  # fmt: skip


def _corpus_source(cfg: dict) -> str:
    """Where the books came from: the corpus folder, or (on a machine without it) the prepared
    directory the run read them from, tokenized."""
    if cfg["corpus"].get("path"):
        return f"the .txt books of `{Path(cfg['corpus']['path']).name}/`"
    return f"the books tokenized in the prepared directory `{Path(cfg['prepared']).name}/`"


def model_card(export_dir: str | Path) -> str:
    """The README.md of a pre-training export (``runs/<name>/pretrain/<key>/model``)."""
    export_dir = Path(export_dir).resolve()
    stage = export_dir.parent
    config = json.loads((export_dir / "config.json").read_text(encoding="utf-8"))
    metrics = json.loads((stage / "metrics.json").read_text(encoding="utf-8"))
    cfg = yaml.safe_load((stage / "config.yaml").read_text(encoding="utf-8"))
    tok, corpus, p = cfg["tokenizer"], cfg["corpus"], cfg["pretrain"]
    special = config.get("gptbench", {}).get("n_special", 3)
    vocab = (config.get("gptbench", {}).get("vocab_size") or config["vocab_size"] - special)
    tokenizer = (f"GPT-1's released BPE ({vocab:,} tokens)" if tok["kind"] == "gpt1" else
                 f"a GPT-1 style BPE of {vocab:,} tokens learned on {tok['train_bytes']:,} bytes of the training books")
    tokens = metrics["corpus_tokens"]
    kind = {LSTM_MODEL_TYPE: "lstm", BERT_MODEL_TYPE: "bert"}.get(config.get("model_type"), "gpt")
    hours = metrics.get("wall_seconds", 0) / 3600
    n_ctx = config.get("n_positions") or config.get("max_position_embeddings") or cfg["model"]["n_ctx"]
    lines = [
        "---",
        "library_name: " + ("gptbench" if kind == "lstm" else "transformers"),
        "pipeline_tag: " + ("fill-mask" if kind == "bert" else "text-generation"),
        "tags: [gptbench, gpt-1, " + {"gpt": "openai-gpt", "lstm": "lstm", "bert": "bert, masked-lm"}[kind] + "]",
        "---",
        f"# {cfg['name']}: " + {"gpt": "a GPT-1 language model", "lstm": "an LSTM language model",
                                "bert": "a BERT-style encoder"}[kind] + " pre-trained with gptbench",
        "",
        "| | |",
        "| --- | --- |",
        f"| network | {_network_line(config)} |",
        f"| parameters | {metrics['parameters']:,} (the LM head is tied to the token embedding) |",
        f"| tokenizer | {tokenizer}, then 3 task tokens `_start_`, `_delimiter_`, `_classify_` "
        f"(ids {vocab}-{vocab + 2})" + (f" and `[MASK]` (id {vocab + 3}; `_start_` plays [CLS], `_delimiter_` [SEP])"
                                        if kind == "bert" else "")
        + "; pre-tokenization as GPT-1: ftfy, standardisation, spaCy, lowercase |",
        f"| corpus | {_corpus_source(cfg)}"
        + (f" (first {corpus['max_bytes']:,} bytes)" if corpus.get("max_bytes") else "")
        + f": {tokens['train']:,} training tokens; {tokens['val']:,} validation tokens in {corpus['val_books']} "
        "held-out books |",
        f"| pre-training | {metrics['steps']:,} steps x {p['batch_size']} windows x {n_ctx}"
        f" tokens = {metrics['train_tokens']:,} tokens seen; Adam, peak lr {p['lr']}, {p['warmup_steps']} warm-up "
        f"steps, cosine decay; {hours:.2f} h of training"
        + ("; masked LM: 15% of positions, 80/10/10 [MASK]/random/kept, no next-sentence prediction" if kind == "bert"
           else "") + " |",
        f"| validation | {'masked-LM ' if kind == 'bert' else ''}loss {metrics['val_loss']:.4f} nats/token, perplexity "
        f"{metrics['val_ppl']:.2f} ({p['val_windows']} windows of the held-out books"
        + ("; the same masks at every validation; not comparable with a left-to-right perplexity" if kind == "bert"
           else "") + ") |",
        f"| made by | `{metrics.get('command') or 'gptbench pretrain ' + cfg['name']}` at commit "
        f"{metrics.get('commit') or 'unknown'} |",
        "",
        "## Use",
        "",
    ]  # fmt: skip
    if kind == "bert":
        lines += [
            "```python",
            "from transformers import pipeline",
            "",
            f'fill = pipeline("fill-mask", model="{export_dir}")',
            'print(fill("the cat [MASK] on the mat"))',
            "```",
            f'or `gptbench fill-mask {export_dir} "the cat [MASK] on the mat"` (gptbench\'s exact tokenizer).',
            "",
            "## Fine-tuning results",
            "",
        ]
        return "\n".join(lines + _finetune_table(finetune_results_of(export_dir))) + "\n"
    if kind == "gpt":
        lines += [
            "```python",
            "from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline",
            "",
            f'tokenizer = AutoTokenizer.from_pretrained("{export_dir}")',
            f'model = AutoModelForCausalLM.from_pretrained("{export_dir}")',
            'generate = pipeline("text-generation", model=model, tokenizer=tokenizer)',
            'print(generate("the old man", max_new_tokens=20, do_sample=False)[0]["generated_text"])',
            "```",
            "",
            "`tokenizer.json` imitates GPT-1's ftfy + spaCy pre-tokenization with `tokenizers` rules; on real book "
            "paragraphs and GLUE sentences about 98-99% of texts get ids identical to training (the rest differ "
            "around rare spaCy exceptions and case-dependent abbreviations). For the exact training ids use "
            "gptbench:",
            "",
        ]  # fmt: skip
    lines += [
        "```python",
        "import gptbench",
        "",
        f'model = gptbench.models.load_pretrained("{export_dir}")',
        f'tokenizer = gptbench.Tokenizer.load("{export_dir}/tokenizer")',
        'out = model.generate(tokenizer.encode("the old man"), 20, strategy="greedy")',
        "print(tokenizer.decode(out[0].tolist()))",
        "```",
        f'or `gptbench generate {export_dir} "the old man" strategy=sample top_p=0.9 seed=0`.',
        "",
        "## Fine-tuning results",
        "",
    ]
    lines += _finetune_table(finetune_results_of(export_dir))
    return "\n".join(lines) + "\n"


def _finetune_table(results: list[dict]) -> list[str]:
    if not results:
        return ["No fine-tune of this model has finished yet (`gptbench finetune ...` rewrites this section)."]
    rows = ["Each row: one fine-tune from this model (seed, the settings key naming its variant); the "
            "checkpoint reported was chosen by the selection protocol shown, never on the split scored.", "",
            "| task | variant | seed | split | scores | selection |", "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for r in sorted(results, key=lambda r: (r["task"], r["settings_key"], r["seed"])):
        sel = r["selection"]
        chosen = sel["protocol"] if sel["protocol"] == "last" else f"{sel['protocol']} ({sel['metric']} on {sel['split']})"
        for split, scores in sorted(r["metrics"].items()):
            shown = ", ".join(f"{m} {v:.4f}" for m, v in scores.items())
            rows.append(f"| {r['task']} | {r['settings_key']} | {r['seed']} | {split} | {shown} | {chosen} |")
    return rows


def write_model_card(export_dir: str | Path) -> Path:
    path = Path(export_dir) / "README.md"
    atomic_write_text(path, model_card(export_dir))
    return path
