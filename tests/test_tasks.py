import json

import numpy as np
import pytest
import torch
from conftest import DATA

from gptbench.data.summary import summarize
from gptbench.evaluation.metrics import make_metric
from gptbench.data.task_data import collate, encode_split, layout
from gptbench.tasks import TASKS, DataError, SplitUnavailable, get_task
from gptbench.tasks.base import TaskSpec, TsvSource

# Official counts of every split present in ../shared/data (its README), label counts in the
# order of each task's labels; None where the split is unlabelled or a regression.
OFFICIAL = {
    ("cola", "train"): (8551, [2528, 6023]), ("cola", "dev"): (1043, [322, 721]), ("cola", "test"): (1063, None),
    ("sst2", "train"): (67349, [29780, 37569]), ("sst2", "dev"): (872, [428, 444]), ("sst2", "test"): (1821, None),
    ("mrpc", "train"): (3668, [1194, 2474]), ("mrpc", "dev"): (408, [129, 279]), ("mrpc", "test"): (1725, None),
    ("stsb", "train"): (5749, None), ("stsb", "dev"): (1500, None), ("stsb", "test"): (1379, None),
    ("rte", "train"): (2490, [1249, 1241]), ("rte", "dev"): (277, [146, 131]), ("rte", "test"): (3000, None),
    ("wnli", "train"): (635, [323, 312]), ("wnli", "dev"): (71, [40, 31]), ("wnli", "test"): (146, None),
    ("qnli", "dev"): (5463, [2702, 2761]), ("qnli", "test"): (5463, None),
    ("snli", "dev"): (9842, [3329, 3235, 3278]), ("snli", "test"): (9824, [3368, 3219, 3237]),
    ("scitail", "test"): (2126, [842, 1284]),
    ("race", "train"): (25421 + 50882, None), ("race", "dev"): (1436 + 3451, None),
    ("story_cloze", "train"): (1497, None), ("story_cloze", "dev"): (374, None), ("story_cloze", "test"): (1871, [960, 911]),
    ("dprd", "train"): (1322, None), ("dprd", "test"): (564, None),
}  # fmt: skip
ABSENT = {("qqp", s) for s in ("train", "dev", "test")} | {("mnli", s) for s in TASKS["mnli"].splits} | {
    ("qnli", "train"), ("snli", "train"), ("scitail", "train"), ("scitail", "dev"), ("race", "test")}  # fmt: skip


def test_every_split_is_either_present_with_official_counts_or_reported_absent():
    assert {(t, s) for t, spec in TASKS.items() for s in spec.all_splits} == set(OFFICIAL) | ABSENT
    for name, spec in TASKS.items():
        for summary in summarize(spec, DATA):
            key = (name, summary.split)
            if key in ABSENT:
                assert summary.examples is None and "not found" in summary.missing, key
                continue
            count, labels = OFFICIAL[key]
            assert summary.examples == count, key
            if labels is not None:
                assert list(summary.labels.values()) == labels, key


def test_subgroups_and_dropped_rows():
    race = {s.split: s for s in summarize(get_task("race"), DATA)}
    assert race["train"].groups == {"middle": 25421, "high": 50882}
    assert race["dev"].groups == {"middle": 1436, "high": 3451}
    snli = {s.split: s for s in summarize(get_task("snli"), DATA)}
    assert (snli["dev"].dropped, snli["test"].dropped) == (158, 176)  # '-' = no gold label
    val = {s.split: s for s in summarize(get_task("story_cloze"), DATA)}
    assert val["train"].labels["1"] + val["dev"].labels["1"] == 962  # the whole validation file
    stsb = {s.split: s for s in summarize(get_task("stsb"), DATA)}
    assert stsb["train"].score_range == (0.0, 5.0)


def test_story_cloze_split_is_the_released_one():
    from sklearn.model_selection import train_test_split

    spec = get_task("story_cloze")
    source = spec.splits["train"].base
    records, _ = source.read(DATA / spec.data_subdir)
    train, dev = train_test_split(records, test_size=374, random_state=3535999445)
    assert [r["_where"] for r in spec.read("train", DATA)[0]] == [r["_where"] for r in train]
    assert [r["_where"] for r in spec.read("dev", DATA)[0]] == [r["_where"] for r in dev]


