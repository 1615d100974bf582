"""RACE: reading comprehension, 4-way multiple choice over [article + question; answer].
Accuracy on RACE-m (middle school), RACE-h (high school) and both."""

from gptbench.tasks.base import HubSource, RaceSource, TaskSpec

SPEC = TaskSpec(
    name="race",
    transformation="multiple_choice",
    labels=("A", "B", "C", "D"),
    metrics=("accuracy",),
    truncate="context",  # the article; the question and the answer are never cut
    groups=("middle", "high"),
    data_subdir="race/RACE",
    test_splits=("test",),
    splits={"train": RaceSource("train"), "dev": RaceSource("dev"), "test": RaceSource("test")},
    hub=HubSource("ehovy/race", ("middle", "high"), splits={"train": "train", "dev": "validation", "test": "test"},
                  columns={"context": "article", "question": "question", "choices": "options"}, label="answer"),
)  # fmt: skip
