"""SST-2 (GLUE): binary sentence sentiment. Classification, accuracy."""

from gptbench.tasks.base import HubSource, TaskSpec, TsvSource

SPEC = TaskSpec(
    name="sst2",
    transformation="classification",
    labels=("0", "1"),
    metrics=("accuracy",),
    data_subdir="glue/SST-2",
    splits={
        "train": TsvSource("train.tsv", columns={"text": 0}, label=1),
        "dev": TsvSource("dev.tsv", columns={"text": 0}, label=1),
        "test": TsvSource("test.tsv", columns={"text": 1}),  # unlabelled (GLUE server)
    },
    hub=HubSource("nyu-mll/glue", "sst2", splits={"train": "train", "dev": "validation", "test": "test"},
                  columns={"text": "sentence"}, label_map={"negative": "0", "positive": "1"}),
)  # fmt: skip
