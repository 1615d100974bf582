"""results/paper.yaml against the spec (../shared/reference/gpt1-paper.md): every number the spec
prints for Tables 2-5, the previous-best row and pre-training is in the YAML, equal, and nothing
in the YAML's tables is absent from the spec."""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal

from pathlib import Path

import pytest
from conftest import SHARED

from gptbench.suite.paper import PAPER_NUMBERS, PaperNumbersError, load_paper_numbers
from gptbench.tasks import TASKS

SPEC = SHARED / "reference" / "gpt1-paper.md"
GLUE_TASKS = {"cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli"}
TABLE_KEYS = {2: "table2_nli", 3: "table3_qa", 4: "table4_classification", 5: "table5_ablations"}


def _number(cell: str) -> float:
    assert re.fullmatch(r"\d+\.\d+", cell), f"not a printed number: {cell!r}"
    return float(cell)


@pytest.fixture(scope="module")
def spec() -> str:
    return SPEC.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def spec_tables(spec) -> dict[int, tuple[str, list[str], list[list[str]]]]:
    """Table number -> (title line, header cells, body rows), from the markdown tables."""
    tables = {}
    lines = spec.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"Table (\d) — ", line)
        if not m:
            continue
        j = i + 1
        while not lines[j].startswith("|"):
            j += 1
        rows = []
        while j < len(lines) and lines[j].startswith("|"):
            rows.append([c.strip() for c in lines[j].strip().strip("|").split("|")])
            j += 1
        header, sep, *body = rows
        assert all(set(c) <= {"-", ":"} for c in sep)
        tables[int(m.group(1))] = (line.strip(), header, body)
    assert sorted(tables) == [2, 3, 4, 5], "the spec's Tables 2-5 were not all found"
    return tables


@pytest.fixture(scope="module")
def spec_previous_best(spec) -> list[tuple[str, list[float], str | None]]:
    """(name, values, model or None) for each item of the spec's previous-best sentence."""
    m = re.search(r"Previous best results printed in the paper \(.*?\):(.*?)\n(?:- |\n)", spec, re.S)
    assert m, "the spec's previous-best sentence was not found"
    text = " ".join(m.group(1).split()).rstrip(".")
    items, depth, start = [], 0, 0
    for k, ch in enumerate(text + ","):  # split at the commas outside parentheses
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            items.append(text[start:k].strip())
            start = k + 1
    parsed = []
    for item in items:
        im = re.fullmatch(r"(.+?) (\d+\.\d(?: / \d+\.\d)*)(?: \((.+)\))?", item)
        assert im, f"cannot parse previous-best item {item!r}"
        parsed.append((im.group(1), [float(v) for v in im.group(2).split(" / ")], im.group(3)))
    return parsed


@pytest.fixture(scope="module")
def paper() -> dict:
    return load_paper_numbers()


def _columns(paper):
    for key, table in paper["tables"].items():
        for col in table["columns"]:
            yield key, col


def test_tables_2_to_4_match_the_spec(paper, spec_tables):
    for number in (2, 3, 4):
        title, header, body = spec_tables[number]
        table = paper["tables"][TABLE_KEYS[number]]
        assert table["title"] == title
        (row,) = body
        assert row[0] == "GPT-1"
        spec_values = {label: _number(cell) for label, cell in zip(header[1:], row[1:], strict=True)}
        yaml_values = {col["label"]: col["paper"] for col in table["columns"]}
        assert yaml_values == spec_values, f"Table {number}"
        assert [col["label"] for col in table["columns"]] == header[1:], f"Table {number}: column order"


