"""GPT-1's text pipeline: ftfy -> standardisation -> spaCy English tokenizer -> lowercase -> BPE.

The BPE itself runs in Hugging Face ``tokenizers`` (Rust, parallel); the pre-tokenization
(ftfy + spaCy) is Python and runs in a process pool for large batches so both cores work.

Two vocabularies share the pipeline:
- ``Tokenizer.gpt1(encoder_json, merges_bpe)``: OpenAI's released 40,000-merge BPE;
- ``Tokenizer.train(texts_or_files, vocab_size)``: a BPE of the same style for small presets.

Special task tokens (start, delimiter, extract) get ids ``vocab_size + 0/1/2``, matching the
rows the model appends to its token embedding.
"""

from __future__ import annotations

import functools
import hashlib
import json
import multiprocessing
import operator
import os
import re
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import tokenizers
from tokenizers import pre_tokenizers, trainers
from tokenizers.models import BPE

UNK = "<unk>"
SPECIAL_TOKENS = ("_start_", "_delimiter_", "_classify_")  # names used by the released code
_META_FILE = "gptbench_tokenizer.json"
_BPE_FILE = "tokenizer.json"
_WORD_CACHE_SIZE = 1 << 20  # distinct words remembered by a Tokenizer (then it starts afresh)
# Raised whenever a change of the pre-tokenization changes the words of some text, so that caches
# keyed by Tokenizer.fingerprint are rebuilt: 2 = spaCy's special cases matched across spaces as
# on the whole text (before, pieces batched into one spaCy call could block each other's).
_PRE_TOKENIZATION_REVISION = 2
# Below this many new units a process pool costs more than it saves.
_PARALLEL_MIN_UNITS = 20_000


# The released pattern is a plain (not raw) string literal, so its '\\+' alternative compiles to
# '\+', a single literal plus (already matched by '\++'): runs of backslashes are NOT padded with
# spaces. This is the pattern exactly as the released code compiles it.
_PUNCTUATION_RUNS = re.compile(r"""(-+|~+|!+|"+|;+|\?+|\++|,+|\)+|\(+|\+|\/+|\*+|\[+|\]+|}+|{+|\|+|_+)""")
# The released standardisation's replacements, made before the padding.
_REPLACEMENTS = {"\u2014": "-", "\u2013": "-", "\u2015": "-", "\u2026": "...", "\u00b4": "'"}


def text_standardize(text: str) -> str:
    """The released code's standardisation: unify dashes/ellipses, pad punctuation runs with
    spaces (backslashes excepted, see ``_PUNCTUATION_RUNS``), turn every newline into its own
    token, collapse other whitespace.

    The same string as the released regular expressions, faster: joining the pieces of a split at
    the (captured) runs with spaces is exactly ``sub(" \\1 ")``, and without a newline the two
    whitespace passes and the strip are ``" ".join(text.split())`` (both use Unicode whitespace)."""
    for old, new in _REPLACEMENTS.items():
        text = text.replace(old, new)
    text = " ".join(_PUNCTUATION_RUNS.split(text))
    if "\n" not in text:
        return " ".join(text.split())
    text = re.sub(r"\s*\n\s*", " \n ", text)
    text = re.sub(r"[^\S\n]+", " ", text)
    return text.strip()


@functools.lru_cache(maxsize=1)
def _spacy_tokenizer():
    # spacy.blank("en") carries the English tokenizer rules without downloading a model; the
    # released code loaded 'en' with every pipeline component disabled, i.e. the same tokenizer.
    import spacy

    return spacy.blank("en").tokenizer


# Printable ASCII except '&', and newlines: text that none of ftfy's fixes can change (they act on
# HTML entities, terminal escapes, control characters, \r line breaks and non-ASCII characters;
# ASCII is NFC already).
_UNCHANGED_BY_FTFY = re.compile(r"[\x20-\x25\x27-\x7e\n]*")


def fix_text(text: str) -> str:
    """``ftfy.fix_text``, skipped where it provably changes nothing (most English text)."""
    if _UNCHANGED_BY_FTFY.fullmatch(text):
        return text
    import ftfy  # here, not at the top: a prepared directory's runs never import it

    return ftfy.fix_text(text)


# A whitespace run holding a line break: the standardisation makes each one a single '\n' word.
_LINE_BREAKS = re.compile(r"\s*\n\s*")


def pre_tokenize(text: str) -> list[str]:
    """Words (lowercased spaCy tokens) of one text, ready for BPE: spaCy's on the whole
    standardised text (:func:`pre_tokenize_batch` of one text)."""
    return pre_tokenize_batch([text], num_workers=1)[0]


