"""The paper's analysis (#7): the LSTM behind GPT's interface, Figure 2's sweeps, the claims."""

import json

import pytest
import torch
from conftest import DATA, pretrained_model
from rescoring import rescored_accuracy, saved_model
from sklearn.metrics import accuracy_score

from gptbench.config import ConfigError, load_config
from gptbench.evaluation import zeroshot as zs
from gptbench.evaluation.loading import load_model_and_tokenizer
from gptbench.models import LSTMConfig, LSTMLM, build_model, load_pretrained, model_spec
from gptbench.models.checkpoints import CheckpointError
from gptbench.models.gpt import GPT
from gptbench.suite import claims
from gptbench.suite.figure2 import load_zero_shot_curve
from gptbench.suite.sweep import expand, load_table, run_sweep

SMALL = LSTMConfig(vocab_size=60, n_ctx=16, n_embd=16, n_hidden=40, embd_pdrop=0.0, resid_pdrop=0.0)


def non_embedding(model) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if "embed" not in n)


@pytest.mark.parametrize("preset", ["smoke", "mini"])
def test_preset_lstm_matches_the_transformers_parameters(preset):
    cfg = load_config(preset)
    gpt = build_model(cfg.network_config(1000, 3))
    lstm = build_model(load_config(preset, ["architecture=lstm"]).network_config(1000, 3))
    assert isinstance(gpt, GPT) and isinstance(lstm, LSTMLM) and lstm.config.n_layer == 1
    assert non_embedding(lstm) == pytest.approx(non_embedding(gpt), rel=0.005)  # the presets' stated choice
    assert lstm.tokens_embed.weight.shape == gpt.tokens_embed.weight.shape  # same tokenizer, same width


def test_lstm_right_padding_and_prefix_state():
    torch.manual_seed(0)
    model = LSTMLM(SMALL).eval()
    ids = torch.randint(0, 60, (2, 7))
    full, _ = model(ids)
    mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3])
    padded, _ = model(ids, attention_mask=mask)
    assert torch.allclose(padded[1, :4], full[1, :4], atol=1e-6)  # pads after a token never change it
    with pytest.raises(ValueError, match="right padding"):
        model(ids, attention_mask=torch.tensor([[0, 1, 1, 1, 1, 1, 1]] * 2))
    _, past = model(ids[:1, :3])  # the state after a prefix continues the sequence exactly
    rest, _ = model(ids[:1, 3:], past_key_values=past)
    assert torch.allclose(rest, full[:1, 3:], atol=1e-6)
    # zero-shot's shared-prefix path gives the scores of one full sequence per candidate
    prefix, conts = [1, 5, 9, 2], [[3, 4, 8], [7], [11, 12]]
    shared = zs.continuation_logprobs(model, prefix, conts)
    naive = zs.continuation_logprobs_naive(model, [(prefix, c) for c in conts])
    for a, b in zip(shared, naive):
        assert a.shape == b.shape and abs(a - b).max() < 1e-5


def test_lstm_save_load_and_checkpoint_errors(tmp_path):
    torch.manual_seed(0)
    model = LSTMLM(SMALL).eval()
    model.save_pretrained(tmp_path / "lstm")
    again = load_pretrained(tmp_path / "lstm", dropout={"embd_pdrop": 0.0, "attn_pdrop": 0.0, "resid_pdrop": 0.0})
    assert isinstance(again, LSTMLM) and again.config == model.config
    ids = torch.randint(0, 60, (2, 5))
    assert torch.equal(again.eval().lm_logits(ids), model.lm_logits(ids))
    assert model_spec(again)["arch"] == "lstm" and isinstance(build_model(model_spec(again)), LSTMLM)
    with pytest.raises(CheckpointError, match="not a GPT"):
        GPT.from_pretrained(tmp_path / "lstm")
    with pytest.raises(CheckpointError, match="n_hidden"):
        load_pretrained(tmp_path / "lstm", n_hidden=50)  # the weights have 40 units
    model.reinit_blocks_from(1)  # one layer: keeping 1 block keeps everything
    assert torch.equal(model.lstm.weight_hh_l0, again.lstm.weight_hh_l0)
    model.reinit_blocks_from(0)
    assert not torch.equal(model.lstm.weight_hh_l0, again.lstm.weight_hh_l0)


def test_lstm_config_is_validated():
    with pytest.raises(ConfigError, match="architecture"):
        load_config("smoke", ["architecture=gru"])
    with pytest.raises(ConfigError, match="lstm.n_hidden"):
        load_config("smoke", ["architecture=lstm", "lstm.n_hidden=64"])  # not wider than n_embd=128
    with pytest.raises(ConfigError, match="finetune.n_transfer"):
        load_config("smoke", ["architecture=lstm", "finetune.n_transfer=2"])  # the LSTM has 1 layer
    with pytest.raises(ConfigError, match="pretrain.keep_steps"):
        load_config("smoke", ["pretrain.keep_steps=[0,900]"])  # past max_steps=800
    with pytest.raises(ConfigError, match="reproduce.sweeps"):
        load_config("smoke", ["reproduce.sweeps=[table9]"])