def first(task, split="dev"):
    return get_task(task).read(split, DATA)[0][:1]


def test_classification_layout_of_a_real_example(gpt1_tokenizer):
    t, [record] = gpt1_tokenizer, first("sst2")
    assert record["text"] == "it 's a charming and often affecting journey . "
    ds = encode_split(get_task("sst2"), [record], t, n_ctx=512)
    assert ds[0]["input_ids"] == [[t.start_id, *t.encode(record["text"]), t.extract_id]]
    assert ds[0]["label"] == 1
    assert t.decode(ds[0]["input_ids"][0]) == "_start_ it 's a charming and often affecting journey . _classify_"


def test_entailment_layout_of_a_real_example(gpt1_tokenizer):
    t, [record] = gpt1_tokenizer, first("rte")
    ds = encode_split(get_task("rte"), [record], t, n_ctx=512)
    p, h = t.encode(record["premise"]), t.encode(record["hypothesis"])
    assert ds[0]["input_ids"] == [[t.start_id, *p, t.delimiter_id, *h, t.extract_id]]
    assert get_task("rte").labels[ds[0]["label"]] == "not_entailment"


def test_similarity_layout_has_both_orders(gpt1_tokenizer):
    t, [record] = gpt1_tokenizer, first("mrpc")
    ds = encode_split(get_task("mrpc"), [record], t, n_ctx=512)
    a, b = t.encode(record["text_a"]), t.encode(record["text_b"])
    d, s, e = t.delimiter_id, t.start_id, t.extract_id
    assert ds[0]["input_ids"] == [[s, *a, d, *b, e], [s, *b, d, *a, e]]
    assert ds[0]["label"] == 1


def test_multiple_choice_layouts(gpt1_tokenizer):
    t = gpt1_tokenizer
    [story] = first("story_cloze", "test")
    ds = encode_split(get_task("story_cloze"), [story], t, n_ctx=512)
    context = t.encode(story["context"])
    assert ds[0]["input_ids"] == [[t.start_id, *context, t.delimiter_id, *t.encode(c), t.extract_id] for c in story["choices"]]
    [question] = first("race")
    ds = encode_split(get_task("race"), [question], t, n_ctx=128)  # the article must be cut
    q = t.encode(question["question"])
    for seq, choice in zip(ds[0]["input_ids"], question["choices"]):
        answer = t.encode(choice)
        assert len(seq) == 128 and seq[-len(answer) - 2 - len(q) : -len(answer) - 2] == q
        assert seq[-len(answer) - 2 :] == [t.delimiter_id, *answer, t.extract_id]
    assert ds[0]["truncated"] and ds[0]["group"] == 0  # middle


