"""MRPC (GLUE): paraphrase. Similarity (both orders, summed), F1 of the positive class + accuracy."""

from gptbench.tasks.base import TaskSpec, glue_hub, glue_splits

SPEC = TaskSpec(
    name="mrpc",
    transformation="similarity",
    labels=("0", "1"),
    metrics=("f1", "accuracy"),
    truncate="longest",
    data_subdir="glue/MRPC",
    splits=glue_splits({"text_a": 3, "text_b": 4}, label=0),  # Quality, #1 ID, #2 ID, #1 String, #2 String
    hub=glue_hub("mrpc", {"text_a": "sentence1", "text_b": "sentence2"},
                 label_map={"not_equivalent": "0", "equivalent": "1"}),
)  # fmt: skip
