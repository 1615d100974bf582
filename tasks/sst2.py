"""SST-2: binary sentence sentiment (GLUE). Classification, accuracy."""

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
    },
    hub=HubSource(
        "nyu-mll/glue", "sst2", splits={"train": "train", "dev": "validation"}, columns={"text": "sentence"},
        label_map={"negative": "0", "positive": "1"},  # the hub's ClassLabel names
    ),
)
