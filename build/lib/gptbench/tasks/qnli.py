"""QNLI (GLUE v2): does the sentence answer the question? 2-way entailment, accuracy.

The sentence is the premise (truncated if needed) and the question the hypothesis (never cut).
"""

from gptbench.tasks.base import TaskSpec, glue_hub, glue_splits

SPEC = TaskSpec(
    name="qnli",
    transformation="entailment",
    labels=("entailment", "not_entailment"),
    metrics=("accuracy",),
    truncate="premise",
    data_subdir="glue/QNLI",
    splits=glue_splits({"premise": 2, "hypothesis": 1}, label=3),  # index, question, sentence, label
    hub=glue_hub("qnli", {"premise": "sentence", "hypothesis": "question"}),
)
