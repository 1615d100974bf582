"""QNLI (GLUE v2): does the sentence answer the question? 2-way entailment, accuracy.

The sentence is the premise (truncated if needed) and the question the hypothesis (never cut).
"""

from gptbench.tasks.base import HubSource, TaskSpec, TsvSource

_PAIR = {"premise": 2, "hypothesis": 1}  # index, question, sentence, label

SPEC = TaskSpec(
    name="qnli",
    transformation="entailment",
    labels=("entailment", "not_entailment"),
    metrics=("accuracy",),
    truncate="premise",
    data_subdir="glue/QNLI",
    splits={
        "train": TsvSource("train.tsv", columns=_PAIR, label=3),
        "dev": TsvSource("dev.tsv", columns=_PAIR, label=3),
        "test": TsvSource("test.tsv", columns=_PAIR),
    },
    hub=HubSource("nyu-mll/glue", "qnli", splits={"train": "train", "dev": "validation", "test": "test"},
                  columns={"premise": "sentence", "hypothesis": "question"}),
)  # fmt: skip
