"""The report's first lines say what a folder of its size can show, and no interval is printed from fewer problems
than `benchmarks.stats.MIN_PROBLEMS` (issue 52): `[too few]` instead."""

import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from benchmarks import report, stats

from test_report import FAKE_RESULTS, T_975_3_DOF


def test_four_problems_print_no_interval_say_so_first_and_keep_the_numbers_in_the_json(tmp_path):
    text = report.main_report(FAKE_RESULTS, tmp_path).read_text()
    assert text.splitlines()[2].startswith("**What this size can show.** 4 problem(s) in the smallest table here, "
                                           "up to 2 seed(s) each. That is too few for any interval")
    assert "| ecmh | 4 | 2 | 62.5 [too few] |" in text
    numbers = json.loads((tmp_path / "summary.json").read_text())
    ecmh = next(m for m in numbers["methods"] if (m["task"], m["method"]) == ("math500", "ecmh"))
    assert ecmh["ci_low"] == pytest.approx(0.625 - T_975_3_DOF * 0.125)


@given(st.integers(2, 14), st.lists(st.booleans(), min_size=28, max_size=28))
def test_an_interval_is_printed_from_enough_problems_only_and_the_first_lines_say_which(problems, correct):
    rows = [{"model": "m", "task": "gsm8k", "method": method, "problem_id": str(p), "seed": seed, "config": {},
             "correct": correct[2 * p + seed] != (method == "low_temp"), "log_p": -1.0 - p - seed,
             "completion_tokens": 5 + p}
            for method in ("ecmh", "low_temp") for p in range(problems) for seed in (0, 1)]
    text = report.markdown(report.summarise(rows), "report", len(rows))
    cells = " ".join(line for line in text.splitlines() if line.startswith("|"))
    enough = problems >= stats.MIN_PROBLEMS
    # accuracy of both methods, the McNemar difference, log p and length of both, low_temp's two differences from ecmh
    assert cells.count("[too few]") == (0 if enough else 9)
    assert (re.search(rf"\| ecmh \| {problems} \| 2 \| [\d.]+ \[[\d.]+, [\d.]+\] \|", cells) is not None) == enough
    first = text.splitlines()[2]
    assert first.startswith(f"**What this size can show.** {problems} problem(s)")
    assert ("too few for any interval" in first) != enough
    assert f"5 points about {stats.problems_to_detect(0.05):,}" in first


def test_problems_to_detect_a_difference_is_the_textbook_two_proportion_size():
    # n = 2 (1.96 + 0.8416)^2 * 0.25 / d^2 per method at p = 0.5, 80% power: 1570 for 5 points, 393 for 10
    assert [stats.problems_to_detect(d) for d in (0.05, 0.10, 0.20)] == [1570, 393, 99]