def test_table_5_matches_the_spec(paper, spec_tables, spec):
    title, header, body = spec_tables[5]
    table = paper["tables"]["table5_ablations"]
    assert title.startswith(table["title"])
    assert [col["label"] for col in table["columns"]] == header[1:]
    assert [r["label"] for r in table["rows"]] == [r[0] for r in body]
    assert [r["variant"] for r in table["rows"]] == ["full", "no_pretraining", "no_aux_lm", "lstm"]
    for row, spec_row in zip(table["rows"], body, strict=True):
        spec_values = {label: _number(cell) for label, cell in zip(header[1:], spec_row[1:], strict=True)}
        assert row["values"] == spec_values, row["label"]

    # The averages: printed values kept, recomputed means recorded, both as the spec states them.
    m = re.search(r"printed averages are ([\d. /]+); recomputing the unweighted mean of the 8\s+"
                  r"columns gives ([\d. /]+)\.", spec)  # fmt: skip
    printed, recomputed = ([float(v) for v in g.split(" / ")] for g in m.groups())
    assert [r["values"]["Avg"] for r in table["rows"]] == printed
    assert [r["avg_recomputed"] for r in table["rows"]] == recomputed
    for row in table["rows"]:
        tasks = [v for k, v in row["values"].items() if k != "Avg"]
        mean = sum(Decimal(str(v)) for v in tasks) / 8  # exact; rounded half up, as the spec does
        assert len(tasks) == 8 and float(mean.quantize(Decimal("0.01"), ROUND_HALF_UP)) == row["avg_recomputed"]
    for v in (*printed, *recomputed):
        assert f"{v}" in table["averages_note"]

    # MNLI is the mean of matched and mismatched: the spec's note and Table 2's values agree.
    mnli = next(c for c in table["columns"] if c["label"] == "MNLI")
    assert mnli["split"] == ["dev_matched", "dev_mismatched"] and mnli["combine"] == "mean"
    assert "mean of matched and mismatched" in mnli["note"]
    assert re.search(r"MNLI column is the mean of matched and mismatched \(82\.1, 81\.4\)", spec)
    t2 = {c["label"]: c["paper"] for c in paper["tables"]["table2_nli"]["columns"]}
    assert round((t2["MNLI-m"] + t2["MNLI-mm"]) / 2 + 1e-9, 1) == table["rows"][0]["values"]["MNLI"]


def test_full_row_of_table_5_repeats_tables_2_and_4(paper):
    full = paper["tables"]["table5_ablations"]["rows"][0]["values"]
    by_task = {}
    for key, col in _columns(paper):
        if key != "table5_ablations" and col["task"] and "/" not in col["metric"]:
            by_task.setdefault(col["task"], col["paper"])
    t5 = {c["label"]: c["task"] for c in paper["tables"]["table5_ablations"]["columns"]}
    for label, task in t5.items():
        if task and task != "mnli":
            assert full[label] == by_task[task], label


def test_previous_best_matches_the_spec(paper, spec_previous_best):
    # The spec's names, normalised, are our task ids (GLUE = the GLUE score). A name with several
    # values ("MNLI 80.6 / 80.1", "RACE 60.2 / 50.3 / 53.3") lists them in its table's column order.
    def key(task, metric):
        return task or ("glue" if metric == "glue_score" else None)

    spec_entries = {name.lower().replace("-", "").replace(" ", "_"): (values, model)
                    for name, values, model in spec_previous_best}  # fmt: skip
    yaml_entries, labels = {}, {}
    for e in paper["previous_best"]:
        values, model = yaml_entries.setdefault(key(e["task"], e["metric"]), ([], e["model"]))
        assert e["model"] == model, e["label"]
        values.append(e["paper"])
        labels.setdefault(key(e["task"], e["metric"]), []).append((e["table"], e["label"]))
    assert yaml_entries == spec_entries  # same values and models: nothing missing, nothing extra
    assert sum(len(v) for v, _ in spec_entries.values()) == 16
    for k, entries in labels.items():
        table = entries[0][0]
        in_table_order = [(table, c["label"]) for c in paper["tables"][table]["columns"]
                          if key(c["task"], c["metric"]) == k]  # fmt: skip
        assert entries == in_table_order, k


def test_previous_best_refers_to_table_columns(paper):
    columns = {(key, col["label"]): col for key, col in _columns(paper)}
    seen = set()
    for e in paper["previous_best"]:
        col = columns[(e["table"], e["label"])]
        assert (e["task"], e["metric"]) == (col["task"], col["metric"]), e["label"]
        seen.add((e["table"], e["label"]))
    # Every column of Tables 2-4 has its previous best.
    assert seen == {k for k in columns if k[0] != "table5_ablations"}


