"""A gptbench tokenizer as files ``transformers`` reads: ``tokenizer.json`` + ``tokenizer_config.json``
(and, for GPT-1's released vocabulary, the ``vocab.json`` + ``merges.txt`` of ``OpenAIGPTTokenizer``).

gptbench's own pipeline is GPT-1's: ftfy -> standardisation -> spaCy's English tokenizer ->
lowercase -> BPE. ``tokenizers`` cannot run ftfy or spaCy, so ``tokenizer.json`` carries the same
BPE (vocabulary, merges, '</w>' word ends, the three task tokens at the same ids) behind a
rule-based imitation of that pre-tokenization: the released standardisation exactly (dashes,
ellipses, the padded punctuation runs, one token per line break), lowercasing, and spaCy's common
English rules (contractions such as do|n't and it|'s, leading and trailing quotes and punctuation,
sentence-final periods, abbreviations such as Mr. and U.S. kept whole). Where a text needs more of
ftfy or spaCy than that (mojibake, rare exceptions), its ids can differ; the agreement measured on
book paragraphs and task sentences is in the README and tested. For ids identical to training,
use :class:`gptbench.Tokenizer` (``Tokenizer.load(model_dir + "/tokenizer")``).
"""

from __future__ import annotations

import json
from pathlib import Path

import tokenizers
from tokenizers import Regex, decoders, normalizers, pre_tokenizers

from gptbench.data.tokenizer import _PUNCTUATION_RUNS, SPECIAL_TOKENS, UNK, Tokenizer
from gptbench.io import atomic_write_json, atomic_write_text

# Abbreviations spaCy's English exceptions keep whole with their period (matched after lowercasing).
_ABBREVIATIONS = ("mr", "mrs", "ms", "dr", "st", "jr", "sr", "vs", "mt", "messrs", "jan", "feb", "mar", "apr", "jun",
                  "jul", "aug", "sep", "sept", "oct", "nov", "dec", "co", "corp", "inc", "ltd", "bros", "gen", "gov",
                  "rev", "sen", "rep", "e.g", "i.e", "a.m", "p.m")  # fmt: skip
_ABBREVIATION = "|".join(a.replace(".", r"\.") for a in _ABBREVIATIONS)
# The words spaCy splits before 've, 're, 'll, 'd and 'm ('s and n't split after any word).
_PRONOUNS = ("i", "you", "he", "she", "it", "we", "they", "who", "what", "where", "when", "why", "how", "there", "that",
             "this", "y'all", "could", "should", "would", "might", "must")  # fmt: skip
_AFTER_PRONOUN = "|".join(rf"\A{w}" for w in _PRONOUNS)
# Runs the standardisation pads as one piece but spaCy splits mark by mark (-, ~, / and | runs stay).
_SPLIT_RUNS = r"""[!";?+,)(*\[\]{}_]"""

# Pieces isolated within each whitespace-separated word: first the prefixes, then (first match wins)
# spaCy's special cases, suffixes and infixes.
_CLOSING = r"""[.,:;!?'"%>)\]}]"""
_PREFIXES = "|".join([
    r"\A''\z",  # a closing double quote written as two apostrophes
    r"\.{2,}",  # an ellipsis, anywhere
    r"""\A[`'"$#&<>=@%*](?!(?:s|re|ve|ll|d|m|em)\z)""",  # a leading quote or symbol (not 's, 'em)
])  # fmt: skip
_SPACY_LIKE = "|".join([
    r"\A\.{2,}\z",  # an ellipsis stays whole
    rf"\A(?:{_ABBREVIATION})\.\z",  # an abbreviation stays whole
    r"\A(?:[a-z]\.)+\z|\A[a-z0-9]\.[a-z]\.\z",  # initials, u.s., ph.d., 1.c.
    rf"(?<=[a-z0-9])(?:'s|n't)(?={_CLOSING}*\z)",  # it|'s, 1990|'s, do|n't, before any closing punctuation
    rf"(?<={_AFTER_PRONOUN})(?:'ve|'re|'ll|'d|'m)(?={_CLOSING}*\z)",  # i|'m, they|'ve, we|'ll
    r"(?<=\Acan)not\z|(?<=\Agon)na\z|(?<=\Agot)ta\z",  # spaCy's special cases: can|not, gon|na, got|ta
    r"(?<=[a-z0-9])[:<>=](?=[a-z])",  # infixes: mhc|:|antigen, x|=|y
    rf"{_CLOSING}(?={_CLOSING}*\z)",  # closing punctuation, one mark at a time
])  # fmt: skip


MASK = "[MASK]"  # the BERT encoder's extra special token, after the three task tokens


