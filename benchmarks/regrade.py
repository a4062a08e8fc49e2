"""Grade a results folder again: `python -m benchmarks regrade DIR [--task T] [--data PATH]`.

After a grader changes, the samples need not be drawn again: every row's `correct` and
`extracted` are recomputed from its stored completion, with the problem as the run saw it (GPQA's
choice order depends on the run seed). Each file is rewritten beside itself and renamed over the
old one, so an interrupted regrade leaves either file whole. A file a run is still appending to is refused
(`results_file.Lock`).
"""

import json
import os
from pathlib import Path
from typing import Optional, Sequence

from .results_file import Lock, read_rows
from .tasks import TASK_NAMES, get_task


def regrade(directory, task_names: Optional[Sequence[str]] = None, data=None) -> dict[Path, tuple[int, int]]:
    """Regrade the results under `directory`; returns (rows, verdicts changed) per file."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"no results folder at {directory}")
    names = task_names or [p.name for p in sorted(directory.iterdir()) if p.is_dir() and p.name in TASK_NAMES]
    if data is not None and len(names) != 1:
        raise ValueError("`--data` is one task's data: name that task with `--task`.")
    counts = {}
    for name in names:
        task = get_task(name, data=data)
        problems_by_seed = {}
        for path in sorted((directory / name).glob("*.jsonl")):
            lock = Lock(path)
            try:
                counts[path] = _regrade_file(path, task, problems_by_seed)
            finally:
                lock.release()
    return counts


def _regrade_file(path: Path, task, problems_by_seed: dict) -> tuple[int, int]:
    """Regrade one file in place; (rows, verdicts changed). `problems_by_seed` caches the task's problems."""
    rows, changed = read_rows(path), 0
    for row in rows:
        seed = row["seed"]
        if seed not in problems_by_seed:
            problems_by_seed[seed] = {problem["id"]: problem for problem in task.problems(seed=seed)}
        problem = problems_by_seed[seed].get(row["problem_id"])
        if problem is None:
            raise ValueError(f"{path}: problem {row['problem_id']!r} is not in the {task.name} data; "
                             "pass the `--data` the run used.")
        verdict = task.verdict(problem, row["completion"])
        changed += verdict["correct"] != row["correct"]
        row.update(verdict)
    _replace(path, rows)
    return len(rows), changed


def _replace(path: Path, rows: list[dict]) -> None:
    staging = path.with_name(path.name + ".regrading")
    with open(staging, "w", encoding="utf-8") as out:
        out.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        out.flush()
        os.fsync(out.fileno())
    os.replace(staging, path)


def main_regrade(directory, task_names=None, data=None) -> str:
    counts = regrade(directory, task_names, data)
    lines = [f"{path}: {rows} rows, {changed} verdicts changed" for path, (rows, changed) in counts.items()]
    return "\n".join(lines) + f"\nnow rerun: python -m benchmarks report {directory}"
