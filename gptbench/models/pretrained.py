"""One way to load and save every network: ``GPT``, ``LSTMLM`` and ``BERT`` each take
``from_pretrained`` and ``save_pretrained`` from :class:`PretrainedMixin`.

The formats live in :mod:`gptbench.models.checkpoints` (imported on first use: it imports the
networks); this class only dispatches to them and checks that a checkpoint holds the network asked for.
"""

from __future__ import annotations

from pathlib import Path


class PretrainedMixin:
    """``Network.from_pretrained(path)`` and ``network.save_pretrained(directory)``."""

    @classmethod
    def from_pretrained(cls, path: str | Path, dropout: dict | None = None, **overrides):
        """The network ``path`` holds, which must be one of this class: any checkpoint
        :func:`gptbench.models.load_pretrained` reads (a gptbench export or ``.ckpt``; for GPT also a
        Hugging Face ``openai-gpt`` directory and OpenAI's ``params_*.npy`` shards; for BERT a Hugging
        Face ``BertForMaskedLM`` directory). ``dropout``: ``*_pdrop`` values, the network taking
        those it has; ``overrides`` set other config fields."""
        from gptbench.models.checkpoints import CheckpointError, load_pretrained

        model = load_pretrained(path, dropout=dropout, **overrides)
        if not isinstance(model, cls):
            held = type(model).__name__
            raise CheckpointError(f"{path}: holds a {held}, not a {cls.__name__}; load it with {held}.from_pretrained "
                                  "or gptbench.models.load_pretrained (any network)")  # fmt: skip
        return model

    def save_pretrained(self, directory: str | Path) -> None:
        """Write config.json + model.safetensors: Hugging Face's ``openai-gpt`` format for GPT, its
        ``BertForMaskedLM`` format for BERT, gptbench's own (``model_type`` gptbench-lstm) for the LSTM."""
        from gptbench.models.checkpoints import save_pretrained

        save_pretrained(self, directory)
