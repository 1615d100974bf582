"""RTE (GLUE): 2-way entailment, accuracy."""

from gptbench.tasks.base import HubSource, TaskSpec, TsvSource

_PAIR = {"premise": 1, "hypothesis": 2}  # index, sentence1, sentence2, label

SPEC = TaskSpec(
    name="rte",
    transformation="entailment",
    labels=("entailment", "not_entailment"),
    metrics=("accuracy",),
    truncate="premise",
    data_subdir="glue/RTE",
    splits={
        "train": TsvSource("train.tsv", columns=_PAIR, label=3),
        "dev": TsvSource("dev.tsv", columns=_PAIR, label=3),
        "test": TsvSource("test.tsv", columns=_PAIR),
    },
    hub=HubSource("nyu-mll/glue", "rte", splits={"train": "train", "dev": "validation", "test": "test"},
                  columns={"premise": "sentence1", "hypothesis": "sentence2"}),
)  # fmt: skip
