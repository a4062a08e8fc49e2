"""Resumable results: one JSON line per graded sample, appended and flushed as soon as it is graded.

Rows of one task and method live in `DIR/<task>/<method>.jsonl` (with `--shard i/n`,
`DIR/<task>/<method>.shard-i-of-n.jsonl`, so engines sharing a sweep never write the same file).
A rerun reads every file of its task and method, skips the samples already there and appends
the rest. One run writes a file at a time: it holds an OS lock (`fcntl.flock`) on `<file>.lock` beside it, which
the OS releases when the run ends however it ends, so a second run on the same file is refused at once, naming the
first, and a killed run never leaves a stale lock. Before appending, a partial last line left by a run killed
mid-write is cut off (the sample it held is drawn again).
"""

import fcntl
import json
import os
import shlex
import socket
import sys
from pathlib import Path
from typing import Optional

from .progress import say

SAMPLE_KEY = ("model", "task", "method", "seed", "problem_id")


def row_key(row: dict) -> tuple:
    return tuple(row[name] for name in SAMPLE_KEY)


def read_rows(path: Path) -> list[dict]:
    """The complete rows of a results file; a truncated or corrupt line is skipped with a warning."""
    rows = []
    with open(path, encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                print(f"warning: {path}:{number} is not a complete JSON line (an interrupted run?); skipped",
                      file=sys.stderr)
    return rows


class FileInUse(RuntimeError):
    """Another run holds the lock of a results file."""


class Lock:
    """The exclusive lock of a results file `path`, held on `<path>.lock` (which says who holds it) until `release`
    or the process's end; FileInUse when another process holds it. The lock file is removed on release: a run
    that finds the file it locked gone or replaced (a holder released it meanwhile) locks the new one instead."""

    def __init__(self, path: Path):
        self.path = path.with_name(path.name + ".lock")
        while True:
            self.handle = open(self.path, "a+", encoding="utf-8")
            try:
                fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self.handle.seek(0)
                holder = self.handle.read().strip() or "another run"
                self.handle.close()
                raise FileInUse(f"{path} is being written by {holder}: wait for that run to end, or give this one "
                                "another --out (or another --shard).") from None
            try:
                if os.stat(self.path).st_ino == os.fstat(self.handle.fileno()).st_ino:
                    break
            except FileNotFoundError:
                pass
            self.handle.close()
        self.handle.truncate(0)
        self.handle.write(f"pid {os.getpid()} on {socket.gethostname()} ({shlex.join(sys.argv)})\n")
        self.handle.flush()

    def release(self) -> None:
        if not self.handle.closed:
            self.path.unlink(missing_ok=True)
            self.handle.close()


def cut_partial_last_line(path: Path) -> None:
    """Cut off a partial last line (a run killed mid-write), saying so; a last row that is complete but for its
    newline is kept and ended."""
    with open(path, "r+b") as data:
        content = data.read()
        if not content or content.endswith(b"\n"):
            return
        start = content.rfind(b"\n") + 1
        try:
            complete = isinstance(json.loads(content[start:]), dict)
        except ValueError:
            complete = False
        if complete:
            data.write(b"\n")
            return
        data.truncate(start)
    say(f"{path}: cut off a partial last line ({len(content) - start} bytes, from a run killed while writing it); its "
        "sample is drawn again")


class ResultsFile:
    """The results of one task and method under `directory`, for appending and resuming, locked while open.

    Args:
        directory: the run's results folder.
        task, method: what this file holds.
        config: the settings the rows are made with; resuming rows made with other settings is refused.
        shard: `(index, count)` when several engines split the problems, else None.
    """

    def __init__(self, directory, task: str, method: str, config: dict, shard: Optional[tuple] = None):
        folder = Path(directory) / task
        suffix = f".shard-{shard[0]}-of-{shard[1]}" if shard else ""
        self.path = folder / f"{method}{suffix}.jsonl"
        self.config = config
        folder.mkdir(parents=True, exist_ok=True)
        self._lock = Lock(self.path)
        try:
            if self.path.exists():
                cut_partial_last_line(self.path)
            existing = [row for path in sorted(folder.glob(f"{method}.*jsonl")) if path.name.split(".")[0] == method
                        for row in read_rows(path)]
            for row in existing:
                if row.get("config") != config:
                    raise ValueError(
                        f"{folder} already holds {method} results made with {row.get('config')}, not {config}: "
                        "rerun with the same settings to resume, or choose another --out.")
        except BaseException:
            self.close()
            raise
        self.done = {row_key(row): row for row in existing}

    def append(self, row: dict) -> None:
        line = json.dumps({**row, "config": self.config}, ensure_ascii=False) + "\n"
        with open(self.path, "ab") as out:
            out.write(line.encode("utf-8"))
            out.flush()
            os.fsync(out.fileno())
        self.done[row_key(row)] = row

    def close(self) -> None:
        """Release the lock (the rows stay)."""
        self._lock.release()
