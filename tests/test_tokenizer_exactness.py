"""GPT-1's tokenizer gives exactly the released pipeline's ids: on paragraphs and chunks of every
local book and on the text fields of every task whose data is present, encoded in batches as the
corpus and task pipelines do and text by text; and on the texts where spaCy's tokens of a piece
depend on its neighbour (a special case matched across a space), which batching once got wrong.

The reference is :mod:`gptbench.suite.released_text_encoder` (spaCy on the whole text, then the
released pure-Python BPE). Each comparison starts with nothing remembered, so every text's pieces
go through spaCy in the calls being tested."""

import random
import re

import pytest
from conftest import CORPUS, DATA, GPT1

from gptbench.data import tokenizer
from gptbench.data.corpus import book_text, text_chunks
from gptbench.suite.released_text_encoder import TextEncoder
from gptbench.tasks import TASKS
from gptbench.tasks.base import TRANSFORMATION_FIELDS

PARAGRAPHS_PER_BOOK = 150
CHUNKS_PER_BOOK = 2  # of consecutive paragraphs, about 20,000 characters each
RECORDS_PER_SPLIT = 1000
# An apostrophe or quote, a space, and another non-word character: where spaCy's special cases may
# match across the space (implementation-independent; 4% of the corpus's paragraphs, all taken).
QUOTE_BY_PUNCTUATION = re.compile(r"[^\w\s]\s+['\u2018\u2019]|['\u2018\u2019]\s+[^\w\s]")
MODES = ("batch", "per_text")

# Texts of the local corpus that batching (commit f6d7234) or one spaCy call per piece (before it)
# tokenized differently from the released pipeline: a piece starting with two apostrophes (an
# opening quote, then an elided letter) whose special case '' was blocked by a match across the
# space before it: with an unrelated piece ending in ' put there by the batch, or, in the released
# pipeline itself, with the real neighbour (so there ' ''Twas gives ' ' ' twas, and alone '' twas).
CORPUS_CASES = [
    "''Tis the nature of my trade",
    "'What cheer!' all the neighbours cried. ''Oo are you going to meet, Bill? 'Ave you bought the street?'",
    "'I had,' I says, ''till I was shot in the head.' 'Shot in the head!'",
    "the snap of the air to your tongue.' ''Twas me own eyes that beheld it, an' if Sitka Charley was here",
    "The waterhole's a strikin' locality.' ''Tain't bad. Jest be there in an hour",
    "\u2018\u2019Ere\u2019s a guy!\u2019",
    "he went on, with a sad little chuckle, ''deed, I doubt if I could.'",
    "moulting freely over both of us. ''E's the sort of gent as maikes a body remember",
    "'Be careful,' says the missis. ''E's that timid,' she says, 'you wouldn't believe,' she says.",
    "'Ho, don't you fret,' I says to her, ''im and me understands each other.",
    "''Ow about that?' he said. 'Isn't that crisp?'",
]


@pytest.fixture(scope="module")
def released():
    return TextEncoder(GPT1 / "encoder_bpe_40000.json", GPT1 / "vocab_40000.bpe")


@pytest.fixture
def nothing_remembered(monkeypatch):
    """The tokenizer's memory of pieces, empty: every piece goes through spaCy again."""
    monkeypatch.setattr(tokenizer, "_known_units", {})


def encode(tok, texts: list[str], mode: str) -> list[list[int]]:
    """``texts`` encoded in one batch (as the corpus and task pipelines do) or one by one, with
    nothing remembered before."""
    tokenizer._known_units.clear()
    if mode == "batch":
        return tok.encode_batch(texts)
    ids = []
    for text in texts:
        tokenizer._known_units.clear()  # the text's pieces go through spaCy in their own call
        ids.append(tok.encode(text))
    return ids


