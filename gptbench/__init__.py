"""gptbench: reproduce GPT-1 (Radford et al. 2018) end to end with PyTorch Lightning."""

from gptbench.model import GPT, GPTConfig
from gptbench.tokenizer import Tokenizer

__all__ = ["GPT", "GPTConfig", "Tokenizer"]
__version__ = "0.1.0"
