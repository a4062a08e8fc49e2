"""`python -m benchmarks.frontier_humaneval` on generated results folders: every number it stores equals a fresh
computation from the rows (passes and tokens as ratios to 1x0's, log p and length paired with 1x10's on the same
problems), 1x10's missing passes come from its seed-1 answers, and bad folders are refused before anything is read."""

import json
import random
import re
import shlex
import statistics
from pathlib import Path

import pytest

from benchmarks import frontier_humaneval

ROOT = Path(__file__).resolve().parents[1]


def write_rows(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def rows_of(generator: random.Random, problems: int, seed: int, passes: bool) -> list[dict]:
    return [{"problem_id": f"Task/{p}", "seed": seed, "tokens_decoded": generator.randint(10, 500),
             "log_p": -generator.uniform(1, 40), "completion_tokens": generator.randint(5, 100),
             **({"sequential_passes": generator.randint(5, 900)} if passes else {})} for p in range(problems)]


def folders(tmp_path: Path, generator: random.Random, problems: int):
    evidence, folder = tmp_path / "evidence", tmp_path / "frontier"
    made = {"low_temp": rows_of(generator, problems, 0, True),
            "ecmh": rows_of(generator, problems, 0, False) + rows_of(generator, problems, 1, True),
            "4x1": rows_of(generator, problems, 0, True)}
    write_rows(evidence / "task" / "low_temp.jsonl", made["low_temp"])
    write_rows(evidence / "task" / "ecmh.shard-0-of-2.jsonl", made["ecmh"][:problems])
    write_rows(evidence / "task" / "ecmh.shard-1-of-2.jsonl", made["ecmh"][problems:])
    write_rows(folder / "4x1" / "task" / "ecmh.jsonl", made["4x1"])
    return evidence, folder, made


@pytest.mark.parametrize("case", range(5))
def test_every_number_is_a_fresh_computation_from_the_rows(tmp_path, case):
    generator = random.Random(case)
    problems = generator.randint(3, 12)
    limit = generator.randint(2, problems)
    evidence, folder, made = folders(tmp_path, generator, problems)
    results = frontier_humaneval.main(["--folder", str(folder), "--evidence", str(evidence), "--limit", str(limit)])
    low, reference, tried = ([r for r in made[name] if r["seed"] == 0][:limit] for name in ("low_temp", "ecmh", "4x1"))
    reference_passes = [r["sequential_passes"] for r in made["ecmh"] if r["seed"] == 1][:limit]
    rows = {row["setting"]: row["model"] for row in results["rows"]}
    assert set(rows) == {"1x0", "1x10", "4x1"}
    mean = statistics.fmean
    assert rows["4x1"]["passes_ratio"] == pytest.approx(mean(r["sequential_passes"] for r in tried)
                                                        / mean(r["sequential_passes"] for r in low))
    assert rows["1x10"]["passes_ratio"] == pytest.approx(mean(reference_passes) / mean(r["sequential_passes"] for r in low))
    assert rows["4x1"]["tokens_ratio"] == pytest.approx(mean(r["tokens_decoded"] for r in tried)
                                                        / mean(r["tokens_decoded"] for r in low))
    assert rows["4x1"]["log_p_difference"][0] == pytest.approx(mean(a["log_p"] - b["log_p"] for a, b in zip(tried, reference)))
    assert rows["4x1"]["length_difference"][0] == pytest.approx(
        mean(a["completion_tokens"] - b["completion_tokens"] for a, b in zip(tried, reference)))
    assert rows["1x10"]["log_p_difference"][:1] == (0.0,)
    assert (folder / "frontier.md").read_text().startswith("`python -m benchmarks.frontier_humaneval")
    assert json.loads((folder / "frontier.json").read_text())["verdicts"][0]["setting"] == "4x1"


def test_a_seed_0_passes_count_is_used_when_present(tmp_path):  # negative control of the seed-1 substitution
    evidence, folder, made = folders(tmp_path, random.Random(9), 4)
    rows = [dict(r, sequential_passes=1000 + i) if r["seed"] == 0 else r for i, r in enumerate(made["ecmh"])]
    write_rows(evidence / "task" / "ecmh.shard-0-of-2.jsonl", rows[:4])
    results = frontier_humaneval.main(["--folder", str(folder), "--evidence", str(evidence), "--limit", "4"])
    low = statistics.fmean(r["sequential_passes"] for r in made["low_temp"])
    [reference] = [row["model"] for row in results["rows"] if row["setting"] == "1x10"]
    assert reference["passes_ratio"] == pytest.approx(statistics.fmean(range(1000, 1004)) / low)


@pytest.mark.parametrize("arguments, message", [
    (["--folder", "/nonexistent"], "--folder /nonexistent is not a folder"),
    (["--limit", "1"], "--limit must be at least 2"),
])
def test_bad_arguments_are_refused(tmp_path, capsys, arguments, message):
    with pytest.raises(SystemExit):
        frontier_humaneval.main(["--evidence", str(tmp_path), "--folder", str(tmp_path), *arguments])
    assert message in capsys.readouterr().err


def test_the_documented_command_runs_on_generated_folders(tmp_path):
    """benchmarks/README.md's command, its folders replaced by generated ones (argparse takes the last)."""
    readme = (ROOT / "benchmarks" / "README.md").read_text()
    documented = [shlex.split(found) for found in re.findall(r"python -m benchmarks\.frontier_humaneval([^`\n]*)", readme)]
    assert documented == [[], ["--limit", "32"]]  # the heading's and the command's
    evidence, folder, made = folders(tmp_path, random.Random(3), 40)
    results = frontier_humaneval.main([*documented[1], "--folder", str(folder), "--evidence", str(evidence)])
    assert results["problems"] == sorted(f"Task/{p}" for p in range(32))  # the first 32 of the evidence's order
