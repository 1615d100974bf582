import csv
import random

import pytest
from conftest import CORPUS, DATA, GPT1
from gptbench.suite.released_text_encoder import TextEncoder

from gptbench import Tokenizer
from gptbench.data.corpus import book_text


@pytest.fixture(scope="module")
def reference():
    return TextEncoder(GPT1 / "encoder_bpe_40000.json", GPT1 / "vocab_40000.bpe")


def real_sentences(n_book_lines=6000, n_task=4000) -> list[str]:
    """Paragraphs of real books plus sentences of real task data."""
    rng = random.Random(0)
    books = sorted(CORPUS.rglob("*.txt"))
    lines = []
    for book in rng.sample(books, 12):
        lines += book_text(book).split("\n")
    texts = rng.sample(lines, min(n_book_lines, len(lines)))
    for path, col in (("glue/SST-2/train.tsv", 0), ("glue/RTE/train.tsv", 1), ("glue/MRPC/train.tsv", 3),
                      ("glue/CoLA/train.tsv", 3), ("glue/STS-B/train.tsv", 7)):  # fmt: skip
        with open(DATA / path, encoding="utf-8-sig") as f:
            rows = [r[col] for r in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE) if len(r) > col]
        texts += rng.sample(rows[1:], n_task // 5)
    return texts


def test_known_ids(gpt1_tokenizer, reference):
    text = "It's a charming — and often affecting… journey.\nNew line!"
    ids = gpt1_tokenizer.encode(text)
    assert ids == reference.encode(text)
    assert 40477 in ids  # '\n</w>'
    assert gpt1_tokenizer.decode(ids) == "it 's a charming - and often affecting ... journey .\nnew line !"


BACKSLASH_TEXTS = [
    r"What is \frac{1}{2} + \sqrt{x} in LaTeX?",  # QQP-style question with LaTeX
    r"Open C:\Users\me\file.txt and \\server\share",  # Windows paths, a UNC path
    "a \\ b \\\\ c\\d \\+e",  # lone, doubled and backslash-plus runs
]


def test_backslashes_follow_the_released_pattern(gpt1_tokenizer, reference):
    """The released pattern compiles '\\\\+' to '\\+' (a plus): backslashes are never padded."""
    from gptbench.data.tokenizer import text_standardize

    assert text_standardize(r"C:\dir\\file a+b") == r"C:\dir\\file a + b"
    for text in BACKSLASH_TEXTS:
        assert gpt1_tokenizer.encode(text) == reference.encode(text), text
    # Ids as the released pattern gives them: '\\frac{' stays one spaCy token, not '\\ frac {'.
    assert gpt1_tokenizer.encode(r"\frac") == reference.encode(r"\frac") != reference.encode(r"\ frac")


def test_special_tokens_follow_the_vocabulary(gpt1_tokenizer):
    t = gpt1_tokenizer
    assert t.vocab_size == 40478 and len(t) == 40481
    assert (t.start_id, t.delimiter_id, t.extract_id) == (40478, 40479, 40480)
    assert t.decode([t.start_id, t.extract_id]) == "_start_ _classify_"


@pytest.mark.parametrize("text", ["", "   ", "\n\n", "\x00\x1f\u200b", "🙂 中文 ﬁ ligature", "a" * 5000, "\ud800"])
def test_odd_input_does_not_crash(gpt1_tokenizer, text):
    ids = gpt1_tokenizer.encode(text)
    assert all(0 <= i < gpt1_tokenizer.vocab_size for i in ids)
    if not text.strip():
        assert ids == []


def test_parallel_batch_equals_sequential(gpt1_tokenizer, monkeypatch):
    from gptbench.data import tokenizer

    texts = real_sentences(n_book_lines=2500, n_task=0)
    sequential = [gpt1_tokenizer.encode(t) for t in texts]
    monkeypatch.setattr(tokenizer, "_known_units", {})  # every piece new: the pool tokenizes them all
    monkeypatch.setattr(tokenizer, "_PARALLEL_MIN_UNITS", 1)
    assert gpt1_tokenizer.encode_batch(texts, num_workers=2) == sequential
    assert len(tokenizer._known_units) > 10_000  # the workers' pieces, remembered by this process


def test_train_save_load(tmp_path):
    books = sorted(CORPUS.rglob("*.txt"))[:2]
    texts = [book_text(b)[:100_000] for b in books]
    tok = Tokenizer.train(texts, vocab_size=600)
    assert tok.kind == "trained" and 300 < tok.vocab_size <= 600
    assert Tokenizer.train(texts, vocab_size=600).fingerprint == tok.fingerprint  # deterministic merges
    sample = "The quick brown fox, said Alice, jumped."
    ids = tok.encode(sample)
    assert tok.decode(ids) == "the quick brown fox , said alice , jumped ."
    tok.save(tmp_path)
    again = Tokenizer.load(tmp_path)
    assert again.encode(sample) == ids and again.fingerprint == tok.fingerprint
    assert (again.start_id, again.extract_id) == (tok.vocab_size, tok.vocab_size + 2)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="encoder_bpe_40000.json"):
        Tokenizer.gpt1(tmp_path / "encoder_bpe_40000.json", GPT1 / "vocab_40000.bpe")
    bad = tmp_path / "merges.bpe"
    bad.write_text("#version\nt h\nthree symbols here\n")
    with pytest.raises(ValueError, match="merges.bpe:3: expected two symbols"):
        Tokenizer.gpt1(GPT1 / "encoder_bpe_40000.json", bad)
    with pytest.raises(FileNotFoundError, match="not a gptbench tokenizer directory"):
        Tokenizer.load(tmp_path)