_LINE_BREAK = "\n"  # in a text's list of pieces (which hold no whitespace): a line-break run, the word '\n'
_LINE_BREAK_WORDS = ("\n",)
_FIRST, _LAST = operator.itemgetter(0), operator.itemgetter(-1)
# Between the units of one spaCy call: a lone '\n' is a whitespace token of its own, and no
# special-case pattern holds a whitespace token (checked by _special_case_joins), so spaCy cannot
# join anything across it.
_UNIT_SEPARATOR = "\n"
_UNITS_PER_SPACY_CALL = 10_000
_UNIT_CACHE_SIZE = 1 << 20  # distinct units remembered (then the next batch starts afresh)
_known_units: dict[str, tuple[str, ...]] = {}  # unit (a piece, or pieces joined by spaces) -> its words


@dataclass(frozen=True)
class _SpecialCaseJoins:
    """Where spaCy's output for a piece depends on its neighbours.

    spaCy tokenizes each space-separated span on its own, then looks for its special cases made
    of several tokens (``''``, ``:)``, ``Mr.``, ``it's``, ...) as token sequences over the whole
    text, with a matcher that does not see single spaces. Overlapping matches are resolved longest
    first, then leftmost first, and a match is applied only when its text (spaces included) is a
    special case, so a match across a space is never applied: but it can block a match it
    overlaps. In ``x' ''Tis`` the match ``' '`` (across the space) is taken before the ``''`` of
    ``''Tis``, which stays two tokens: ``x ' ' ' tis``, where ``''Tis`` alone gives ``'' tis``.

    Such a match holds the last token of one piece and the first of the next as consecutive
    tokens of a pattern: one of ``pairs``. The last token of a piece is a suffix of its
    standardised text and the first a prefix, so two neighbours are independent unless the
    first's text ends with the left token of a pair whose right token starts the second's
    (:meth:`joins`). That needs the last character of the one piece and the first of the other
    (before the standardisation, which may replace them) to be one of ``edges``: a cheap test
    first."""

    pairs: frozenset[tuple[str, str]]
    edges: frozenset[str]  # two characters: a piece's last, its neighbour's first
    lefts_by_last_char: dict[str, tuple[str, ...]]
    rights_by_first_char: dict[str, tuple[str, ...]]

    def joins(self, left: str, right: str) -> bool:
        """Whether spaCy may match a special case across the space in ``left + " " + right``
        (both standardised)."""
        tails = [t for t in self.lefts_by_last_char.get(left[-1], ()) if left.endswith(t)]
        heads = [t for t in self.rights_by_first_char.get(right[0], ()) if right.startswith(t)]
        return any((tail, head) in self.pairs for tail in tails for head in heads)


@functools.lru_cache(maxsize=1)
def _special_case_joins() -> _SpecialCaseJoins:
    """The consecutive token pairs of spaCy's special-case patterns: each rule tokenized by the
    same affix rules without special cases, as spaCy makes the patterns it matches."""
    from spacy.tokenizer import Tokenizer as SpacyTokenizer

    tok = _spacy_tokenizer()
    affixes_only = SpacyTokenizer(tok.vocab, rules={}, prefix_search=tok.prefix_search, suffix_search=tok.suffix_search,
                                  infix_finditer=tok.infix_finditer, token_match=tok.token_match, url_match=tok.url_match)  # fmt: skip
    pairs = set()
    for rule in tok.rules:
        tokens = [t.text for t in affixes_only(rule)]
        pairs.update(zip(tokens, tokens[1:]))
    if any(not left or not right or any(c.isspace() for c in left + right) for left, right in pairs):
        raise RuntimeError(f"a spaCy special case joins whitespace or empty tokens: {_UNIT_SEPARATOR!r} cannot separate units")
    lefts, rights = sorted({a for a, _ in pairs}), sorted({b for _, b in pairs})
    last_chars = {c: {c} | {old for old, new in _REPLACEMENTS.items() if new[-1] == c} for c in {t[-1] for t in lefts}}
    first_chars = {c: {c} | {old for old, new in _REPLACEMENTS.items() if new[0] == c} for c in {t[0] for t in rights}}
    return _SpecialCaseJoins(
        frozenset(pairs),
        frozenset(a + b for left, right in pairs for a in last_chars[left[-1]] for b in first_chars[right[0]]),
        {c: tuple(t for t in lefts if t[-1] == c) for c in last_chars},
        {c: tuple(t for t in rights if t[0] == c) for c in first_chars},
    )


