"""SNLI 1.0: 3-way entailment, accuracy; pairs without a gold label ('-') are dropped.

Original files: snli_1.0_{train,dev,test}.jsonl; this machine has CSV conversions of dev/test
(header similarity,sentence1,sentence2; the first column is the gold label), read when the
.jsonl is absent.
"""

from gptbench.tasks.base import CsvSource, FirstAvailable, HubSource, JsonlSource, TaskSpec

_LABELS = ("entailment", "neutral", "contradiction")


def _split(name: str) -> FirstAvailable:
    return FirstAvailable((
        JsonlSource(f"snli_1.0_{name}.jsonl", columns={"premise": "sentence1", "hypothesis": "sentence2"},
                    label="gold_label", drop_labels=("-",)),
        CsvSource(f"snli_1.0_{name}.csv", columns={"premise": "sentence1", "hypothesis": "sentence2"},
                  label="similarity", drop_labels=("-",)),
    ))  # fmt: skip


SPEC = TaskSpec(
    name="snli",
    transformation="entailment",
    labels=_LABELS,
    metrics=("accuracy",),
    truncate="premise",
    data_subdir="snli",
    test_splits=("test",),
    splits={"train": _split("train"), "dev": _split("dev"), "test": _split("test")},
    hub=HubSource("stanfordnlp/snli", None, splits={"train": "train", "dev": "validation", "test": "test"},
                  columns={"premise": "premise", "hypothesis": "hypothesis"}, drop_unlabelled=True),
)  # fmt: skip
