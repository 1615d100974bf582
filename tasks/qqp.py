"""QQP (GLUE): duplicate questions. Similarity, F1 of the positive class + accuracy."""

from gptbench.tasks.base import HubSource, TaskSpec, TsvSource

SPEC = TaskSpec(
    name="qqp",
    transformation="similarity",
    labels=("0", "1"),
    metrics=("f1", "accuracy"),
    truncate="longest",
    data_subdir="glue/QQP",
    splits={  # id, qid1, qid2, question1, question2, is_duplicate
        "train": TsvSource("train.tsv", columns={"text_a": 3, "text_b": 4}, label=5),
        "dev": TsvSource("dev.tsv", columns={"text_a": 3, "text_b": 4}, label=5),
        "test": TsvSource("test.tsv", columns={"text_a": 1, "text_b": 2}),  # id, question1, question2
    },
    hub=HubSource("nyu-mll/glue", "qqp", splits={"train": "train", "dev": "validation", "test": "test"},
                  columns={"text_a": "question1", "text_b": "question2"},
                  label_map={"not_duplicate": "0", "duplicate": "1"}),
)  # fmt: skip