def assert_same_ids(tok, texts: list[str], ours: list[list[int]], reference: list[list[int]], what: str) -> None:
    """Equal ids text by text; else a message with the first differing text and both token lists
    (around the first difference when they are long)."""
    assert len(ours) == len(reference) == len(texts)
    differing = [i for i, (a, b) in enumerate(zip(ours, reference)) if a != b]
    if not differing:
        return
    i = differing[0]
    a, b = ours[i], reference[i]
    at = next((k for k, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    start, stop = (0, None) if max(len(a), len(b)) <= 80 else (max(0, at - 20), at + 40)
    text = texts[i] if len(texts[i]) <= 2000 else texts[i][:2000] + "..."
    pytest.fail(
        f"{what}: {len(differing)} of {len(texts)} texts differ from the released pipeline. The first:\n"
        f"{text!r}\nfirst difference at token {at}; tokens {start}..{stop if stop is not None else 'end'}:\n"
        f"  gptbench: {[tok.id_to_token(t) for t in a[start:stop]]}\n"
        f"  released: {[tok.id_to_token(t) for t in b[start:stop]]}"
    )


def book_texts() -> list[str]:
    """From every book of the local corpus: paragraphs drawn at random, chunks of consecutive
    paragraphs as the corpus pipeline encodes them (a generator seeded by the book's path, so the
    sample is the same on every run), and every paragraph with a quote by punctuation."""
    books = sorted(CORPUS.rglob("*.txt"))
    assert len(books) >= 300, f"{CORPUS}: expected the local corpus of 336 books, found {len(books)}"
    texts = []
    for book in books:
        rng = random.Random(book.relative_to(CORPUS).as_posix())
        text = book_text(book)
        paragraphs = text.split("\n")
        texts += rng.sample(paragraphs, min(PARAGRAPHS_PER_BOOK, len(paragraphs)))
        texts += [p for p in paragraphs if QUOTE_BY_PUNCTUATION.search(p)]
        chunks = text_chunks(text)
        texts += rng.sample(chunks, min(CHUNKS_PER_BOOK, len(chunks)))
    return texts


@pytest.fixture(scope="module")
def books(released) -> tuple[list[str], list[list[int]]]:
    texts = book_texts()
    return texts, [released.encode(t) for t in texts]


@pytest.mark.parametrize("mode", MODES)
def test_every_book_gives_the_released_ids(gpt1_tokenizer, books, mode, nothing_remembered):
    texts, reference = books
    assert len(texts) > 55_000
    assert_same_ids(gpt1_tokenizer, texts, encode(gpt1_tokenizer, texts, mode), reference, f"books ({mode})")


def task_texts(name: str) -> dict[str, list[str]]:
    """Split -> the text fields (the transformation's, and RACE's question) of records drawn at
    random, for every split of the task whose local data is present."""
    spec = TASKS[name]
    fields = (*TRANSFORMATION_FIELDS[spec.transformation], "question")
    out = {}
    for split in spec.splits:
        if spec.missing(split, DATA):
            continue
        records, _ = spec.read(split, DATA)
        texts = []
        for record in random.Random(f"{name}/{split}").sample(records, min(RECORDS_PER_SPLIT, len(records))):
            for field in fields:
                value = record.get(field)
                texts += value if isinstance(value, list) else [] if value is None else [value]
        out[split] = texts
    return out


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_task_gives_the_released_ids(gpt1_tokenizer, released, name, nothing_remembered):
    splits = task_texts(name)
    if not splits:
        pytest.skip(f"task {name}: no split's data is present under {DATA}")
    for split, texts in splits.items():
        reference = [released.encode(t) for t in texts]
        for mode in MODES:
            assert_same_ids(gpt1_tokenizer, texts, encode(gpt1_tokenizer, texts, mode), reference, f"{name} {split} ({mode})")


def test_only_the_tasks_without_local_data_are_skipped():
    absent = {name for name, spec in TASKS.items() if all(spec.missing(split, DATA) for split in spec.splits)}
    assert absent == {"qqp", "mnli"}


def test_corpus_cases(gpt1_tokenizer, released, nothing_remembered):
    """Each text alone, and after a piece ending with an apostrophe in the same batch."""
    assert tokenizer.pre_tokenize(CORPUS_CASES[0])[:2] == ["''", "tis"]
    assert tokenizer.pre_tokenize(CORPUS_CASES[3])[7:13] == ["tongue", ".", "'", "'", "'", "twas"]
    reference = [released.encode(t) for t in CORPUS_CASES]
    for mode in MODES:
        assert_same_ids(gpt1_tokenizer, CORPUS_CASES, encode(gpt1_tokenizer, CORPUS_CASES, mode), reference, mode)
    for text, ids in zip(CORPUS_CASES, reference):
        tokenizer._known_units.clear()
        after = gpt1_tokenizer.encode_batch(["He said'", text])[1]
        assert_same_ids(gpt1_tokenizer, [text], [after], [ids], "after a piece ending with ' in the batch")


def neighbour_dependent_texts() -> list[tuple[str, str]]:
    """Pairs of pieces where a special case of spaCy's (made of several tokens) starts the second
    piece or ends the first, and the other piece's end or start is the token that goes before or
    after it in another special case: the matches that may span the space between them.

    spaCy's matcher looks for each special case as the tokens that its prefix, suffix and infix
    rules give the case's text. With or without a letter outside (``x``), so that the case is
    also matched inside a longer piece, as in ``''Tis``."""
    import spacy
    from spacy.tokenizer import Tokenizer as SpacyTokenizer

    tok = spacy.blank("en").tokenizer
    affixes_only = SpacyTokenizer(tok.vocab, rules={}, prefix_search=tok.prefix_search, suffix_search=tok.suffix_search,
                                  infix_finditer=tok.infix_finditer, token_match=tok.token_match, url_match=tok.url_match)  # fmt: skip
    patterns = {case: [t.text for t in affixes_only(case)] for case in tok.rules}
    patterns = {case: p for case, p in patterns.items() if len(p) > 1}
    pairs = {pair for p in patterns.values() for pair in zip(p, p[1:])}
    texts = []
    for case, p in sorted(patterns.items()):
        for outside_left in ("", "x"):
            for outside_right in ("", "x"):
                texts += [(outside_left + left, case + outside_right) for left, right in sorted(pairs) if right == p[0]]
                texts += [(outside_left + case, right + outside_right) for left, right in sorted(pairs) if left == p[-1]]
    return list(dict.fromkeys(texts))


def test_neighbour_dependent_pieces(gpt1_tokenizer, released, nothing_remembered):
    """Each pair as one text (spaCy's matches across the space count, as in the released
    pipeline), in one batch and one by one; and its two pieces as two texts of a batch of their
    own (where they must not meet: each gives its released ids alone)."""
    pairs = neighbour_dependent_texts()
    assert len(pairs) > 10_000
    texts = [f"{left} {right}" for left, right in pairs]
    reference = [released.encode(t) for t in texts]
    for mode in MODES:
        assert_same_ids(gpt1_tokenizer, texts, encode(gpt1_tokenizer, texts, mode), reference, f"pairs as one text ({mode})")
    apart, apart_reference = [], []
    for left, right in pairs:
        tokenizer._known_units.clear()
        apart.append([i for ids in gpt1_tokenizer.encode_batch([left, right]) for i in ids])
        apart_reference.append(released.encode(left) + released.encode(right))
    assert_same_ids(gpt1_tokenizer, texts, apart, apart_reference, "pairs as two texts of one batch")


def test_fingerprint_follows_the_pre_tokenization_revision(monkeypatch):
    """Caches of ids are keyed by the fingerprint: a change of the words must change it."""
    from gptbench import Tokenizer

    before = Tokenizer.gpt1(GPT1 / "encoder_bpe_40000.json", GPT1 / "vocab_40000.bpe").fingerprint
    monkeypatch.setattr(tokenizer, "_PRE_TOKENIZATION_REVISION", tokenizer._PRE_TOKENIZATION_REVISION + 1)
    after = Tokenizer.gpt1(GPT1 / "encoder_bpe_40000.json", GPT1 / "vocab_40000.bpe").fingerprint
    assert before != after
