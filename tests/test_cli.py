from gptbench.cli import main


def test_user_errors_exit_2_with_a_message(capsys):
    assert main(["finetune", "smoke", "task=nope"]) == 2
    assert "finetune.task='nope'" in capsys.readouterr().err
    assert main(["pretrain", "smoke", "model.n_head=5"]) == 2
    assert "divisible" in capsys.readouterr().err


def test_report_of_a_missing_directory_is_a_one_line_error(capsys, tmp_path):
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "results directory not found" in capsys.readouterr().err
