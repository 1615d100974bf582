"""MultiNLI (GLUE): 3-way entailment. Accuracy on the matched and mismatched dev sets."""

from gptbench.tasks.base import HubSource, TaskSpec, TsvSource

_PAIR = {"premise": 8, "hypothesis": 9}  # sentence1, sentence2; gold_label is the last column

SPEC = TaskSpec(
    name="mnli",
    transformation="entailment",
    labels=("entailment", "neutral", "contradiction"),
    metrics=("accuracy",),
    truncate="premise",
    data_subdir="glue/MNLI",
    eval_splits=("dev_matched", "dev_mismatched"),
    splits={
        "train": TsvSource("train.tsv", columns=_PAIR, label=-1),
        "dev_matched": TsvSource("dev_matched.tsv", columns=_PAIR, label=-1),
        "dev_mismatched": TsvSource("dev_mismatched.tsv", columns=_PAIR, label=-1),
        "test_matched": TsvSource("test_matched.tsv", columns=_PAIR),
        "test_mismatched": TsvSource("test_mismatched.tsv", columns=_PAIR),
    },
    hub=HubSource("nyu-mll/glue", "mnli",
                  splits={"train": "train", "dev_matched": "validation_matched",
                          "dev_mismatched": "validation_mismatched", "test_matched": "test_matched",
                          "test_mismatched": "test_mismatched"},
                  columns={"premise": "premise", "hypothesis": "hypothesis"}),
)  # fmt: skip