def transformers_tokenizer(tokenizer: Tokenizer, with_mask: bool = False) -> tokenizers.Tokenizer:
    """The ``tokenizers`` pipeline exported as ``tokenizer.json``: the same BPE and task-token ids
    (and [MASK] after them for the BERT encoder), an imitation of GPT-1's pre-tokenization, and a
    decoder that turns '</w>' back into spaces."""
    bpe = tokenizers.Tokenizer.from_str(tokenizer._bpe.to_str())
    bpe.normalizer = normalizers.Sequence([
        normalizers.NFC(),
        # ftfy's uncurl_quotes and fix_latin_ligatures
        *(normalizers.Replace(a, b) for a, b in (("\u2018", "'"), ("\u2019", "'"), ("\u201a", "'"), ("\u201b", "'"),
                                                 ("\u201c", '"'), ("\u201d", '"'), ("\u201e", '"'), ("\u201f", '"'),
                                                 ("\ufb01", "fi"), ("\ufb02", "fl"), ("\ufb00", "ff"))),
        # the released text_standardize
        *(normalizers.Replace(a, b) for a, b in (("\u2014", "-"), ("\u2013", "-"), ("\u2015", "-"),
                                                 ("\u2026", "..."), ("\u00b4", "'"))),
        normalizers.Replace(Regex(r"\s*\n\s*"), "\n"),  # one token per run of line breaks
        normalizers.Lowercase(),
    ])  # fmt: skip
    bpe.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"\n"), behavior="isolated"),
        pre_tokenizers.Split(Regex(r"[^\S\n]+"), behavior="removed"),
        pre_tokenizers.Split(Regex(_PUNCTUATION_RUNS.pattern), behavior="isolated"),
        pre_tokenizers.Split(Regex(_SPLIT_RUNS), behavior="isolated"),
        pre_tokenizers.Split(Regex(_PREFIXES), behavior="isolated"),
        pre_tokenizers.Split(Regex(_SPACY_LIKE), behavior="isolated"),
    ])  # fmt: skip
    bpe.decoder = decoders.BPEDecoder(suffix="</w>")
    specials = (*SPECIAL_TOKENS, MASK) if with_mask else SPECIAL_TOKENS
    added = bpe.add_special_tokens([tokenizers.AddedToken(t, special=True, normalized=False) for t in specials])
    ids = [bpe.token_to_id(t) for t in specials]
    if added != len(specials) or ids != list(range(tokenizer.start_id, tokenizer.start_id + len(specials))):
        raise ValueError(f"special tokens got ids {ids}, expected {tokenizer.start_id}..")
    return bpe


def save_for_transformers(tokenizer: Tokenizer, directory: str | Path, n_ctx: int, with_mask: bool = False) -> list[Path]:
    """Write the files ``AutoTokenizer.from_pretrained(directory)`` reads; returns their paths.

    Special tokens: ``_start_``, ``_delimiter_``, ``_classify_`` (GPT-1's task tokens, ids
    vocab_size + 0/1/2) as additional special tokens, ``<unk>`` as unknown. GPT-1 has no padding
    token; batches pad with ``<unk>`` under an attention mask (padded positions are never read).
    ``with_mask`` (the BERT encoder): also ``[MASK]`` (id vocab_size + 3) as the mask token, with
    ``_start_`` as [CLS] and ``_delimiter_`` as [SEP], so ``pipeline("fill-mask")`` works."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = [directory / "tokenizer.json", directory / "tokenizer_config.json"]
    atomic_write_text(written[0], transformers_tokenizer(tokenizer, with_mask).to_str(pretty=True))
    encoder_tokens = {"mask_token": MASK, "cls_token": SPECIAL_TOKENS[0], "sep_token": SPECIAL_TOKENS[1]}
    atomic_write_json(written[1], {
        **(encoder_tokens if with_mask else {}),
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": n_ctx,
        "unk_token": UNK,
        "pad_token": UNK,
        "additional_special_tokens": list(SPECIAL_TOKENS),
        "clean_up_tokenization_spaces": False,
        "padding_side": "right",
        "gptbench_tokenizer": "tokenizer/ (gptbench.Tokenizer.load): GPT-1's exact pipeline, ftfy + spaCy",
    })  # fmt: skip
    if tokenizer.kind == "gpt1":  # also the files OpenAIGPTTokenizer reads
        model = json.loads(tokenizer._bpe.to_str())["model"]
        merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
        written += [directory / "vocab.json", directory / "merges.txt"]
        atomic_write_json(written[2], model["vocab"])
        atomic_write_text(written[3], "#version: 0.2\n" + "\n".join(merges) + "\n")
    return written


def check_transformers_tokenizer(directory: str | Path, n_tokens: int) -> None:
    """Raise ValueError naming the file when ``directory`` lacks ``tokenizer.json`` or its vocabulary
    (task tokens included) does not match the model's ``n_tokens`` embedding rows."""
    path = Path(directory) / "tokenizer.json"
    if not path.is_file():
        raise ValueError(f"{path}: missing; the model directory has no tokenizer for transformers "
                         "(re-export it with gptbench)")  # fmt: skip
    size = tokenizers.Tokenizer.from_file(str(path)).get_vocab_size(with_added_tokens=True)
    if size != n_tokens:
        raise ValueError(f"{path}: {size} tokens, but the model's embedding has {n_tokens} rows")
