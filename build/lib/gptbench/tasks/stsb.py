"""STS-B (GLUE): semantic similarity scored 0-5. Similarity with a regression head (MSE),
Pearson (the paper's metric) + Spearman."""

from gptbench.tasks.base import TaskSpec, glue_hub, glue_splits

SPEC = TaskSpec(
    name="stsb",
    transformation="similarity",
    labels=None,
    metrics=("pearson", "spearman"),
    truncate="longest",
    data_subdir="glue/STS-B",
    # index genre filename year old_index source1 source2 sentence1 sentence2 score
    splits=glue_splits({"text_a": 7, "text_b": 8}, label=9),
    hub=glue_hub("stsb", {"text_a": "sentence1", "text_b": "sentence2"}),
    score_range=(0.0, 5.0),
)
