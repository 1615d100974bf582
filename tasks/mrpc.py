"""MRPC (GLUE): paraphrase. Similarity (both orders, summed), F1 of the positive class + accuracy."""

from gptbench.tasks.base import HubSource, TaskSpec, TsvSource

SPEC = TaskSpec(
    name="mrpc",
    transformation="similarity",
    labels=("0", "1"),
    metrics=("f1", "accuracy"),
    truncate="longest",
    data_subdir="glue/MRPC",
    splits={  # Quality, #1 ID, #2 ID, #1 String, #2 String (UTF-8 BOM)
        "train": TsvSource("train.tsv", columns={"text_a": 3, "text_b": 4}, label=0),
        "dev": TsvSource("dev.tsv", columns={"text_a": 3, "text_b": 4}, label=0),
        "test": TsvSource("test.tsv", columns={"text_a": 3, "text_b": 4}),  # label column is blank
    },
    hub=HubSource("nyu-mll/glue", "mrpc", splits={"train": "train", "dev": "validation", "test": "test"},
                  columns={"text_a": "sentence1", "text_b": "sentence2"},
                  label_map={"not_equivalent": "0", "equivalent": "1"}),
)  # fmt: skip
