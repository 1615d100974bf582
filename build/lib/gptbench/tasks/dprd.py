"""DPRD (Rahman & Ng 2012, definite pronoun resolution): zero-shot only. Each candidate is
substituted for the pronoun and the language model scores the rest of the sentence."""

from gptbench.tasks.base import DprdSource, TaskSpec

SPEC = TaskSpec(
    name="dprd",
    transformation="substitution",
    labels=("0", "1"),  # index of the right candidate
    metrics=("accuracy",),
    data_subdir="dprd",
    eval_splits=("test",),
    splits={"train": DprdSource("train.c.txt"), "test": DprdSource("test.c.txt")},
)
