"""benchmarks/README.md's `python -m benchmarks.serve_load` command runs at toy size (the tiny chat model, four
requests, one and two clients): it prints one row per number of clients, each answer the same as one client's."""

import re
import shlex
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install 'ecmh[serve]')")

from benchmarks import serve_load  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TOY = {"--clients": "1,2", "--requests": "4", "--max-tokens": "3", "--mcmc-steps": "1"}


def test_the_documented_command_runs_at_toy_size(tiny_chat_model_dir, capsys):
    [line] = re.findall(r"^python -m benchmarks\.serve_load (--.*)$", (ROOT / "benchmarks" / "README.md").read_text(),
                        re.M)
    words = shlex.split(line)
    for option, value in TOY.items():
        words[words.index(option) + 1] = value
    assert serve_load.main([*words, "--model", str(tiny_chat_model_dir), "--device", "cpu"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if re.match(r"\s+\d+\s", line)]
    assert [row[0] for row in rows] == ["1", "2"] and rows[0][2] == "1.00"
    assert all(row[-1] == "yes" for row in rows)  # the same answers whatever the concurrency


def test_the_baseline_must_come_first():
    with pytest.raises(SystemExit):
        serve_load.main(["--clients", "4,1"])
