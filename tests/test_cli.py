from gptbench.cli import main


def test_user_errors_exit_2_with_a_message(capsys):
    assert main(["finetune", "smoke", "task=nope"]) == 2
    assert "finetune.task='nope'" in capsys.readouterr().err
    assert main(["pretrain", "smoke", "model.n_head=5"]) == 2
    assert "divisible" in capsys.readouterr().err
