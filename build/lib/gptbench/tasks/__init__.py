"""Benchmark tasks, one declarative spec per module (installed as ``gptbench.tasks``)."""

from gptbench.tasks import cola, dprd, mnli, mrpc, qnli, qqp, race, rte, scitail, snli, sst2, stsb, story_cloze, wnli
from gptbench.tasks.base import DataError, SplitUnavailable, TaskSpec

_MODULES = (cola, sst2, mrpc, qqp, stsb, mnli, snli, scitail, qnli, rte, wnli, race, story_cloze, dprd)
TASKS: dict[str, TaskSpec] = {m.SPEC.name: m.SPEC for m in _MODULES}


def get_task(name: str) -> TaskSpec:
    """The spec of a task by name (``TASKS`` lists them); KeyError naming the known tasks."""
    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; known tasks: {sorted(TASKS)}")
    return TASKS[name]


__all__ = ["TASKS", "DataError", "SplitUnavailable", "TaskSpec", "get_task"]
