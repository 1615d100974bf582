"""The paper's published numbers (Radford et al. 2018), from results/paper.yaml.

That file holds Tables 2-5, the previous-best row, the state-of-the-art values that normalise
Figure 2's zero-shot scores and the pre-training facts, each with our task, split and metric to
compare against (see the file's comments for the schema); tests/test_paper_numbers.py checks
every number against the spec. It also holds the datasets' full sizes (``datasets``), which the
report's rules need (see gptbench.suite.claims).
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

import yaml  # PyYAML, installed with omegaconf

# Shipped inside the package (gptbench/paper.yaml links to the checkout's results/paper.yaml).
PAPER_NUMBERS = Path(str(importlib.resources.files("gptbench") / "paper.yaml"))
SECTIONS = ("source", "tables", "previous_best", "zero_shot_sota", "pretraining", "datasets")


class PaperNumbersError(ValueError):
    """results/paper.yaml is missing or malformed; the message names the file."""


def load_paper_numbers(path: str | Path = PAPER_NUMBERS) -> dict:
    """The paper's published numbers as a plain dict (values in percent, as printed).

    Raises :class:`PaperNumbersError`, naming the file, if it is missing, is not valid YAML, or
    lacks one of the top-level sections (source, tables, previous_best, zero_shot_sota,
    pretraining, datasets).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise PaperNumbersError(f"{path}: cannot read the paper's numbers ({e.strerror or e})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise PaperNumbersError(f"{path}: not valid YAML ({e})") from None
    if not isinstance(data, dict):
        raise PaperNumbersError(f"{path}: expected a mapping with sections {list(SECTIONS)}, got {type(data).__name__}")
    missing = [s for s in SECTIONS if s not in data]
    if missing:
        raise PaperNumbersError(f"{path}: missing section(s) {missing}")
    return data
