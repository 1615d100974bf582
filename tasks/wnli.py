"""WNLI (GLUE): Winograd schemas as 2-way entailment (label 1 = entailed), accuracy.
Not in the paper's tables; included for the GLUE average."""

from gptbench.tasks.base import HubSource, TaskSpec, TsvSource

_PAIR = {"premise": 1, "hypothesis": 2}  # index, sentence1, sentence2, label

SPEC = TaskSpec(
    name="wnli",
    transformation="entailment",
    labels=("0", "1"),
    metrics=("accuracy",),
    truncate="premise",
    data_subdir="glue/WNLI",
    splits={
        "train": TsvSource("train.tsv", columns=_PAIR, label=3),
        "dev": TsvSource("dev.tsv", columns=_PAIR, label=3),
        "test": TsvSource("test.tsv", columns=_PAIR),
    },
    hub=HubSource("nyu-mll/glue", "wnli", splits={"train": "train", "dev": "validation", "test": "test"},
                  columns={"premise": "sentence1", "hypothesis": "sentence2"},
                  label_map={"not_entailment": "0", "entailment": "1"}),
)  # fmt: skip
