"""Zero-shot heuristics of the GPT-1 paper (Section 5, Figure 2 right) for any network (GPT or
the LSTM) + Tokenizer.

Every heuristic scores text with the language model alone (no fine-tuning). A scored sequence is
``[start] + prefix + continuation``; the model conditions on the start token and the prefix and
we read the log-probabilities of the continuation's tokens (natural log, float32).

- CoLA: the mean token log-probability of the sentence (prefix empty, continuation = the
  sentence); "acceptable" (1) above a threshold. The threshold is chosen on the training split to
  maximise Matthews correlation (midpoints between consecutive distinct train scores are tried;
  ties keep the lowest such threshold) and reported; dev is scored with it (Matthews and accuracy).
- SST-2: prefix = the sentence + " very"; compare the next-token log-probabilities of "positive"
  and "negative" and predict the larger (1 = positive; a tie predicts negative). Where a word is
  several BPE tokens (small trained vocabularies) the whole word is scored: the SUM of its tokens'
  log-probabilities, i.e. log P(word | prefix) by the chain rule; with GPT-1's 40k vocabulary both
  words are one token each and this is exactly the next-token log-probability.
- RACE: prefix = article + question (their tokens concatenated, no delimiter); pick the answer
  with the highest mean token log-probability. Accuracy on dev, also per group (middle, high).
- DPRD: each candidate replaces the first whole-word occurrence of the pronoun (case-sensitive
  match first, else case-insensitive); prefix = the sentence up to and including the candidate,
  continuation = the rest of the sentence; pick the candidate whose rest gets the higher mean
  log-probability per token. Accuracy on test. Ties (and an empty rest) pick the first candidate.

Shared prefixes: the candidates of a RACE question (and SST-2's two words) share
``[start] + prefix``; :func:`continuation_logprobs` runs the prefix once (batch 1), expands its
key/value states (the LSTM: its (h, c) state) to the number of candidates and runs only the right-padded continuations with an
attention mask of shape (B, T_past + T). :func:`continuation_logprobs_naive` runs one full
sequence per candidate instead; both give the same scores (to float rounding, < 1e-4).

Context length: a sequence longer than ``n_ctx`` is cut from the start of the prefix, keeping the
start token: the article loses its beginning (its end, the question and the answers are kept).
Only if the start token plus the longest continuation alone exceed ``n_ctx`` (tiny test models)
is the prefix reduced to the start token and the continuations cut at their end.

Encoding and scoring are separate steps: :func:`encode_examples` turns a split's records into the
token ids the heuristics read, so a prepared directory (``gptbench prepare``) can hold them and a
run from it (``prepared=``) scores the same ids without the raw files or the tokenizer pipeline.

Normalised score (Figure 2): ``(score - random) / (sota - random)`` with the random baseline and
previous state of the art from results/paper.yaml's ``zero_shot_sota`` (CoLA: Matthews, random
0). DPRD has no published state of the art: its ``normalised`` is None (report the raw accuracy).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from gptbench.config import ConfigError
from gptbench.data.tokenizer import Tokenizer
from gptbench.models import LanguageModel, require_next_token

ZERO_SHOT_TASKS = ("sst2", "cola", "race", "dprd")
EVAL_SPLIT = {"sst2": "dev", "cola": "dev", "race": "dev", "dprd": "test"}
METRIC = {"sst2": "accuracy", "cola": "matthews", "race": "accuracy", "dprd": "accuracy"}


# ---- scoring primitives ----------------------------------------------------------------------
def _device(model: LanguageModel) -> torch.device:
    return next(model.parameters()).device


def fit_context(prefix: list[int], conts: list[list[int]], n_ctx: int, keep_head: int = 1):
    """Cut ``prefix`` (after its first ``keep_head`` tokens) from its start so that prefix + the
    longest continuation fits ``n_ctx``; cut continuations at their end only if they alone do not
    fit beside the kept head."""
    longest = max((len(c) for c in conts), default=0)
    if keep_head + longest > n_ctx:
        room = n_ctx - keep_head
        return prefix[:keep_head], [c[:room] for c in conts]
    excess = len(prefix) + longest - n_ctx
    if excess > 0:
        prefix = prefix[:keep_head] + prefix[keep_head + excess :]
    return prefix, conts


@torch.no_grad()
def continuation_logprobs(model: LanguageModel, prefix: list[int], conts: list[list[int]]) -> list[np.ndarray]:
    """Log-probabilities of each continuation's tokens after ``prefix`` (>= 1 token), computing
    the prefix once and reusing its key/value states for every continuation."""
    assert prefix, "the prefix needs at least one token (the start token)"
    dev = _device(model)
    hidden, past = model(torch.tensor([prefix], device=dev))  # (1, P, C)
    first = F.log_softmax(model.lm_head(hidden[:, -1]).float(), dim=-1)[0]  # (V,) predicts cont[0]
    out = [np.zeros(0, dtype=np.float32) for _ in conts]
    live = [i for i, c in enumerate(conts) if c]
    if not live:
        return out
    B, P = len(live), len(prefix)
    L = max(len(conts[i]) for i in live) - 1  # the last token of a continuation is never an input
    firsts = first[torch.tensor([conts[i][0] for i in live], device=dev)]  # (B,)
    rest = None
    if L > 0:
        ids = torch.zeros(B, L, dtype=torch.long, device=dev)
        mask = torch.zeros(B, P + L, dtype=torch.long, device=dev)
        mask[:, :P] = 1
        for b, i in enumerate(live):
            c = conts[i][:-1]
            ids[b, : len(c)] = torch.tensor(c, device=dev)
            mask[b, P : P + len(c)] = 1
        h, _ = model(ids, attention_mask=mask, past_key_values=model.expand_past(past, B))  # (B, L, C)
        rest = F.log_softmax(model.lm_head(h).float(), dim=-1)  # (B, L, V)
    for b, i in enumerate(live):
        c = conts[i]
        lp = [firsts[b].view(1)]
        if len(c) > 1:
            tgt = torch.tensor(c[1:], device=dev)
            lp.append(rest[b, : len(c) - 1].gather(-1, tgt[:, None])[:, 0])
        out[i] = torch.cat(lp).cpu().numpy()
    return out


@torch.no_grad()
def continuation_logprobs_naive(
    model: LanguageModel, pairs: list[tuple[list[int], list[int]]], batch_size: int = 32
) -> list[np.ndarray]:
    """Log-probabilities of each continuation's tokens after its own prefix, one full sequence
    ``prefix + continuation`` per pair (right-padded batches, nothing shared)."""
    dev = _device(model)
    out: list[np.ndarray] = [np.zeros(0, dtype=np.float32) for _ in pairs]
    order = sorted(range(len(pairs)), key=lambda i: len(pairs[i][0]) + len(pairs[i][1]))
    for s in range(0, len(order), batch_size):
        chunk = [i for i in order[s : s + batch_size] if pairs[i][1]]
        if not chunk:
            continue
        seqs = [pairs[i][0] + pairs[i][1] for i in chunk]
        T = max(len(q) for q in seqs) - 1
        ids = torch.zeros(len(chunk), T, dtype=torch.long, device=dev)
        mask = torch.zeros(len(chunk), T, dtype=torch.long, device=dev)
        for b, q in enumerate(seqs):
            ids[b, : len(q) - 1] = torch.tensor(q[:-1], device=dev)
            mask[b, : len(q) - 1] = 1
        h, _ = model(ids, attention_mask=mask)  # (B, T, C)
        for b, i in enumerate(chunk):
            p, c = pairs[i]
            tgt = torch.tensor(c, device=dev)
            # Only the positions that predict the continuation go through the (large) LM head.
            logp = F.log_softmax(model.lm_head(h[b, len(p) - 1 : len(p) - 1 + len(c)]).float(), dim=-1)
            out[i] = logp.gather(-1, tgt[:, None])[:, 0].cpu().numpy()
    return out


def _mean(lp: np.ndarray) -> float:
    return float(lp.mean()) if len(lp) else 0.0


# ---- metrics -----------------------------------------------------------------------------------
def matthews(pred, gold) -> float:
    """Matthews correlation of binary predictions (0 when undefined)."""
    pred, gold = np.asarray(pred, bool), np.asarray(gold, bool)
    tp, tn = float(np.sum(pred & gold)), float(np.sum(~pred & ~gold))
    fp, fn = float(np.sum(pred & ~gold)), float(np.sum(~pred & gold))
    den = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return float((tp * tn - fp * fn) / den) if den > 0 else 0.0


def best_threshold(scores, labels) -> tuple[float, float]:
    """(threshold, Matthews) maximising the Matthews correlation of ``score > threshold`` on
    (scores, labels); candidates: below the minimum and midpoints of consecutive distinct scores."""
    s = np.asarray(scores, dtype=np.float64)
    if len(s) == 0:
        return 0.0, 0.0
    u = np.unique(s)
    cands = np.concatenate([[u[0] - 1.0], (u[:-1] + u[1:]) / 2])
    best = max(((matthews(s > t, labels), -i) for i, t in enumerate(cands)))
    return float(cands[-best[1]]), float(best[0])


# ---- the four heuristics ---------------------------------------------------------------------
# Encodings by tokenizer fingerprint, then text: a zero-shot curve scores the same texts on every
# snapshot of a pre-training (one tokenizer), so each text goes through the pipeline once.
_ENCODINGS: dict[str, dict[str, list[int]]] = {}
# The words the heuristics encode beside the examples' own texts (SST-2's prompt and label words);
# a prepared directory holds them encoded (gptbench.data.prepared).
WORDS = ("very", "positive", "negative")


def _enc(tokenizer: Tokenizer, texts: list[str]) -> list[list[int]]:
    cache = _ENCODINGS.setdefault(tokenizer.fingerprint, {})
    missing = list(dict.fromkeys(t for t in texts if t not in cache))
    if missing:
        cache.update(zip(missing, tokenizer.encode_batch(missing, num_workers=1)))
    return [cache[t] for t in texts]


def encode_examples(task: str, tokenizer: Tokenizer, records: list[dict]) -> list[dict]:
    """Every token id a heuristic reads of each record, with its label (and RACE's group): the
    sentence (CoLA, SST-2: ``text``); the article, question and answers (RACE: ``context``,
    ``question``, ``choices``); the sentence up to and including each candidate and the rest after
    it (DPRD: ``heads``, ``rests``). Scoring reads only these, so a prepared directory can hold them."""
    if task in ("cola", "sst2"):
        texts = _enc(tokenizer, [r["text"] for r in records])
        return [{"text": ids, "label": r["label"]} for r, ids in zip(records, texts)]
    if task == "race":
        examples = []
        for r in records:
            context, question = _enc(tokenizer, [r["context"], r.get("question") or ""])
            examples.append({"context": context, "question": question, "choices": _enc(tokenizer, list(r["choices"])),
                             "label": r["label"], "group": r.get("group")})  # fmt: skip
        return examples
    if task == "dprd":
        examples = []
        for r in records:
            pieces = [_enc(tokenizer, list(dprd_substitute(r["text"], r["pronoun"], c))) for c in r["choices"]]
            heads, rests = [h for h, _ in pieces], [rest for _, rest in pieces]
            examples.append({"heads": heads, "rests": rests, "label": r["label"]})
        return examples
    raise ConfigError(f"zero-shot task {task!r} unknown; known: {list(ZERO_SHOT_TASKS)}")


def example_features(task: str):
    """The ``datasets`` features of :func:`encode_examples`' examples of ``task``."""
    import datasets

    ids = datasets.Sequence(datasets.Value("int32"))
    label = datasets.Value("int64")
    return datasets.Features({
        "cola": {"text": ids, "label": label},
        "sst2": {"text": ids, "label": label},
        "race": {"context": ids, "question": ids, "choices": datasets.Sequence(ids), "label": label,
                 "group": datasets.Value("string")},
        "dprd": {"heads": datasets.Sequence(ids), "rests": datasets.Sequence(ids), "label": label},
    }[task])  # fmt: skip


def _cola_scores(model, tokenizer, encoded: list[list[int]], batch_size: int = 32) -> np.ndarray:
    n_ctx = model.config.n_ctx
    pairs = [fit_context([tokenizer.start_id], [ids], n_ctx) for ids in encoded]
    lps = continuation_logprobs_naive(model, [(p, c[0]) for p, c in pairs], batch_size)
    return np.array([_mean(lp) for lp in lps])


def cola_scores(model, tokenizer, texts: list[str], batch_size: int = 32) -> np.ndarray:
    """Mean token log-probability of each sentence, conditioned on the start token."""
    return _cola_scores(model, tokenizer, _enc(tokenizer, texts), batch_size)


def _sst2_predict(model, tokenizer, encoded: list[list[int]], shared: bool = True) -> list[int]:
    very, pos, neg = (tokenizer.encode(word) for word in WORDS)
    preds = []
    for ids in encoded:
        prefix, conts = fit_context([tokenizer.start_id] + ids + very, [pos, neg], model.config.n_ctx)
        lp = continuation_logprobs(model, prefix, conts) if shared else \
            continuation_logprobs_naive(model, [(prefix, c) for c in conts])  # fmt: skip
        preds.append(int(lp[0].sum() > lp[1].sum()))
    return preds


def sst2_predict(model, tokenizer, texts: list[str], shared: bool = True) -> list[int]:
    """1 where log P("positive" | [start] sentence very) > log P("negative" | ...), else 0."""
    return _sst2_predict(model, tokenizer, _enc(tokenizer, texts), shared)


def _race_scores(model, tokenizer, example: dict, shared: bool = True) -> list[float]:
    prefix, conts = fit_context([tokenizer.start_id] + example["context"] + example["question"], example["choices"],
                                model.config.n_ctx)  # fmt: skip
    lp = continuation_logprobs(model, prefix, conts) if shared else \
        continuation_logprobs_naive(model, [(prefix, c) for c in conts])  # fmt: skip
    return [_mean(x) for x in lp]


def race_scores(model, tokenizer, record: dict, shared: bool = True) -> list[float]:
    """Mean token log-probability of each answer given [start] article question."""
    return _race_scores(model, tokenizer, encode_examples("race", tokenizer, [record])[0], shared)


def race_predict(model, tokenizer, records: list[dict], shared: bool = True) -> list[int]:
    examples = encode_examples("race", tokenizer, records)
    return [int(np.argmax(_race_scores(model, tokenizer, e, shared))) for e in examples]


def dprd_substitute(text: str, pronoun: str, candidate: str) -> tuple[str, str]:
    """(sentence up to and including the candidate, rest of the sentence) with ``candidate`` in
    place of the first whole-word occurrence of ``pronoun`` (case-sensitive, else -insensitive)."""
    pattern = r"(?<!\w)" + re.escape(pronoun.strip()) + r"(?!\w)"
    m = re.search(pattern, text) or re.search(pattern, text, flags=re.IGNORECASE)
    if m is None:
        raise ValueError(f"pronoun {pronoun!r} not found as a word in {text!r}")
    return text[: m.start()] + candidate, text[m.end() :]


def _dprd_scores(model, tokenizer, example: dict) -> list[float]:
    pairs = []
    for head, rest in zip(example["heads"], example["rests"]):
        p, c = fit_context([tokenizer.start_id] + head, [rest], model.config.n_ctx)
        pairs.append((p, c[0]))
    return [_mean(x) for x in continuation_logprobs_naive(model, pairs)]


def dprd_scores(model, tokenizer, record: dict) -> list[float]:
    """Mean log-probability per token of the rest of the sentence after each substitution."""
    return _dprd_scores(model, tokenizer, encode_examples("dprd", tokenizer, [record])[0])


def dprd_predict(model, tokenizer, records: list[dict]) -> list[int]:
    return [int(np.argmax(_dprd_scores(model, tokenizer, e))) for e in encode_examples("dprd", tokenizer, records)]


# ---- evaluation ------------------------------------------------------------------------------
def normalised_score(task: str, score: float, paper: dict | None = None) -> float | None:
    """(score - random) / (sota - random), score a fraction (Matthews for CoLA); None where the
    paper gives no state of the art (DPRD)."""
    if paper is None:
        from gptbench.suite.paper import load_paper_numbers

        paper = load_paper_numbers()["zero_shot_sota"]
    entry = paper.get(task) if isinstance(paper, dict) else next((e for e in paper if e["task"] == task), None)
    if not entry or entry.get("sota") is None:
        return None
    rnd, sota = float(entry["random_baseline"]), float(entry["sota"])
    return (100.0 * score - rnd) / (sota - rnd)


def zero_shot_splits(task: str) -> tuple[str, ...]:
    """The splits a heuristic reads: the scored one, and CoLA's training split (its threshold)."""
    return (EVAL_SPLIT[task], *(("train",) if task == "cola" else ()))


def drawn_positions(n: int, max_examples: int | None) -> list[int]:
    """The positions of a split's ``n`` records that are scored: with ``max_examples``, a fixed
    random subset (seed 0, in file order), drawn like fine-tuning's evaluation subsets, so RACE's
    keeps both middle and high; else all."""
    from gptbench.data.task_data import random_subset

    return random_subset(list(range(n)), max_examples, 0) if max_examples else list(range(n))


def _read(task: str, split: str, data_root, max_examples):
    """A split's records at :func:`drawn_positions`."""
    from gptbench.tasks import get_task

    records, _ = get_task(task).read(split, Path(data_root) if data_root else None)
    return [records[i] for i in drawn_positions(len(records), max_examples)]


def load_examples(task: str, split: str, tokenizer, data_root, max_examples: int | None, prepared=None) -> list[dict]:
    """The scored examples of a split, encoded (:func:`encode_examples`): read from the raw files
    and encoded, or, with ``prepared`` (a :class:`gptbench.data.prepared.PreparedData`), its
    encoded rows at the same positions."""
    if prepared is None:
        return encode_examples(task, tokenizer, _read(task, split, data_root, max_examples))
    rows = prepared.zero_shot_split(task, split, tokenizer.fingerprint)
    return list(rows.select(drawn_positions(len(rows), max_examples)))


@torch.no_grad()
def evaluate_task(model, tokenizer, task: str, data_root, max_examples: int | None = None, shared: bool = True,
                  prepared=None) -> dict:  # fmt: skip
    if task not in ZERO_SHOT_TASKS:
        raise ConfigError(f"zero-shot task {task!r} unknown; known: {list(ZERO_SHOT_TASKS)}")
    require_next_token(model, "the zero-shot heuristics")
    model.eval()
    if prepared is not None:  # the words the heuristics encode come encoded too
        tokenizer = prepared.prompts(tokenizer)
    split = EVAL_SPLIT[task]
    examples = load_examples(task, split, tokenizer, data_root, max_examples, prepared)
    gold = np.array([e["label"] for e in examples])
    res: dict = {"split": split, "metric": METRIC[task], "n": len(examples)}
    if task == "cola":
        train = load_examples(task, "train", tokenizer, data_root, max_examples, prepared)
        t, train_mcc = best_threshold(_cola_scores(model, tokenizer, [e["text"] for e in train]),
                                      [e["label"] for e in train])  # fmt: skip
        pred = _cola_scores(model, tokenizer, [e["text"] for e in examples]) > t
        res.update(score=matthews(pred, gold), accuracy=float(np.mean(pred == gold)), threshold=t,
                   train_matthews=train_mcc, n_train=len(train))  # fmt: skip
    elif task == "sst2":
        pred = np.array(_sst2_predict(model, tokenizer, [e["text"] for e in examples], shared))
        res["score"] = float(np.mean(pred == gold))
    elif task == "race":
        pred = np.array([int(np.argmax(_race_scores(model, tokenizer, e, shared))) for e in examples])
        res["score"] = float(np.mean(pred == gold))
        for g in ("middle", "high"):
            sel = np.array([e.get("group") == g for e in examples])
            res[g] = float(np.mean(pred[sel] == gold[sel])) if sel.any() else None
    else:
        pred = np.array([int(np.argmax(_dprd_scores(model, tokenizer, e))) for e in examples])
        res["score"] = float(np.mean(pred == gold))
        res["note"] = "no published state of the art: raw accuracy only"
    res["normalised"] = normalised_score(task, res["score"])
    return res


def evaluate_zero_shot(model, tokenizer, tasks=ZERO_SHOT_TASKS, data_root=None, max_examples=None,
                       prepared=None) -> dict:  # fmt: skip
    """{task: {split, metric, score, normalised, n, (threshold, accuracy for cola; middle, high for
    race)}}; ``data_root`` defaults to $GPTBENCH_DATA; with ``prepared`` (a
    :class:`gptbench.data.prepared.PreparedData`) the examples and words come encoded from it and
    neither the raw files nor the tokenizer pipeline are read."""
    data_root = data_root or os.environ.get("GPTBENCH_DATA")
    unknown = [t for t in tasks if t not in ZERO_SHOT_TASKS]
    if unknown:
        raise ConfigError(f"zero-shot task(s) {unknown} unknown; known: {list(ZERO_SHOT_TASKS)}")
    return {t: evaluate_task(model, tokenizer, t, data_root, max_examples, prepared=prepared) for t in tasks}


def format_table(results: dict) -> str:
    lines = [f"{'task':6} {'split':5} {'metric':9} {'score':>7} {'normalised':>10} {'n':>6}  extra"]
    for t, r in results.items():
        norm = "n/a" if r["normalised"] is None else f"{r['normalised']:.3f}"
        extra = ""
        if t == "cola":
            extra = f"threshold={r['threshold']:.4f} accuracy={r['accuracy']:.4f}"
        elif t == "race":
            extra = " ".join(f"{g}={r[g]:.4f}" for g in ("middle", "high") if r.get(g) is not None)
        elif r.get("note"):
            extra = r["note"]
        lines.append(f"{t:6} {r['split']:5} {r['metric']:9} {r['score']:7.4f} {norm:>10} {r['n']:6d}  {extra}")
    return "\n".join(lines)