@functools.lru_cache(maxsize=1 << 16)
def _may_join(left_piece: str, right_piece: str) -> bool:
    return _special_case_joins().joins(text_standardize(left_piece), text_standardize(right_piece))


def _pieces(text: str) -> list[str]:
    """The whitespace-free pieces of a text after ftfy, with ``_LINE_BREAK`` between the pieces
    around each line-break run."""
    text = fix_text(text)
    segments = _LINE_BREAKS.split(text) if "\n" in text else (text,)
    pieces: list[str] = []
    for segment in segments:
        if pieces and not segment.isspace() and segment:
            pieces.append(_LINE_BREAK)
        pieces.extend(segment.split())
    return pieces


def _join_dependent(pieces: list[str]) -> list[str]:
    """A text's units: its pieces, each run of neighbours that spaCy may tokenize together
    (:class:`_SpecialCaseJoins`) joined by spaces into one unit; the list itself when none."""
    edges = _special_case_joins().edges
    if edges.isdisjoint(map(operator.add, map(_LAST, pieces), map(_FIRST, pieces[1:]))):  # most texts
        return pieces
    units = pieces[:1]
    for left, right in zip(pieces, pieces[1:]):
        if left[-1] + right[0] in edges and _may_join(left, right):
            units[-1] += " " + right
        else:
            units.append(right)
    return units


def _tokenize_units(units: Sequence[str]) -> list[tuple[str, ...]]:
    """Each unit's words: spaCy's lowercased tokens of the standardised unit. The units go through
    spaCy together, ``_UNIT_SEPARATOR`` between them, in as few calls as possible (a call per
    unit costs most of the time on unseen text): what spaCy gives on each unit alone."""
    texts = [text_standardize(unit) for unit in units]
    tokenize = _spacy_tokenizer()
    unit_words: list[tuple[str, ...]] = []
    for start in range(0, len(texts), _UNITS_PER_SPACY_CALL):
        words: list[str] = []
        for token in tokenize(_UNIT_SEPARATOR.join(texts[start : start + _UNITS_PER_SPACY_CALL])):
            if token.text == _UNIT_SEPARATOR:  # units hold no whitespace but single spaces: a separator
                unit_words.append(tuple(words))
                words = []
            else:
                words.append(token.text.lower())
        unit_words.append(tuple(words))
    if len(unit_words) != len(units):
        raise RuntimeError(f"spaCy gave {len(unit_words)} units for {len(units)}: the units cannot be told apart")
    return unit_words


