"""The independent probe: its features are the task head's inputs, computed without batching, and
it fits, selects and scores like a fine-tune's data pipeline on real SST-2 and MRPC data."""

import json

import pytest
import torch
from conftest import DATA, pretrained_model

from gptbench.data.task_data import datamodule
from gptbench.evaluation.feature_probe import frozen_features, logistic_probe, main
from gptbench.evaluation.loading import load_model_and_tokenizer

pytest.importorskip("sklearn")


def test_features_are_each_examples_last_token_state_summed_over_its_sequences(pretrained, cache_dir):
    model, tok = load_model_and_tokenizer(pretrained_model(pretrained))
    model.eval()
    data = datamodule("mrpc", tok, n_ctx=model.config.n_ctx, data_dir=DATA, cache_dir=cache_dir,
                      max_eval_examples=7).load("dev")  # fmt: skip
    feats, labels = frozen_features(model, data, batch_size=3)  # padded batches of unequal lengths
    assert feats.shape == (7, model.config.n_embd) and labels.tolist() == [ex["label"] for ex in data]
    with torch.no_grad():
        for i, ex in enumerate(data):  # one unpadded sequence at a time, both orders summed
            states = [model(torch.tensor([ids]))[0][0, -1] for ids in ex["input_ids"]]
            assert torch.allclose(torch.from_numpy(feats[i]).float(), sum(states), atol=1e-4)


def test_probe_selects_on_the_holdout_and_scores_the_eval_splits(pretrained, cache_dir, tmp_path, capsys):
    model_dir = pretrained_model(pretrained)
    result = logistic_probe(model_dir, "sst2", data_dir=DATA, max_train=200, max_eval=100, holdout_max=80,
                            cache_dir=cache_dir, c_grid=(0.1, 1.0))  # fmt: skip
    assert result["examples"] == {"train": 200, "holdout": 80, "dev": 100}
    assert result["selection"]["C"] in (0.1, 1.0) and set(result["selection"]["holdout_by_C"]) == {"0.1", "1.0"}
    chosen = result["selection"]["holdout_by_C"][str(result["selection"]["C"])]
    assert chosen == max(result["selection"]["holdout_by_C"].values())
    assert 0.0 <= result["metrics"]["dev"]["accuracy"] <= 1.0 and result["train_metrics"]["accuracy"] > 0.5
    out = tmp_path / "probe.json"
    main([str(model_dir), "cola", "--data-dir", str(DATA), "--max-train", "100", "--max-eval", "50",
          "--holdout-max", "40", "--out", str(out)])  # fmt: skip
    saved = json.loads(out.read_text())
    assert set(saved["metrics"]["dev"]) == {"matthews", "accuracy"} and '"task": "cola"' in capsys.readouterr().out


@pytest.mark.parametrize("task", ["stsb", "race"])
def test_regression_and_multiple_choice_are_refused(pretrained, task):
    with pytest.raises(ValueError, match="the probe takes class labels"):
        logistic_probe(pretrained_model(pretrained), task, data_dir=DATA)
