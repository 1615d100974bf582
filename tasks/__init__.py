"""Benchmark tasks, one declarative spec per module (installed as ``gptbench.tasks``)."""

from gptbench.tasks import sst2
from gptbench.tasks.base import DataError, SplitUnavailable, TaskSpec

TASKS: dict[str, TaskSpec] = {spec.name: spec for spec in (sst2.SPEC,)}


def get_task(name: str) -> TaskSpec:
    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; known tasks: {sorted(TASKS)}")
    return TASKS[name]


__all__ = ["TASKS", "DataError", "SplitUnavailable", "TaskSpec", "get_task"]
