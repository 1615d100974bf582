"""The networks: GPT-1 (plain PyTorch), the LSTM baseline and a BERT-style encoder behind the same
interface, and reading/writing their weights in every format.

``build_model`` makes a fresh network from its config (or the dict ``model_spec`` records in
checkpoints and hyperparameters); ``load_pretrained`` reads whichever network a checkpoint holds, and
``GPT.from_pretrained``, ``LSTMLM.from_pretrained`` and ``BERT.from_pretrained`` the same checkpoints
when the network is known (:class:`~gptbench.models.pretrained.PretrainedMixin`).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Union

from gptbench.errors import NoNextTokenModel
from gptbench.models.bert import BERT, BertConfig
from gptbench.models.gpt import GPT, GPTConfig
from gptbench.models.lstm import LSTMConfig, LSTMLM

LanguageModel = Union[GPT, LSTMLM, BERT]
ModelConfig = Union[GPTConfig, LSTMConfig, BertConfig]
ARCHITECTURES = {"transformer": (GPT, GPTConfig), "lstm": (LSTMLM, LSTMConfig), "bert": (BERT, BertConfig)}
NEXT_TOKEN_ARCHITECTURES = ("transformer", "lstm")  # those that define p(next token | prefix)


def architecture_of(model_or_config) -> str:
    """'transformer', 'lstm' or 'bert' for a network or its config."""
    for arch, (model_cls, config_cls) in ARCHITECTURES.items():
        if isinstance(model_or_config, (model_cls, config_cls)):
            return arch
    raise TypeError(f"not a gptbench network or network config: {type(model_or_config).__name__}")


def require_next_token(model: LanguageModel, what: str) -> None:
    """Refuse ``what`` (generation, the zero-shot heuristics) on a network that does not predict the
    next token: the BERT encoder's masked-token head has no p(next | prefix) to read."""
    if architecture_of(model) not in NEXT_TOKEN_ARCHITECTURES:
        raise NoNextTokenModel(f"{what} reads next-token probabilities, which the {architecture_of(model)} network "
                               f"does not define (it predicts masked tokens from both sides); use one of "
                               f"{list(NEXT_TOKEN_ARCHITECTURES)}")  # fmt: skip


def model_spec(model: LanguageModel) -> dict:
    """The config of a network as plain data, with its ``arch``: what ``build_model`` takes."""
    return {"arch": architecture_of(model), **asdict(model.config)}


def build_model(config: ModelConfig | dict) -> LanguageModel:
    """A freshly initialised network from its config, or from a ``model_spec`` dict (a dict
    without ``arch`` is a GPTConfig, as older gptbench checkpoints record it)."""
    if isinstance(config, dict):
        config = dict(config)
        arch = config.pop("arch", "transformer")
        if arch not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {arch!r}; known: {list(ARCHITECTURES)}")
        config = ARCHITECTURES[arch][1](**config)
    return ARCHITECTURES[architecture_of(config)][0](config)


def load_pretrained(path: str | Path, dropout: dict | None = None, **overrides) -> LanguageModel:
    """The network a checkpoint holds (GPT-1 weights in any format, a Hugging Face BERT masked LM, a
    gptbench export or .ckpt of any architecture). ``dropout`` holds the experiment's ``*_pdrop``
    values; each network takes those it has (the LSTM has no attention dropout). ``overrides`` set
    other config fields."""
    from gptbench.models.checkpoints import load_pretrained as load

    return load(path, dropout=dropout, **overrides)