def _learn(units: Iterable[str], num_workers: int) -> None:
    """Tokenize and remember the units not known yet, in ``num_workers`` processes when many."""
    new = [unit for unit in units if unit not in _known_units]
    if num_workers <= 1 or len(new) < _PARALLEL_MIN_UNITS:
        _known_units.update(zip(new, _tokenize_units(new)))
        return
    size = -(-len(new) // (num_workers * 4))
    chunks = [new[i : i + size] for i in range(0, len(new), size)]
    # fork: workers inherit the loaded spaCy tokenizer instead of re-importing it.
    with ProcessPoolExecutor(num_workers, mp_context=multiprocessing.get_context("fork")) as pool:
        for chunk, tokenized in zip(chunks, pool.map(_tokenize_units, chunks)):
            _known_units.update(zip(chunk, tokenized))


def pre_tokenize_batch(texts: Sequence[str], num_workers: int | None = None) -> list[list[str]]:
    """The words of each text, as spaCy gives them on the whole standardised text.

    The standardisation does not act across whitespace: its replacements and punctuation padding
    work inside runs of non-space characters and it only collapses whitespace (a run holding a
    line break to one '\n', any other to one space, the ends stripped). spaCy splits at spaces,
    and only its special-case matching may look across one, between neighbours that
    :class:`_SpecialCaseJoins` finds (rare). So each text is split at whitespace into pieces, the
    dependent neighbours are joined again into one unit, and each distinct unit is standardised
    and tokenized once and remembered for later batches; units not seen before go through spaCy
    together (:func:`_tokenize_units`), in ``num_workers`` processes (default: all cores) when
    there are many. A line-break run becomes the word '\n' between the words around it, as the
    released BPE maps spaCy's whitespace token '\n ' to the symbol '\n</w>'."""
    if len(_known_units) > _UNIT_CACHE_SIZE:
        _known_units.clear()
    num_workers = num_workers if num_workers is not None else (os.cpu_count() or 1)
    pieces = [_pieces(text) for text in texts]
    _learn(dict.fromkeys(p for ps in pieces for p in ps if p is not _LINE_BREAK), num_workers)
    units = [_join_dependent(ps) for ps in pieces]
    _learn(dict.fromkeys(u for us, ps in zip(units, pieces) if us is not ps for u in us if " " in u), num_workers)
    return [[w for u in us for w in (_LINE_BREAK_WORDS if u is _LINE_BREAK else _known_units[u])] for us in units]


class Tokenizer:
    """GPT-1 style tokenizer. Build with :meth:`gpt1`, :meth:`train` or :meth:`load`."""

    def __init__(self, bpe: tokenizers.Tokenizer, kind: str):
        self._bpe = bpe
        self.kind = kind
        self.vocab_size = bpe.get_vocab_size()  # BPE vocabulary, specials excluded
        self.unk_id = bpe.token_to_id(UNK)
        self.start_id, self.delimiter_id, self.extract_id = (
            self.vocab_size + i for i in range(len(SPECIAL_TOKENS))
        )
        self.n_special = len(SPECIAL_TOKENS)
        self._word_ids: dict[str, list[int]] = {}  # word -> BPE ids, see encode_words

    def __len__(self) -> int:
        return self.vocab_size + self.n_special

    # ---- construction ---------------------------------------------------------------------
    @classmethod
    def gpt1(cls, encoder_json: str | Path, merges_bpe: str | Path) -> "Tokenizer":
        """OpenAI's released vocabulary: encoder_bpe_40000.json + vocab_40000.bpe."""
        encoder_json, merges_bpe = Path(encoder_json), Path(merges_bpe)
        for path, what in ((encoder_json, "a JSON token -> id map"), (merges_bpe, "BPE merges")):
            if not path.is_file():
                raise FileNotFoundError(f"GPT-1 tokenizer file {path} not found (expected {what})")
        try:
            vocab = json.loads(encoder_json.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"{encoder_json}: not valid JSON ({e})") from None
        if not isinstance(vocab, dict) or UNK not in vocab:
            raise ValueError(f"{encoder_json}: expected a token -> id object containing {UNK!r}")
        # Header line first, trailing empty line last, as the released code reads it.
        lines = merges_bpe.read_text(encoding="utf-8").split("\n")[1:-1]
        merges = []
        for lineno, line in enumerate(lines, start=2):
            parts = line.split(" ")
            if len(parts) != 2:
                raise ValueError(f"{merges_bpe}:{lineno}: expected two symbols, got {line!r}")
            merges.append((parts[0], parts[1]))
        return cls(_bpe_tokenizer(BPE(vocab, merges, **_BPE_STYLE)), kind="gpt1")

    @classmethod
    def train(
        cls,
        texts_or_files: Iterable[str] | Sequence[str | Path],
        vocab_size: int,
        min_frequency: int = 2,
        num_workers: int | None = None,
    ) -> "Tokenizer":
        """Train a BPE of GPT-1's style (same pre-tokenization, '</w>' word ends).

        ``texts_or_files``: strings of text, or paths of text files (one document each).
        """
        if vocab_size < 2:
            raise ValueError(f"tokenizer vocab_size must be >= 2, got {vocab_size}")
        texts = [
            Path(x).read_text(encoding="utf-8") if isinstance(x, Path) else x
            for x in texts_or_files
        ]
        words = pre_tokenize_batch(texts, num_workers)
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=[UNK], show_progress=False
        )
        # The trainer's own end_of_word_suffix creates the 'x</w>' symbols in hash-map order, which
        # makes ties between equally frequent pairs (and so the merges) differ from run to run.
        # Marking a word's last character with a private-use twin instead puts those symbols in
        # the sorted base alphabet: the same merges as with '</w>', chosen deterministically.
        raw = tokenizers.Tokenizer(BPE(unk_token=UNK))
        raw.pre_tokenizer = pre_tokenizers.Split(" ", behavior="removed")
        raw.train_from_iterator((" ".join(_mark_word_end(w) for w in ws) for ws in words), trainer=trainer)
        model = json.loads(raw.to_str())["model"]
        vocab = {_unmark_word_end(token): i for token, i in model["vocab"].items()}
        merges = [tuple(_unmark_word_end(x) for x in (m.split(" ") if isinstance(m, str) else m)) for m in model["merges"]]
        return cls(_bpe_tokenizer(BPE(vocab, merges, **_BPE_STYLE)), kind="trained")

    @classmethod
    def load(cls, path: str | Path) -> "Tokenizer":
        """Load a tokenizer written by :meth:`save` (a directory)."""
        path = Path(path)
        meta_path, bpe_path = path / _META_FILE, path / _BPE_FILE
        if not meta_path.is_file() or not bpe_path.is_file():
            raise FileNotFoundError(
                f"{path} is not a gptbench tokenizer directory (expected {_META_FILE} and {_BPE_FILE})"
            )
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("special_tokens") != list(SPECIAL_TOKENS):
            raise ValueError(f"{meta_path}: unexpected special_tokens {meta.get('special_tokens')}")
        return cls(tokenizers.Tokenizer.from_file(str(bpe_path)), kind=meta["kind"])

    def save(self, path: str | Path) -> None:
        from gptbench.io import atomic_write_text

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path / _BPE_FILE, self._bpe.to_str())
        meta = {"kind": self.kind, "vocab_size": self.vocab_size, "special_tokens": list(SPECIAL_TOKENS)}
        atomic_write_text(path / _META_FILE, json.dumps(meta, indent=2))

    @functools.cached_property
    def fingerprint(self) -> str:
        """Stable hash of the vocabulary, merges and pre-tokenization revision, for the keys of
        caches of token ids (tokenized corpora, encoded task splits)."""
        text = f"pre-tokenization {_PRE_TOKENIZATION_REVISION}\n{self._bpe.to_str()}"
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]

    # ---- encoding -------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        return self.encode_words([pre_tokenize(text)])[0]

    def encode_batch(self, texts: Sequence[str], num_workers: int | None = None) -> list[list[int]]:
        """Encode many texts; pre-tokenization uses ``num_workers`` processes (default: all
        cores) when the texts hold many pieces it has not seen (:func:`pre_tokenize_batch`), and
        the BPE runs multi-threaded in Rust."""
        return self.encode_words(pre_tokenize_batch(list(texts), num_workers))

    def encode_words(self, words: Sequence[Sequence[str]]) -> list[list[int]]:
        """BPE of already pre-tokenized texts (lists of words). BPE works word by word, so each
        distinct word is encoded once (in Rust) and remembered, as the released encoder does."""
        known = self._word_ids
        unseen = list(dict.fromkeys(w for ws in words for w in ws if w not in known))
        if len(known) + len(unseen) > _WORD_CACHE_SIZE:
            known.clear()
            unseen = list(dict.fromkeys(w for ws in words for w in ws))
        for word, encoding in zip(unseen, self._bpe.encode_batch([[w] for w in unseen], is_pretokenized=True)):
            known[word] = encoding.ids
        return [[i for w in ws for i in known[w]] for ws in words]

    def decode(self, ids: Iterable[int]) -> str:
        """Readable text: BPE pieces joined, '</w>' as word boundaries, specials by name."""
        pieces = []
        for i in ids:
            i = int(i)
            if self.vocab_size <= i < len(self):
                pieces.append(f" {SPECIAL_TOKENS[i - self.vocab_size]} ")
            else:
                token = self._bpe.id_to_token(i)
                if token is None:
                    raise ValueError(f"token id {i} is outside the vocabulary (size {len(self)})")
                pieces.append(token.replace("</w>", " "))
        text = re.sub(r"[^\S\n]+", " ", "".join(pieces))
        return re.sub(r" ?\n ?", "\n", text).strip()

    def id_to_token(self, i: int) -> str:
        if self.vocab_size <= i < len(self):
            return SPECIAL_TOKENS[i - self.vocab_size]
        return self._bpe.id_to_token(i)


_BPE_STYLE = dict(unk_token=UNK, end_of_word_suffix="</w>", fuse_unk=False)
_WORD_END = 0xF0000  # supplementary private-use plane: word-final twins of U+0000..U+FFFD


def _mark_word_end(word: str) -> str:
    last = ord(word[-1])
    return word[:-1] + chr(_WORD_END + last) if last < 0xFFFE else word


def _unmark_word_end(symbol: str) -> str:
    last = ord(symbol[-1]) - _WORD_END
    return symbol[:-1] + chr(last) + "</w>" if 0 <= last < 0xFFFE else symbol


def _bpe_tokenizer(model: BPE) -> tokenizers.Tokenizer:
    bpe = tokenizers.Tokenizer(model)
    bpe.pre_tokenizer = pre_tokenizers.Split(" ", behavior="removed")
    return bpe
