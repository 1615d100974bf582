"""WNLI (GLUE): Winograd schemas as 2-way entailment (label 1 = entailed), accuracy.
Not in the paper's tables; included for the GLUE average."""

from gptbench.tasks.base import TaskSpec, glue_hub, glue_splits

SPEC = TaskSpec(
    name="wnli",
    transformation="entailment",
    labels=("0", "1"),
    metrics=("accuracy",),
    truncate="premise",
    data_subdir="glue/WNLI",
    splits=glue_splits({"premise": 1, "hypothesis": 2}, label=3),  # index, sentence1, sentence2, label
    hub=glue_hub("wnli", {"premise": "sentence1", "hypothesis": "sentence2"},
                 label_map={"not_entailment": "0", "entailment": "1"}),
)  # fmt: skip
