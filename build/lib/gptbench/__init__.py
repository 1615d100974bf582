"""gptbench: reproduce GPT-1 (Radford et al. 2018) end to end with PyTorch Lightning.

The public Python API, for your own Lightning scripts::

    import lightning as L
    import gptbench

    tokenizer = gptbench.Tokenizer.load("runs/smoke/pretrain/model/tokenizer")
    data = gptbench.datamodule("rte", tokenizer, data_dir="../shared/data", batch_size=32)
    module = gptbench.FinetuneModule.from_pretrained("runs/smoke/pretrain/model", task="rte")
    L.Trainer(max_epochs=3).fit(module, datamodule=data)

The model and tokenizer import light; the Lightning pieces are imported on first use.
"""

from gptbench.models.bert import BERT, BertConfig
from gptbench.models.gpt import GPT, GPTConfig
from gptbench.models.lstm import LSTMConfig, LSTMLM
from gptbench.data.tokenizer import Tokenizer

# name -> module that defines it; imported on first access (PEP 562), so `import gptbench` and
# the command line stay fast while `gptbench.FinetuneModule` works as a plain attribute.
_LAZY = {
    "FinetuneModule": "gptbench.training.finetune",
    "TaskHead": "gptbench.models.task_head",
    "TaskModel": "gptbench.training.task_model",
    "generate": "gptbench.models.decoding",
    "PretrainModule": "gptbench.training.pretrain",
    "TaskDataModule": "gptbench.data.task_data",
    "datamodule": "gptbench.data.task_data",
    "CorpusDataModule": "gptbench.data.corpus",
    "write_glue_submission": "gptbench.evaluation.glue_submission",
    "TokensPerSecond": "gptbench.training.common",
    "TASKS": "gptbench.tasks",
    "get_task": "gptbench.tasks",
    "load_config": "gptbench.config",
}

__all__ = ["GPT", "GPTConfig", "LSTMLM", "LSTMConfig", "BERT", "BertConfig", "Tokenizer", *_LAZY]
__version__ = "0.1.0"


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'gptbench' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
