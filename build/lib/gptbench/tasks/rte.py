"""RTE (GLUE): 2-way entailment, accuracy."""

from gptbench.tasks.base import TaskSpec, glue_hub, glue_splits

SPEC = TaskSpec(
    name="rte",
    transformation="entailment",
    labels=("entailment", "not_entailment"),
    metrics=("accuracy",),
    truncate="premise",
    data_subdir="glue/RTE",
    splits=glue_splits({"premise": 1, "hypothesis": 2}, label=3),  # index, sentence1, sentence2, label
    hub=glue_hub("rte", {"premise": "sentence1", "hypothesis": "sentence2"}),
)