def whole_text_words(text: str) -> list[str]:
    """GPT-1's pre-tokenization with spaCy run on the whole standardised text (the released way)."""
    import ftfy

    from gptbench.data.tokenizer import _spacy_tokenizer, text_standardize

    words = []
    for token in _spacy_tokenizer()(text_standardize(ftfy.fix_text(text))):
        if token.text.isspace():
            words += ["\n"] if "\n" in token.text else []
        else:
            words.append(token.text.lower())
    return words


@pytest.mark.parametrize("batched", [False, True])
def test_spacy_per_piece_equals_spacy_on_the_whole_text(batched, monkeypatch):
    """Pre-tokenization runs spaCy once per distinct space-separated piece (or run of neighbours
    whose special cases spaCy may match across the space), the new ones of a batch in one call;
    on real book paragraphs and task sentences (and the awkward cases) the words are exactly
    spaCy's on the whole text, text by text or in one batch."""
    from gptbench.data import tokenizer

    monkeypatch.setattr(tokenizer, "_known_units", {})  # every piece new
    awkward = ["a  b\t\tc\r\nd \u00a0e\u2003f", "\n\n lead and trail \n", "U.S. Mr. e.g. don't can't 'tis ''quoted''",
               "He said' ''Tis so", "tongue.' ''Twas", "Doin ''x", "( :>x", "x: o.Ox", "x:o) :",
               "http://example.com/a?b=c :) <3 a--b c---d (e)", "", " ", "\u2026\u2014\u00b4x", "10:30 $5.00 3pm"]  # fmt: skip
    texts = real_sentences(4000, 2000) + awkward
    words = tokenizer.pre_tokenize_batch(texts, num_workers=1) if batched else map(tokenizer.pre_tokenize, texts)
    mismatches = [t for t, w in zip(texts, words) if w != whole_text_words(t)]
    assert not mismatches, mismatches[:3]


def test_ftfy_is_skipped_only_where_it_changes_nothing():
    import ftfy

    from gptbench.data.tokenizer import _UNCHANGED_BY_FTFY, fix_text

    texts = real_sentences(3000, 1000)
    skipped = [t for t in texts if _UNCHANGED_BY_FTFY.fullmatch(t)]
    assert len(skipped) > len(texts) / 2 and all(ftfy.fix_text(t) == t for t in skipped)
    for text in ("a &amp; b", "x\r\ny", "\x1b[31mred", "ctl\x07", "caf\u00e9", "\u201cquoted\u201d", "\ufb01ne"):
        assert not _UNCHANGED_BY_FTFY.fullmatch(text) and fix_text(text) == ftfy.fix_text(text)
    assert fix_text("a &amp; b") == "a & b"


def test_standardisation_equals_the_released_regular_expressions():
    from gptbench.data.tokenizer import text_standardize
    from gptbench.suite import released_text_encoder as released

    awkward = ["a  b\t\tc\r\nd \u00a0e\u2003f\x1c g\x85h\u2028i", "\n\n lead \n\n and trail \n ", "!!??((x))--y__z",
               "\\\\ back \\+ slash", "", " ", "\u2026\u2014\u00b4x", "no newline, just (punctuation) here!"]  # fmt: skip
    for text in real_sentences(3000, 1000) + awkward:
        assert text_standardize(text) == released.text_standardize(text), repr(text)