def test_truncation_keeps_the_hypothesis_and_the_special_tokens(gpt1_tokenizer):
    t = gpt1_tokenizer
    spec = TaskSpec("toy", "entailment", ("a", "b"), ("accuracy",), {"train": TsvSource("x")}, "x",
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


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_loaders_of_splits_absent_here_on_files_in_the_original_format(tmp_path):
    mnli_head = "index\tpromptID\tpairID\tgenre\ts1b\ts2b\ts1p\ts2p\tsentence1\tsentence2\tlabel1"
    write(tmp_path / "glue/MNLI/train.tsv", mnli_head + "\tgold_label\n0\t1\t2\tfiction\t(\t(\t(\t(\tA man sleeps.\tA man rests.\tentailment\tentailment\n")
    write(tmp_path / "glue/MNLI/dev_matched.tsv", mnli_head + "\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label\n"
          "0\t1\t2\tgov\t(\t(\t(\t(\tIt rains.\tIt is dry.\tcontradiction\tcontradiction\tneutral\tcontradiction\tcontradiction\tcontradiction\n")  # fmt: skip
    write(tmp_path / "glue/QQP/train.tsv", "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n7\t1\t2\tHow do I cook?\tHow to cook?\t1\n")
    write(tmp_path / "glue/QNLI/train.tsv", "index\tquestion\tsentence\tlabel\n0\tWho won?\tParis won in 1900.\tentailment\n")
    write(tmp_path / "snli/snli_1.0_train.jsonl", json.dumps({"gold_label": "neutral", "sentence1": "A dog runs.", "sentence2": "A dog plays."})
          + "\n" + json.dumps({"gold_label": "-", "sentence1": "x", "sentence2": "y"}) + "\n")  # fmt: skip
    write(tmp_path / "scitail/SciTailV1.1/tsv_format/scitail_1.0_dev.tsv", "Plants need light.\tPlants use light.\tentails\n"
          "Rocks are hard.\tPlants use light.\tneutral\n")  # fmt: skip
    passage = {"article": "Tom has a cat.", "questions": ["What does Tom have?"], "options": [["a cat", "a dog", "a fish", "a bird"]],
               "answers": ["A"], "id": "high1.txt"}  # fmt: skip
    write(tmp_path / "race/RACE/test/high/1.txt", json.dumps(passage))
    write(tmp_path / "race/RACE/test/middle/2.txt", json.dumps({**passage, "answers": ["B"]}))

    def read(task, split):
        records, dropped = get_task(task).read(split, tmp_path)
        return [({k: v for k, v in r.items() if k != "_where"}) for r in records], dropped

    assert read("mnli", "train")[0] == [{"premise": "A man sleeps.", "hypothesis": "A man rests.", "label": 0}]
    assert read("mnli", "dev_matched")[0][0]["label"] == 2  # gold_label, the last of 16 columns
    assert read("qqp", "train")[0] == [{"text_a": "How do I cook?", "text_b": "How to cook?", "label": 1}]
    assert read("qnli", "train")[0] == [{"premise": "Paris won in 1900.", "hypothesis": "Who won?", "label": 0}]
    assert read("snli", "train") == ([{"premise": "A dog runs.", "hypothesis": "A dog plays.", "label": 1}], 1)
    assert [r["label"] for r in read("scitail", "dev")[0]] == [0, 1]  # entails, neutral
    race = read("race", "test")[0]
    assert [(r["group"], r["label"]) for r in race] == [("middle", 1), ("high", 0)]
    assert race[0]["choices"] == ["a cat", "a dog", "a fish", "a bird"]


STSB_HEADER = "\t".join(["h"] * 10) + "\n"


@pytest.mark.parametrize(
    "task, path, content, message",
    [
        ("sst2", "glue/SST-2/train.tsv", "sentence\tlabel\ngood movie\t1\nno label column here\n",
         r"train.tsv:3: 1 tab-separated columns where the header has 2"),
        ("sst2", "glue/SST-2/train.tsv", "sentence\n", r"train.tsv:1: expected at least 2 tab-separated columns, got 1"),
        ("sst2", "glue/SST-2/train.tsv", "sentence\tlabel\ngood movie\tpositive\n", r"train.tsv:2: unknown label 'positive'"),
        ("sst2", "glue/SST-2/train.tsv", "sentence\tlabel\n\t1\n", r"train.tsv:2: empty 'text'"),
        ("stsb", "glue/STS-B/train.tsv", STSB_HEADER + "\t".join(["x"] * 9) + "\thigh\n",
         r"train.tsv:2: expected a numeric score in \[0, 5\], got 'high'"),
        ("race", "race/RACE/train/middle/1.txt", "not json", r"1.txt: not a RACE JSON passage"),
        ("race", "race/RACE/train/high/1.txt", '{"article": "a"}', r"1.txt: expected keys article, questions"),
        ("dprd", "dprd/train.c.txt", "A sentence.\nit\nx,y\n", r"train.c.txt:1: expected a block of 4 lines, got 3"),
        ("dprd", "dprd/train.c.txt", "A sentence.\nit\nx,y\nz\n", r"train.c.txt:4: answer 'z' is not one of"),
        ("snli", "snli/snli_1.0_train.jsonl", '{"gold_label": "neutral"\n', r"snli_1.0_train.jsonl:1: not valid JSON"),
        ("snli", "snli/snli_1.0_train.csv", "label,sentence1,sentence2\nneutral,a,b\n", r"snli_1.0_train.csv:1: missing column\(s\) \['similarity'\]"),
    ],
)  # fmt: skip
def test_malformed_input_names_file_and_line(tmp_path, task, path, content, message):
    write(tmp_path / path, content)
    if task == "race":
        (tmp_path / "race/RACE/train/middle").mkdir(parents=True, exist_ok=True)
        (tmp_path / "race/RACE/train/high").mkdir(parents=True, exist_ok=True)
    with pytest.raises(DataError, match=message):
        get_task(task).read("train", tmp_path)


def test_missing_split_is_reported_not_empty(tmp_path):
    with pytest.raises(SplitUnavailable, match="glue/SST-2/dev.tsv: not found"):
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
    records, _ = get_task("sst2").read("dev", None)
    assert calls == [(("nyu-mll/glue", "sst2"), {"split": "validation"})]
    assert [(r["text"], r["label"]) for r in records] == [("great", 1), ("awful", 0)]
    calls.clear()
    race = datasets.Dataset.from_dict({"article": ["a"], "question": ["q"], "options": [["1", "2", "3", "4"]], "answer": ["C"]})
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **kw: calls.append((a, kw)) or race)
    records, _ = get_task("race").read("dev", None)
    assert [c[0] for c in calls] == [("ehovy/race", "middle"), ("ehovy/race", "high")]
    assert [(r["group"], r["label"]) for r in records] == [("middle", 2), ("high", 2)]