def test_lstm_pretrains_and_finetunes_through_the_same_commands(pretrained, capsys):
    from gptbench.cli import main
    from gptbench.run_identity import finetune_dir, pretrain_dir

    lstm = [*pretrained, "architecture=lstm", "finetune.select=holdout"]  # RTE's auto protocol, made explicit
    assert main(["pretrain", "smoke", *lstm]) == 0
    stage = pretrain_dir(load_config("smoke", lstm))
    assert stage.name.startswith("lstm1x48-e32-ctx32-bpe400-12steps-")
    assert stage != pretrain_dir(load_config("smoke", pretrained))
    metrics = json.loads((stage / "metrics.json").read_text())
    assert metrics["architecture"] == "lstm" and metrics["val_loss"] < 6.0  # ln(403) = 6.0: it learned
    assert isinstance(load_pretrained(stage / "model"), LSTMLM)
    assert (stage / "snapshots" / "step4" / "config.json").is_file()
    assert main(["finetune", "smoke", *lstm, "task=rte", "finetune.n_transfer=0", "finetune.score_train=true"]) == 0
    cfg = load_config("smoke", [*lstm, "finetune.task=rte", "finetune.n_transfer=0", "finetune.score_train=true"])
    results = json.loads((finetune_dir(cfg) / "results.json").read_text())
    assert finetune_dir(cfg).parent.name.startswith("lstm-pretrained-transfer0-")
    for split in ("dev", "train"):  # the saved LSTM, re-scored by scikit-learn on the same examples
        rescored = rescored_accuracy(finetune_dir(cfg) / "model", results, split)
        assert results["metrics"][split]["accuracy"] == pytest.approx(rescored, abs=1e-6), split
    assert results["splits"]["train"]["examples"] == 96  # max_train_examples of the tiny overrides
    assert results["init"].endswith("model")
    # random initialisation of the same LSTM (Table 5's "no pre-training" for the LSTM)
    assert main(["finetune", "smoke", *lstm, "task=rte", "finetune.init=none", "finetune.epochs=1"]) == 0
    scratch = load_config("smoke", [*lstm, "finetune.task=rte", "finetune.init=none", "finetune.epochs=1"])
    assert finetune_dir(scratch).parent.name.startswith("lstm-scratch-")


def test_zero_shot_on_an_lstm_checkpoint(pretrained):
    from gptbench.run_identity import pretrain_dir
    from gptbench.training.pretrain import run_pretrain

    cfg = load_config("smoke", [*pretrained, "architecture=lstm"])
    run_pretrain(cfg)
    model, tok = load_model_and_tokenizer(pretrain_dir(cfg) / "snapshots" / "step12", device="cpu")
    assert isinstance(model, LSTMLM) and not model.training
    results = zs.evaluate_zero_shot(model, tok, ["sst2", "race"], DATA, max_examples=6)
    assert results["sst2"]["n"] == results["race"]["n"] == 6
    # The reported scores against predictions made the other way (one full sequence per candidate
    # instead of the shared prefix's state), scored by scikit-learn.
    for task, predict in (("sst2", zs.sst2_predict), ("race", zs.race_predict)):
        records = zs._read(task, "dev", DATA, 6)
        inputs = [r["text"] for r in records] if task == "sst2" else records
        expected = accuracy_score([r["label"] for r in records], predict(model, tok, inputs, shared=False))
        assert results[task]["score"] == pytest.approx(expected, abs=1e-9), task
    shared = zs.race_scores(model, tok, zs._read("race", "dev", DATA, 2)[0], shared=True)
    naive = zs.race_scores(model, tok, zs._read("race", "dev", DATA, 2)[0], shared=False)
    assert shared == pytest.approx(naive, abs=1e-4)


