"""An independent, pure-Python restatement of the released GPT-1 text encoder
(openai/finetune-transformer-lm, text_utils.py: TextEncoder): the reference that
``gptbench.Tokenizer.gpt1`` must agree with (tests/test_tokenizer.py) and that ``gptbench bench``
times it against. It deliberately shares no code with gptbench.
"""

import ast
import json
import re
import warnings

import ftfy
import spacy


# text_utils.py's pattern, as its source spells it: a plain (not raw) triple-quoted literal.
# Evaluating that literal the way Python compiles the released file ('\\+' becomes '\+', the other
# unknown escapes stay) gives the pattern the released code really ran with.
_RELEASED_SOURCE_LITERAL = r"""'''(-+|~+|!+|"+|;+|\?+|\++|,+|\)+|\(+|\\+|\/+|\*+|\[+|\]+|}+|{+|\|+|_+)'''"""
with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # invalid escape sequences such as '\?', as in the original
    RELEASED_PATTERN = ast.literal_eval(_RELEASED_SOURCE_LITERAL)


def get_pairs(word):
    return {(a, b) for a, b in zip(word[:-1], word[1:])}


def text_standardize(text):
    text = text.replace("—", "-").replace("–", "-").replace("―", "-")
    text = text.replace("…", "...").replace("´", "'")
    text = re.sub(RELEASED_PATTERN, r" \1 ", text)
    text = re.sub(r"\s*\n\s*", " \n ", text)
    text = re.sub(r"[^\S\n]+", " ", text)
    return text.strip()


class TextEncoder:
    def __init__(self, encoder_path, bpe_path):
        self.nlp = spacy.blank("en")
        self.encoder = json.load(open(encoder_path, encoding="utf-8"))
        merges = open(bpe_path, encoding="utf-8").read().split("\n")[1:-1]
        self.bpe_ranks = {tuple(m.split()): i for i, m in enumerate(merges)}
        self.cache = {}

    def bpe(self, token):
        word = tuple(token[:-1]) + (token[-1] + "</w>",)
        if token in self.cache:
            return self.cache[token]
        pairs = get_pairs(word)
        if not pairs:
            return token + "</w>"
        while True:
            bigram = min(pairs, key=lambda p: self.bpe_ranks.get(p, float("inf")))
            if bigram not in self.bpe_ranks:
                break
            first, second = bigram
            new_word, i = [], 0
            while i < len(word):
                try:
                    j = word.index(first, i)
                except ValueError:
                    new_word.extend(word[i:])
                    break
                new_word.extend(word[i:j])
                i = j
                if word[i] == first and i < len(word) - 1 and word[i + 1] == second:
                    new_word.append(first + second)
                    i += 2
                else:
                    new_word.append(word[i])
                    i += 1
            word = tuple(new_word)
            if len(word) == 1:
                break
            pairs = get_pairs(word)
        word = " ".join(word)
        if word == "\n  </w>":
            word = "\n</w>"
        self.cache[token] = word
        return word

    def encode(self, text):
        ids = []
        for token in self.nlp(text_standardize(ftfy.fix_text(text))):
            ids.extend(self.encoder.get(t, 0) for t in self.bpe(token.text.lower()).split(" "))
        return ids