def test_offline_hub_is_a_clear_error(monkeypatch):
    import datasets

    def offline(*a, **kw):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError, match="could not load nyu-mll/glue/cola.*GPTBENCH_DATA"):
        get_task("cola").read("train", None)


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


def test_matthews_of_a_one_class_predictor_is_zero():
    """GLUE's (scikit-learn's) definition; torchmetrics' own MatthewsCorrCoef gives 0.038 here."""
    target = torch.tensor([1] * 69 + [0] * 31)
    for preds in (torch.ones(100, dtype=torch.long), torch.zeros(100, dtype=torch.long)):
        metric = make_metric("matthews", 2)
        metric.update(preds, target)
        assert metric.compute().item() == 0.0
    metric = make_metric("matthews", 2)
    metric.update(target, target)
    assert metric.compute().item() == pytest.approx(1.0)


def test_data_command_prints_counts(capsys):
    from gptbench.cli import main

    assert main(["data", "snli", "--data-dir", str(DATA)]) == 0
    out = capsys.readouterr().out
    assert "dev" in out and "9,842" in out and "158 rows without a gold label dropped" in out
    assert "train            absent" in out
    assert main(["data", "nope", "--data-dir", str(DATA)]) == 2


def test_encoded_splits_are_cached(gpt1_tokenizer, tmp_path, monkeypatch):
    from gptbench.data import task_data

    first_run = task_data.load_encoded(get_task("rte"), "dev", gpt1_tokenizer, 128, DATA, tmp_path)
    monkeypatch.setattr(task_data, "encode_split", lambda *a: pytest.fail("tokenized again"))
    again = task_data.load_encoded(get_task("rte"), "dev", gpt1_tokenizer, 128, DATA, tmp_path)
    assert again.data["input_ids"] == first_run.data["input_ids"] and len(again.data) == 277


def test_length_grouped_sampler_is_a_permutation_with_homogeneous_batches():
    from gptbench.data.sampling import ResumableSampler

    lengths = list(np.random.default_rng(0).integers(5, 500, size=1000))
    grouped = ResumableSampler(1000, seed=3, lengths=lengths, batch_size=16).order()
    assert sorted(grouped) == list(range(1000))
    spread = lambda order: np.mean([np.ptp([lengths[i] for i in order[k:k + 16]]) for k in range(0, 1000, 16)])  # noqa: E731
    plain = ResumableSampler(1000, seed=3).order()
    assert spread(grouped) < 0.2 * spread(plain)
    assert grouped != ResumableSampler(1000, seed=4, lengths=lengths, batch_size=16).order()  # still shuffled
