"""SST-2 (GLUE): binary sentence sentiment. Classification, accuracy."""

from gptbench.tasks.base import TaskSpec, glue_hub, glue_splits

SPEC = TaskSpec(
    name="sst2",
    transformation="classification",
    labels=("0", "1"),
    metrics=("accuracy",),
    data_subdir="glue/SST-2",
    splits=glue_splits({"text": 0}, label=1, test_columns={"text": 1}),  # test: index, sentence
    hub=glue_hub("sst2", {"text": "sentence"}, label_map={"negative": "0", "positive": "1"}),
)
