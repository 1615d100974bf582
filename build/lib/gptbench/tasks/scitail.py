"""SciTail v1.1: 2-way entailment (entails / neutral), accuracy.

Original files: SciTailV1.1/tsv_format/scitail_1.0_{train,dev,test}.tsv (premise, hypothesis,
label; no header). This machine has only a CSV conversion of test (premise,hypothesis,label with
labels renamed entailment / not_entailment), read when the original is absent.
"""

from gptbench.tasks.base import CsvSource, FirstAvailable, HubSource, TaskSpec, TsvSource

_RENAME = {"entails": "entailment", "neutral": "not_entailment"}


def _original(name: str) -> TsvSource:
    return TsvSource(f"SciTailV1.1/tsv_format/scitail_1.0_{name}.tsv", columns={"premise": 0, "hypothesis": 1},
                     label=2, header=False, label_map=_RENAME)  # fmt: skip


SPEC = TaskSpec(
    name="scitail",
    transformation="entailment",
    labels=("entailment", "not_entailment"),
    metrics=("accuracy",),
    truncate="premise",
    data_subdir="scitail",
    test_splits=("test",),
    splits={
        "train": _original("train"),
        "dev": _original("dev"),
        "test": FirstAvailable((
            _original("test"),
            CsvSource("CONVERTED_scitail_1.0_test_2126rows.csv", columns={"premise": "premise", "hypothesis": "hypothesis"},
                      label="label"),
        )),
    },
    hub=HubSource("allenai/scitail", "tsv_format", splits={"train": "train", "dev": "validation", "test": "test"},
                  columns={"premise": "premise", "hypothesis": "hypothesis"}, label_map=_RENAME),
)  # fmt: skip
