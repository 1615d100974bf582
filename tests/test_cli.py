import pytest

from gptbench.cli import main


def test_user_errors_exit_2_with_a_message(capsys):
    assert main(["finetune", "smoke", "task=nope"]) == 2
    assert "finetune.task='nope'" in capsys.readouterr().err
    assert main(["pretrain", "smoke", "model.n_head=5"]) == 2
    assert "divisible" in capsys.readouterr().err


def test_report_of_a_missing_directory_is_a_one_line_error(capsys, tmp_path):
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "results directory not found" in capsys.readouterr().err


def test_an_absent_split_is_an_error_with_a_hint_on_the_command_line(capsys, tmp_path, tiny_corpus, cache_dir):
    """The hint is printed with the error; the reason a run records is only the fact (see
    test_prepare_reproduce: a prepared run records the same reason as a raw one)."""
    from conftest import DATA, tiny_overrides

    from gptbench.tasks import SplitUnavailable, get_task

    absent = tmp_path / "nope" / "train.tsv"
    args = ["finetune", "smoke", "task=rte", f"finetune.splits.train={absent}", "finetune.init=none",
            *tiny_overrides(tmp_path / "runs", tiny_corpus, cache_dir)]  # fmt: skip
    assert main(args) == 2
    fact = f"task rte, split 'train': {absent}: not found"
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"gptbench: error: {fact} (to use other data, set finetune.splits.train=another split of the task or a file "
        "in this split's format)"
    )
    spec = get_task("rte")
    assert spec.missing("train", DATA, str(absent)) == fact
    with pytest.raises(SplitUnavailable) as raised:
        spec.read("train", DATA, file=str(absent))
    assert str(raised.value) == fact
