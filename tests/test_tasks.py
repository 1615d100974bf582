import collections

import numpy as np
import pytest
import torch
from conftest import DATA

from gptbench.metrics import make_metric
from gptbench.task_data import collate, encode_split, layout
from gptbench.tasks import DataError, SplitUnavailable, get_task
from gptbench.tasks.base import TaskSpec, TsvSource


def test_sst2_counts_and_labels_match_the_official_ones():
    spec = get_task("sst2")
    counts = {}
    for split in ("train", "dev"):
        records = spec.read(split, DATA)
        counts[split] = (len(records), collections.Counter(r["label"] for r in records))
    assert counts["train"] == (67_349, {1: 37_569, 0: 29_780})
    assert counts["dev"] == (872, {1: 444, 0: 428})


def test_classification_layout_of_a_real_example(gpt1_tokenizer):
    spec = get_task("sst2")
    record = spec.read("dev", DATA)[0]
    assert record["text"] == "it 's a charming and often affecting journey . "
    ds = encode_split(spec, [record], gpt1_tokenizer, n_ctx=512)
    t = gpt1_tokenizer
    body = t.encode(record["text"])
    assert ds[0]["input_ids"] == [[t.start_id, *body, t.extract_id]]
    assert ds[0]["label"] == 1
    assert t.decode(ds[0]["input_ids"][0]) == "_start_ it 's a charming and often affecting journey . _classify_"


def test_truncation_keeps_the_hypothesis_and_the_special_tokens(gpt1_tokenizer):
    t = gpt1_tokenizer
    spec = TaskSpec("toy", "entailment", ("a", "b"), ("accuracy",), {"train": TsvSource("x", {})}, "x",
                    eval_splits=("train",), truncate="premise")  # fmt: skip
    premise, hypothesis = list(range(100, 130)), [7, 8, 9]
    (seq,), cut = layout(spec, {"premise": premise, "hypothesis": hypothesis}, t, n_ctx=16)
    assert cut and len(seq) == 16
    assert seq == [t.start_id, *premise[:10], t.delimiter_id, 7, 8, 9, t.extract_id]


def test_collate_pads_to_the_longest_in_the_batch():
    batch = collate([{"input_ids": [[5, 6, 7]], "label": 0}, {"input_ids": [[5, 6, 7, 8, 9]], "label": 1}])
    assert batch["input_ids"].shape == (2, 1, 5)
    assert batch["attention_mask"].tolist() == [[[1, 1, 1, 0, 0]], [[1, 1, 1, 1, 1]]]
    assert batch["labels"].tolist() == [0, 1]


def test_malformed_tsv_names_file_and_line(tmp_path):
    root = tmp_path / "glue" / "SST-2"
    root.mkdir(parents=True)
    (root / "train.tsv").write_text("sentence\tlabel\ngood movie\t1\nno label column here\n")
    with pytest.raises(DataError, match=r"train.tsv:3: expected at least 2 tab-separated columns, got 1"):
        get_task("sst2").read("train", tmp_path)
    (root / "train.tsv").write_text("sentence\tlabel\ngood movie\tpositive\n")
    with pytest.raises(DataError, match=r"train.tsv:2: unknown label 'positive'"):
        get_task("sst2").read("train", tmp_path)
    (root / "train.tsv").write_text("sentence\tlabel\n\t1\n")
    with pytest.raises(DataError, match=r"train.tsv:2: empty 'text'"):
        get_task("sst2").read("train", tmp_path)
    with pytest.raises(SplitUnavailable, match="dev.tsv: file not found"):
        get_task("sst2").read("dev", tmp_path)


def test_hub_loading_goes_through_datasets(monkeypatch):
    import datasets

    fake = datasets.Dataset.from_dict(
        {"sentence": ["great", "awful"], "label": [1, 0], "idx": [0, 1]},
        features=datasets.Features({"sentence": datasets.Value("string"),
                                    "label": datasets.ClassLabel(names=["negative", "positive"]),
                                    "idx": datasets.Value("int32")}),  # fmt: skip
    )
    calls = []
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **kw: calls.append((a, kw)) or fake)
    spec = get_task("sst2")
    records = spec.read("dev", None)
    assert calls == [(("nyu-mll/glue", "sst2"), {"split": "validation"})]
    assert [(r["text"], r["label"]) for r in records] == [("great", 1), ("awful", 0)]


@pytest.mark.parametrize("name", ["accuracy", "f1", "matthews", "pearson", "spearman"])
def test_metrics_equal_sklearn_and_scipy(name):
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

    rng = np.random.default_rng(0)
    if name in ("pearson", "spearman"):
        preds, target = rng.normal(size=500), rng.normal(size=500) + 0.3 * np.arange(500) / 500
        expected = (pearsonr if name == "pearson" else spearmanr)(preds, target)[0]
        metric = make_metric(name, 1)
        metric.update(torch.tensor(preds, dtype=torch.float32), torch.tensor(target, dtype=torch.float32))
    else:
        classes = 3 if name == "accuracy" else 2
        preds, target = rng.integers(0, classes, 500), rng.integers(0, classes, 500)
        expected = {"accuracy": accuracy_score, "f1": f1_score, "matthews": matthews_corrcoef}[name](target, preds)
        metric = make_metric(name, classes)
        metric.update(torch.tensor(preds), torch.tensor(target))
    assert metric.compute().item() == pytest.approx(expected, abs=1e-5)
