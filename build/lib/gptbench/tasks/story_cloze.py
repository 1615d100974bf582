"""Story Cloze Test (ROCStories, spring 2016): pick the right ending of a four-sentence story.
2-way multiple choice over [four sentences; ending], accuracy.

As in the released code, the 1,871-story validation file is split 1,497 train / 374 dev
(sklearn's train_test_split with random_state 3535999445); the best dev epoch is scored on the
spring-2016 test file. No public hub copy: local files only.
"""

from gptbench.tasks.base import CsvSource, SplitOf, TaskSpec

_COLUMNS = {
    "context": ("InputSentence1", "InputSentence2", "InputSentence3", "InputSentence4"),
    "choices": ("RandomFifthSentenceQuiz1", "RandomFifthSentenceQuiz2"),
}
_VAL = CsvSource("cloze_test_val__spring2016 - cloze_test_ALL_val.csv", columns=_COLUMNS, label="AnswerRightEnding")
_TEST = CsvSource("cloze_test_test__spring2016 - cloze_test_ALL_test.csv", columns=_COLUMNS, label="AnswerRightEnding")
_SEED = 3535999445

SPEC = TaskSpec(
    name="story_cloze",
    transformation="multiple_choice",
    labels=("1", "2"),
    metrics=("accuracy",),
    truncate="context",
    data_subdir="story_cloze",
    test_splits=("test",),
    splits={
        "train": SplitOf(_VAL, n_test=374, seed=_SEED, part="train"),
        "dev": SplitOf(_VAL, n_test=374, seed=_SEED, part="test"),
        "test": _TEST,
    },
)
