"""STS-B (GLUE): semantic similarity scored 0-5. Similarity with a regression head (MSE),
Pearson (the paper's metric) + Spearman."""

from gptbench.tasks.base import HubSource, TaskSpec, TsvSource

SPEC = TaskSpec(
    name="stsb",
    transformation="similarity",
    labels=None,
    metrics=("pearson", "spearman"),
    truncate="longest",
    data_subdir="glue/STS-B",
    splits={  # index genre filename year old_index source1 source2 sentence1 sentence2 score
        "train": TsvSource("train.tsv", columns={"text_a": 7, "text_b": 8}, label=9),
        "dev": TsvSource("dev.tsv", columns={"text_a": 7, "text_b": 8}, label=9),
        "test": TsvSource("test.tsv", columns={"text_a": 7, "text_b": 8}),
    },
    hub=HubSource("nyu-mll/glue", "stsb", splits={"train": "train", "dev": "validation", "test": "test"},
                  columns={"text_a": "sentence1", "text_b": "sentence2"}),
)  # fmt: skip
