"""CoLA (GLUE): grammatical acceptability. Classification, Matthews correlation."""

from gptbench.tasks.base import TaskSpec, glue_hub, glue_splits

SPEC = TaskSpec(
    name="cola",
    transformation="classification",
    labels=("0", "1"),
    metrics=("matthews", "accuracy"),
    data_subdir="glue/CoLA",
    # train/dev: source, label, original mark, sentence, without a header; test: index, sentence
    splits=glue_splits({"text": 3}, label=1, test_columns={"text": 1}, header=False),
    hub=glue_hub("cola", {"text": "sentence"}, label_map={"unacceptable": "0", "acceptable": "1"}),
)
