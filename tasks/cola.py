"""CoLA (GLUE): grammatical acceptability. Classification, Matthews correlation."""

from gptbench.tasks.base import HubSource, TaskSpec, TsvSource

SPEC = TaskSpec(
    name="cola",
    transformation="classification",
    labels=("0", "1"),
    metrics=("matthews", "accuracy"),
    data_subdir="glue/CoLA",
    splits={  # train/dev: source, label, original mark, sentence -- no header
        "train": TsvSource("train.tsv", columns={"text": 3}, label=1, header=False),
        "dev": TsvSource("dev.tsv", columns={"text": 3}, label=1, header=False),
        "test": TsvSource("test.tsv", columns={"text": 1}),  # unlabelled, with a header
    },
    hub=HubSource("nyu-mll/glue", "cola", splits={"train": "train", "dev": "validation", "test": "test"},
                  columns={"text": "sentence"}, label_map={"unacceptable": "0", "acceptable": "1"}),
)  # fmt: skip
