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
import os
import re
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import tokenizers
from tokenizers import pre_tokenizers, trainers
from tokenizers.models import BPE

UNK = "<unk>"
SPECIAL_TOKENS = ("_start_", "_delimiter_", "_classify_")  # names used by the released code
_META_FILE = "gptbench_tokenizer.json"
_BPE_FILE = "tokenizer.json"
_WORD_CACHE_SIZE = 1 << 20  # distinct words remembered by a Tokenizer (then it starts afresh)
# Below this many new pieces a process pool costs more than it saves.
_PARALLEL_MIN_PIECES = 20_000


# The released pattern is a plain (not raw) string literal, so its '\\+' alternative compiles to
# '\+', a single literal plus (already matched by '\++'): runs of backslashes are NOT padded with
# spaces. This is the pattern exactly as the released code compiles it.
_PUNCTUATION_RUNS = re.compile(r"""(-+|~+|!+|"+|;+|\?+|\++|,+|\)+|\(+|\+|\/+|\*+|\[+|\]+|}+|{+|\|+|_+)""")


def text_standardize(text: str) -> str:
    """The released code's standardisation: unify dashes/ellipses, pad punctuation runs with
    spaces (backslashes excepted, see ``_PUNCTUATION_RUNS``), turn every newline into its own
    token, collapse other whitespace.

    The same string as the released regular expressions, faster: joining the pieces of a split at
    the (captured) runs with spaces is exactly ``sub(" \\1 ")``, and without a newline the two
    whitespace passes and the strip are ``" ".join(text.split())`` (both use Unicode whitespace)."""
    text = text.replace("\u2014", "-").replace("\u2013", "-").replace("\u2015", "-")
    text = text.replace("\u2026", "...").replace("\u00b4", "'")
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


_LINE_BREAK = None  # in a text's list of pieces: a line-break run, the word '\n'
_LINE_BREAK_WORDS = ("\n",)
_piece_words: dict[str, tuple[str, ...]] = {}  # piece -> its words, see pre_tokenize_batch
_PIECE_CACHE_SIZE = 1 << 20  # distinct pieces remembered (then it starts afresh)
_SPACY_CALL_PARTS = 10_000  # parts of new pieces tokenized by one spaCy call


def _pieces(text: str) -> list[str | None]:
    """The whitespace-free pieces of a text after ftfy, with ``_LINE_BREAK`` between the pieces
    around each line-break run."""
    text = fix_text(text)
    segments = _LINE_BREAKS.split(text) if "\n" in text else (text,)
    pieces: list[str | None] = []
    for segment in segments:
        if pieces and not segment.isspace() and segment:
            pieces.append(_LINE_BREAK)
        pieces.extend(segment.split())
    return pieces


def _words_of_pieces(pieces: Sequence[str]) -> list[tuple[str, ...]]:
    """Each piece's words: spaCy's lowercased tokens of the piece, standardised first (which may
    pad punctuation with spaces: the piece's parts). The parts of all pieces go through spaCy
    together, joined by single spaces, in as few calls as possible (a call per piece costs most of
    the time on unseen text); a token followed by a space ends its part."""
    parts_of = [text_standardize(piece).split(" ") for piece in pieces]
    parts = [part for piece_parts in parts_of for part in piece_parts]
    tokenize = _spacy_tokenizer()
    part_words: list[tuple[str, ...]] = []
    for start in range(0, len(parts), _SPACY_CALL_PARTS):
        words: list[str] = []
        for token in tokenize(" ".join(parts[start : start + _SPACY_CALL_PARTS])):
            words.append(token.text.lower())
            if token.whitespace_:
                part_words.append(tuple(words))
                words = []
        part_words.append(tuple(words))
    if len(part_words) != len(parts):  # a part holds no whitespace, so its last token is followed by the space
        raise RuntimeError(f"spaCy gave {len(part_words)} parts for {len(parts)}: the pieces cannot be told apart")
    out, i = [], 0
    for piece_parts in parts_of:
        n = len(piece_parts)
        out.append(part_words[i] if n == 1 else sum(part_words[i : i + n], ()))
        i += n
    return out


def pre_tokenize_batch(texts: Sequence[str], num_workers: int | None = None) -> list[list[str]]:
    """The words of each text, as spaCy gives them on the whole standardised text.

    Neither the standardisation nor spaCy acts across whitespace: the standardisation's
    replacements and punctuation padding work inside runs of non-space characters and only
    collapse whitespace (a run holding a line break to one '\n', any other to one space, the ends
    stripped), and spaCy's prefix, suffix, infix and special-case rules never cross a space. So each
    text is split at whitespace and each distinct piece is standardised and tokenized once and
    remembered for later batches; pieces not seen before go through spaCy together
    (:func:`_words_of_pieces`), in ``num_workers`` processes (default: all cores) when there are
    many. A line-break run becomes the word '\n' between the words around it, as the released BPE
    maps spaCy's whitespace token '\n ' to the symbol '\n</w>'."""
    pieces = [_pieces(text) for text in texts]
    distinct = list(dict.fromkeys(p for ps in pieces for p in ps if p is not _LINE_BREAK))
    new = [p for p in distinct if p not in _piece_words]
    if len(_piece_words) + len(new) > _PIECE_CACHE_SIZE:
        _piece_words.clear()
        new = distinct
    num_workers = num_workers if num_workers is not None else (os.cpu_count() or 1)
    if num_workers <= 1 or len(new) < _PARALLEL_MIN_PIECES:
        _piece_words.update(zip(new, _words_of_pieces(new)))
    else:
        size = -(-len(new) // (num_workers * 4))
        chunks = [new[i : i + size] for i in range(0, len(new), size)]
        # fork: workers inherit the loaded spaCy tokenizer instead of re-importing it.
        with ProcessPoolExecutor(num_workers, mp_context=multiprocessing.get_context("fork")) as pool:
            for chunk, words in zip(chunks, pool.map(_words_of_pieces, chunks)):
                _piece_words.update(zip(chunk, words))
    return [[w for p in ps for w in (_LINE_BREAK_WORDS if p is _LINE_BREAK else _piece_words[p])] for ps in pieces]


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
        """Stable hash of the vocabulary and merges, for cache keys."""
        return hashlib.sha256(self._bpe.to_str().encode("utf-8")).hexdigest()[:16]

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
