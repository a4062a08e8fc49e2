"""The report's rows: the graded samples of a results folder, read (`load_rows`: unreadable lines and samples seen
twice left out, with a warning on stderr), and what the tables read of a row (`by_sample`, `at_token_limit`)."""

import sys
from pathlib import Path

from .results_file import SAMPLE_KEY, read_rows, row_key

REQUIRED_KEYS = (*SAMPLE_KEY, "correct")


def warn(message: str) -> None:
    print(f"report: {message}", file=sys.stderr)


def complete_rows(path: Path) -> list[dict]:
    """The graded samples in one file: readable lines (`results_file.read_rows`) that carry every key."""
    rows = []
    for row in read_rows(path):
        missing = [key for key in REQUIRED_KEYS if not isinstance(row, dict) or key not in row]
        if missing:
            warn(f"{path}: skipping a row without {', '.join(missing)}")
            continue
        rows.append(row)
    return rows


def load_rows(directory: str | Path) -> list[dict]:
    """Every graded sample in the `*.jsonl` files below `directory`, first copy of each sample key.

    Raises ValueError when there is no such file or no readable sample in them.
    """
    paths = sorted(Path(directory).rglob("*.jsonl"))
    if not paths:
        raise ValueError(f"no *.jsonl result files under {directory}")
    rows, seen, duplicates = [], set(), 0
    for path in paths:
        for row in complete_rows(path):
            key = row_key(row)
            if key in seen:
                duplicates += 1
                continue
            seen.add(key)
            rows.append(row)
    if duplicates:
        warn(f"dropped {duplicates} duplicate sample(s), keeping the first copy of each")
    if not rows:
        raise ValueError(f"no graded samples in the {len(paths)} *.jsonl file(s) under {directory}")
    return rows


def by_sample(rows: list[dict]) -> dict[tuple, dict]:
    """The rows by (problem, seed)."""
    return {(row["problem_id"], row["seed"]): row for row in rows}


def at_token_limit(row: dict) -> float | None:
    """1.0 when the answer used all of `max_new_tokens` (cut off, unless its EOS came last), else 0.0."""
    limit, tokens = (row.get("config") or {}).get("max_new_tokens"), row.get("completion_tokens")
    return None if limit is None or tokens is None else float(tokens >= limit)

