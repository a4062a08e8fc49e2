"""`python -m benchmarks` in a subprocess that signals itself once it has stored a given number of rows.

A test that waits for rows and then signals the run races it: on a loaded machine the run may finish first.
Here the signal lands at a fixed point, right after a row is stored, in the real process with its real handlers.
"""

import subprocess
import sys
from pathlib import Path

PROGRAM = """\
import os, runpy, signal, sys
from benchmarks.results_file import ResultsFile
store, stored = ResultsFile.append, []
def store_then_signal(self, row):
    store(self, row)
    stored.append(row)
    if len(stored) == {rows}:
        os.kill(os.getpid(), signal.{signal})
ResultsFile.append = store_then_signal
sys.argv = ["benchmarks", *sys.argv[1:]]
runpy.run_module("benchmarks", run_name="__main__", alter_sys=True)
"""


def run_benchmarks_signalled(args: list[str], rows: int, signal: str) -> subprocess.CompletedProcess:
    """`python -m benchmarks *args`, sent `signal` ("SIGINT": a ctrl-C; "SIGKILL") once `rows` rows are stored."""
    return subprocess.run([sys.executable, "-c", PROGRAM.format(rows=rows, signal=signal), *args],
                          cwd=Path(__file__).resolve().parents[1], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True, timeout=600)