def test_columns_name_registered_tasks_splits_and_metrics(paper):
    for key, col in _columns(paper):
        where = f"{key} {col['label']}"
        assert isinstance(col.get("paper_split"), str) and col["paper_split"], where
        assert isinstance(col.get("same_split_as_paper"), bool), where
        if col["task"] is None:  # an aggregate column (GLUE score, Avg)
            assert col["split"] is None and col.get("aggregate"), where
            continue
        assert col["task"] in TASKS, where
        task = TASKS[col["task"]]
        splits = col["split"] if isinstance(col["split"], list) else [col["split"]]
        assert len(splits) == 1 or col.get("combine") == "mean", where
        for split in splits:
            assert split in task.all_splits and split != task.train_split, where
        *group, metric = col["metric"].split("/")
        assert metric in task.metrics and all(g in task.groups for g in group), where
        if col["task"] in GLUE_TASKS:
            assert col["paper_split"] == "GLUE test server" and not col["same_split_as_paper"], where
        if col["same_split_as_paper"]:
            assert splits == ["test"] and "test" in task.test_splits and col["task"] not in GLUE_TASKS, where
    story = next(c for _, c in _columns(paper) if c["task"] == "story_cloze")
    assert "spring-2016 test" in story["paper_split"]
    assert {c["paper_split"] for _, c in _columns(paper) if c["task"] == "race"} == {"RACE test"}


def test_ablation_overrides_are_valid_config(paper):
    from gptbench.config import load_config

    for row in paper["tables"]["table5_ablations"]["rows"]:
        assert row["overrides"] is not None, row["variant"]  # every ablation of the paper runs here
        load_config("smoke", row["overrides"])  # raises ConfigError naming a bad key or value


def test_zero_shot_normalisation(paper):
    zs = paper["zero_shot_sota"]
    assert set(zs) == {"sst2", "cola", "race", "dprd"}
    previous = {(e["task"], e["metric"]): e["paper"] for e in paper["previous_best"]}
    for name, entry in zs.items():
        task = TASKS[entry["task"]]
        assert entry["task"] == name and entry["split"] in task.all_splits and entry["metric"] in task.metrics
        if name == "dprd":
            note = " ".join(entry["note"].split())
            assert entry["sota"] is None and entry["source"] is None, "the spec prints no DPRD state of the art"
            assert "prints no DPRD state of the art" in note and "must say which value it uses" in note
        else:
            assert entry["sota"] == previous[(name, entry["metric"])]
            assert entry["source"] == "paper, previous best (Table 3/4)"
    assert (zs["sst2"]["sota"], zs["cola"]["sota"], zs["race"]["sota"]) == (93.2, 35.0, 53.3)
    assert {k: v["random_baseline"] for k, v in zs.items()} == {"sst2": 50.0, "race": 25.0, "dprd": 50.0, "cola": 0.0}
    assert paper["units"]["paper"] == "percent"


def test_pretraining_facts(paper, spec):
    pre = paper["pretraining"]
    m = re.search(r"Reported BooksCorpus perplexity: (\d+\.\d+) \(per BPE token\)", spec)
    assert pre["perplexity"] == float(m.group(1)) and pre["perplexity_unit"] == "per BPE token"
    m = re.search(r"Parameters: ([\d,]+) \(([\d,]+) in the blocks, ([\d,]+) token embeddings for [\d,]+\s+"
                  r"tokens, ([\d,]+) positions", spec)  # fmt: skip
    total, blocks, tokens, positions = (int(g.replace(",", "")) for g in m.groups())
    assert pre["parameters"] == total == blocks + tokens + positions
    assert pre["parameters_breakdown"] == {"blocks": blocks, "token_embeddings": tokens, "position_embeddings": positions}


def test_source_cites_the_paper(paper, spec):
    src = paper["source"]
    assert src["title"] == "Improving Language Understanding by Generative Pre-Training" and src["year"] == 2018
    assert [a.split()[-1] for a in src["authors"]] == ["Radford", "Narasimhan", "Salimans", "Sutskever"]
    assert f'"{src["title"]}"' in spec


def test_loader_names_the_file_when_missing_or_malformed(tmp_path):
    # the package's copy is the checkout's results/paper.yaml (a link), not a second file
    assert PAPER_NUMBERS.resolve() == (Path(__file__).resolve().parents[1] / "results" / "paper.yaml").resolve()
    missing = tmp_path / "nope.yaml"
    with pytest.raises(PaperNumbersError, match="nope.yaml"):
        load_paper_numbers(missing)
    bad = tmp_path / "bad.yaml"
    bad.write_text("tables: [unclosed\n")
    with pytest.raises(PaperNumbersError, match="bad.yaml.*not valid YAML"):
        load_paper_numbers(bad)
    bad.write_text("- a list\n")
    with pytest.raises(PaperNumbersError, match="bad.yaml.*expected a mapping"):
        load_paper_numbers(bad)
    bad.write_text("source: x\ntables: {}\n")
    with pytest.raises(PaperNumbersError, match="bad.yaml.*missing section"):
        load_paper_numbers(bad)