def test_figure2_sweeps_write_the_figure_and_resume(pretrained, tmp_path, capsys):
    """Left: transfer0..n_layer on RTE standing in for MNLI (absent here), dev and train scores.
    Right: the zero-shot heuristics on every kept snapshot of both architectures."""
    results = tmp_path / "results"
    table = load_table("figure2_layers")
    assert table.layer_sweep and list(table.with_layers(2).variants) == ["transfer0", "transfer1", "transfer2"]
    runs = expand(table, "smoke", pretrained, tasks=["race"])
    assert runs[1].config().finetune.n_transfer == 1 and runs[1].config().finetune.score_train
    run_sweep("figure2_layers", "smoke", [*pretrained, "tasks=[mnli]", f"results_dir={results}",
                                          "finetune.epochs=1", "finetune.max_train_examples=48"])  # fmt: skip
    figure2 = json.loads((results / "figure2.json").read_text())
    assert [(p["task"], p["n_layers"]) for p in figure2["layers"]] == [("rte", 0), ("rte", 1), ("rte", 2)]
    # Each point is its run's dev and train accuracy (one seed: the median is the run), which the
    # run's saved model gives again, re-scored by scikit-learn on the same examples.
    run_dir = pretrained_model(pretrained).parents[1]  # runs/tiny
    for point in figure2["layers"]:
        (status_file,) = (results / "runs/figure2_layers").glob(f"*/transfer{point['n_layers']}/seed*.json")
        status = json.loads(status_file.read_text())
        model = saved_model(run_dir, status)
        assert point["score"] == pytest.approx(rescored_accuracy(model, status, "dev"), abs=1e-6)
        assert point["train_score"] == pytest.approx(rescored_accuracy(model, status, "train"), abs=1e-6)
    assert any("rte stands in for mnli" in note for note in figure2["notes"])

    assert load_zero_shot_curve("figure2_zeroshot").architectures == ("transformer", "lstm")
    encoder_curve = tmp_path / "encoder_curve.yaml"  # the encoder has no next-token heuristics to score
    encoder_curve.write_text("kind: zero_shot_curve\narchitectures: [transformer, bert]\ntasks: [sst2]\n")
    with pytest.raises(ConfigError, match=r"architectures=\['transformer', 'bert'\].*BERT encoder does not define"):
        load_zero_shot_curve(str(encoder_curve))
    args = [*pretrained, f"results_dir={results}", "tasks=[sst2,dprd]", "max_examples=5"]
    run_sweep("figure2_zeroshot", "smoke", args)
    files = sorted(str(p.relative_to(results / "zeroshot")) for p in (results / "zeroshot").rglob("*.json"))
    assert files == [f"{arch}/step{s}.json" for arch in ("lstm", "transformer") for s in (0, 12, 4)]
    figure2 = json.loads((results / "figure2.json").read_text())
    assert len(figure2["zero_shot"]) == 12 and len(figure2["layers"]) == 3  # both panels kept
    capsys.readouterr()
    run_sweep("figure2_zeroshot", "smoke", args)  # everything scored: nothing is recomputed
    assert "6 snapshots (6 already scored)" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="do not apply to a zero-shot curve"):
        run_sweep("figure2_zeroshot", "smoke", [*args, "seeds=[1]"])

    from gptbench.suite.report import write_report

    write_report(results)
    md = (results / "leaderboard.md").read_text()
    assert "rte stands in for mnli" in md and "| rte dev |" in md and (results / "figures" / "figure2.png").is_file()
    assert "## The paper's claims, checked" in md


def cell(variant, column, median, train=None):
    return {"variant": variant, "column": column, "task": column.lower(), "median": median, "train_examples": train,
            "seeds": [1], "values": [median], "split": "dev", "metric": "accuracy"}  # fmt: skip


def table5(rows: dict[str, dict[str, float]], sizes=None) -> dict:
    columns = sorted({c for values in rows.values() for c in values})
    cells = [cell(v, c, values.get(c), (sizes or {}).get(c)) for v, values in rows.items() for c in columns]
    return {"id": "table5_ablations", "status": "ok", "columns": columns, "cells": cells}


def test_claims_on_known_numbers():
    # One seed per cell and no predictions: no interval, so no Table 5 verdict (tests/test_claims.py
    # has the rules with intervals).
    board = table5({"full": {"CoLA": 20.0, "RTE": 55.0, "SST2": 80.0}, "no_pretraining": {"CoLA": 10.0, "RTE": 56.0},
                    "lstm": {"CoLA": 15.0, "RTE": 50.0, "SST2": 85.0}})  # fmt: skip
    assert claims.check_pretraining(board)["verdict"] == "not tested"  # SST2 has no pair
    assert "CoLA 20.0 vs 10.0 (medians; paired mean +10.0, no interval: 1 seed" in claims.check_pretraining(board)["evidence"]
    lstm = claims.check_lstm(board)
    assert lstm["verdict"] == "not tested" and "mean effect +1.7, no interval" in lstm["evidence"]
    layers = {"layers": [{"task": "race", "split": "dev", "n_layers": n, "score": s} for n, s in enumerate([30, 35, 40])]
              + [{"task": "rte", "split": "dev", "n_layers": n, "score": s} for n, s in enumerate([50, 49, 52])]}
    assert claims.check_layers(layers)["verdict"] == "partly"
    assert "race dev: 30.0 with 0 blocks → 40.0 with 2, rising at 2 of 2" in claims.check_layers(layers)["evidence"]
    rising = [{"model": "transformer", "task": "sst2", "step": s, "normalised": v, "score": 0}
              for s, v in ((0, 0.0), (10, 0.1), (100, 0.3))]
    noisy = [{"model": "lstm", "task": "sst2", "step": s, "normalised": v, "score": 0}
             for s, v in ((0, 0.0), (10, 0.2), (100, 0.1))]
    result = claims.check_zero_shot({"zero_shot": rising + noisy})  # one run per snapshot: at most partly
    assert result["verdict"] == "partly" and "transformer: sst2 ρ=+1.00" in result["evidence"]
    assert result["evidence"].endswith("; shown without that, partly with it")
    falling = [{**p, "model": "transformer", "normalised": 0.4 - p["step"] / 1000} for p in rising]
    assert claims.check_zero_shot({"zero_shot": falling + noisy})["verdict"] == "not shown"
    assert claims.check_zero_shot({"zero_shot": noisy})["verdict"] == "not tested"  # the claim is about the Transformer
    assert claims.check_zero_shot(None)["verdict"] == "not tested"
    assert claims.spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    assert claims.ranks([5.0, 1.0, 5.0]) == [1.5, 0.0, 1.5]


