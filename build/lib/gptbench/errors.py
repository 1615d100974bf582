"""Errors a user can fix, raised where the problem is found and shown by the CLI as one line
(exit 2). Kept free of heavy imports so the CLI can name them without loading Lightning.
(ConfigError lives in gptbench.config, DataError in gptbench.tasks, CheckpointError in
gptbench.models.checkpoints.)"""


class CorpusError(ValueError):
    """A pre-training corpus that cannot be used as it is; the message names the folder or files."""


class NonFiniteLoss(FloatingPointError):
    """Training produced a nan or infinite loss; the message says where and what to resume from."""


class RunLocked(RuntimeError):
    """Another live process holds the run directory; the message names it (pid, host)."""


class NoNextTokenModel(ValueError):
    """A next-token operation (generation, the zero-shot heuristics) asked of a network that does not
    predict the next token (the BERT encoder); the message says what to use instead."""
