"""QQP (GLUE): duplicate questions. Similarity, F1 of the positive class + accuracy."""

from gptbench.tasks.base import TaskSpec, glue_hub, glue_splits

SPEC = TaskSpec(
    name="qqp",
    transformation="similarity",
    labels=("0", "1"),
    metrics=("f1", "accuracy"),
    truncate="longest",
    data_subdir="glue/QQP",
    # id, qid1, qid2, question1, question2, is_duplicate; test: id, question1, question2
    splits=glue_splits({"text_a": 3, "text_b": 4}, label=5, test_columns={"text_a": 1, "text_b": 2}),
    hub=glue_hub("qqp", {"text_a": "question1", "text_b": "question2"},
                 label_map={"not_duplicate": "0", "duplicate": "1"}),
)  # fmt: skip