def test_reproduce_plan_of_the_presets():
    smoke = load_config("smoke").reproduce
    assert smoke.sweeps[-2:] == ["figure2_layers", "figure2_zeroshot"] and "table5_ablations" in smoke.sweeps
    assert smoke.arguments("table5_ablations") == ["tasks=[cola,sst2,rte]"]
    assert smoke.arguments("figure2_zeroshot") == ["max_examples=150"]
    mini = load_config("mini").reproduce
    seeds, caps = mini.arguments("table2_nli")
    assert seeds == ("task_seeds={rte: [1234, 2345, 3456], mrpc: [1234, 2345, 3456], cola: [1234, 2345, 3456], "
                     "stsb: [1234, 2345, 3456], story_cloze: [1234, 2345, 3456]}")  # fmt: skip
    assert caps.startswith("task_overrides={cola: [finetune.max_train_examples=2000], ")
    assert mini.arguments("figure2_layers")[2:] == ["variants=[transfer0,transfer2,transfer4,transfer6]"]


def test_reproduce_plan_of_the_gpu_preset():
    """The gpu preset (issue #29): the paper's network, tokenizer and recipe on the whole corpus,
    mini's structure (every sweep, 3 seeds for the small tasks), and its fine-tunes sharing the GPU
    through the sweep's keys, which the zero-shot curves (no worker processes) do not get."""
    cfg, paper = load_config("gpu"), load_config("paper")
    assert (cfg.model, cfg.tokenizer.kind, cfg.corpus.max_bytes, cfg.lstm) == (paper.model, "gpt1", None, paper.lstm)
    assert cfg.finetune.lr == paper.finetune.lr == 6.25e-5 and cfg.finetune.epochs == 3 and cfg.finetune.lm_coef == 0.5
    assert (cfg.trainer.precision, cfg.trainer.compile, cfg.model.pad_vocab_multiple) == ("bf16-mixed", True, 64)
    assert cfg.pretrain.batch_size * cfg.model.n_ctx * cfg.pretrain.max_steps == 11_796_480  # the budget's tokens
    plan = cfg.reproduce
    assert plan.sweeps == load_config("mini").reproduce.sweeps
    assert all(plan.task_seeds[t] == [1234, 2345, 3456] for t in ("rte", "mrpc", "cola", "stsb", "story_cloze"))
    table = plan.arguments("table5_ablations")
    assert table[2:] == ["jobs=4", "share_gpus=true", "worker_runs=64"]
    assert plan.arguments("figure2_layers")[-1] == "variants=[transfer0,transfer4,transfer8,transfer12]"
    assert plan.arguments("figure2_zeroshot") == table[:2] + ["max_examples=200"]
    runs = expand(load_table("table5_ablations"), "gpu", ["finetune.task=sst2"], task_seeds=plan.task_seeds,
                  task_overrides=plan.task_overrides, tasks=["rte", "sst2"])  # fmt: skip
    assert len(runs) == 8 * (3 + 1)  # every row, RTE's three seeds and SST-2's one
    assert {r.config().finetune.max_train_examples for r in runs if r.task == "rte"} == {300}


def test_reproduce_sharing_keys_are_validated():
    with pytest.raises(ConfigError, match=r"reproduce.worker_runs=0: expected >= 1"):
        load_config("gpu", ["reproduce.worker_runs=0"])
    with pytest.raises(ConfigError, match=r"reproduce.jobs=0: expected >= 1"):
        load_config("gpu", ["reproduce.jobs=0"])
