"""`python -m benchmarks.frontier` at toy size: the documented command, with its sizes made tiny, prints and stores a
row per setting whose numbers a fresh recomputation from the stored JSON gives again; a wrong flag is refused before
any model loads; and the negative control: plain low-temperature sampling (1x0) is far from p^alpha."""

import json
import re
import shlex
from pathlib import Path

import pytest
import torch

from benchmarks import frontier
from benchmarks.stats import mean_interval

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "frontier-smollm2-cpu"
# the sizes a toy run replaces: one toy, few chains, a tiny model and short answers
TOY = {"--settings": "1x1,2x1", "--toys": "1", "--chains": "400", "--prompts": "2", "--seeds": "0,1",
       "--max-new-tokens": "4", "--block-size": "4"}


def documented_commands() -> list[list[str]]:
    """The arguments of every `python -m benchmarks.frontier` command in benchmarks/README.md's "Latency frontier"
    section and in the measured folder's README."""
    readme = (ROOT / "benchmarks" / "README.md").read_text()
    texts = [readme[readme.index("## Latency frontier"):], (RESULTS / "README.md").read_text()]
    return [shlex.split(found) for text in texts
            for found in re.findall(r"python -m benchmarks\.frontier(?!_)([^`\n]*)", text)]


def toy_size(arguments: list[str], model_dir: Path, out: Path) -> list[str]:
    """The documented arguments with the toy sizes, the tiny model and a temporary folder in place of theirs."""
    replaced = TOY | {"--model": str(model_dir), "--out": str(out)}
    kept = [word for index, word in enumerate(arguments)
            if word not in replaced and (index == 0 or arguments[index - 1] not in replaced)]
    return kept + [word for flag, value in replaced.items() for word in (flag, value)]


def table_cells(text: str, setting: str) -> list[str]:
    """The printed table's row of `setting` (KxN), as cells."""
    tries, steps = setting.split("x")
    [line] = [line for line in text.splitlines() if line.startswith(f"| {tries} | {steps} |")]
    return [cell.strip() for cell in line.strip("|").split("|")]


def check_rows_against_the_stored_numbers(results: dict, printed: str) -> None:
    """Every row's numbers, and its printed cells, recomputed from the stored counts and answers."""
    toys, answers = results["toys"], results["model"]["answers"]
    low_temp, reference = str(frontier.LOW_TEMP), str(frontier.REFERENCE)
    model_column = 5 + len(toys)  # K, N, the toys' passes and tokens, TV / floor per toy and their mean
    for row in results["rows"]:
        setting, cells = row["setting"], table_cells(printed, row["setting"])
        for name in ("passes", "tokens"):
            mine = sum(toy["samples"][setting][name] for toy in toys)
            assert row["toys"][f"{name}_ratio"] == pytest.approx(mine / sum(t["samples"][low_temp][name] for t in toys))
            mine = [a[name] for a in answers[setting]]
            theirs = [a[name] for a in answers[low_temp]]
            assert row["model"][f"{name}_ratio"] == pytest.approx(sum(mine) / sum(theirs))
        assert cells[2] == f"{row['toys']['passes_ratio']:.2f}"
        assert cells[model_column] == f"{row['model']['passes_ratio']:.2f}"
        ratios = []
        for column, toy in enumerate(toys, start=4):
            sample = toy["samples"][setting]
            assert sum(sample["counts"]) == toy["chains"]
            tv = 0.5 * (torch.tensor(sample["counts"], dtype=torch.float64) / toy["chains"]
                        - torch.tensor(toy["target"])).abs().sum().item()
            assert tv == pytest.approx(sample["tv"]) and cells[column] == f"{tv / toy['floor']:.2f}"
            ratios.append(tv / toy["floor"])
        assert row["toys"]["mean_tv_over_floor"] == pytest.approx(sum(ratios) / len(ratios))
        assert cells[4 + len(toys)] == f"{sum(ratios) / len(ratios):.2f}"
        for name in ("log_p", "length"):
            by_prompt = {}
            for mine, theirs in zip(answers[setting], answers[reference]):
                assert (mine["prompt"], mine["seed"]) == (theirs["prompt"], theirs["seed"])
                by_prompt.setdefault(mine["prompt"], []).append(mine[name] - theirs[name])
            assert row["model"][f"{name}_difference"] == pytest.approx(list(mean_interval(list(by_prompt.values()))))
        assert cells[model_column + 2].startswith(f"{row['model']['log_p_difference'][0]:+.2f}")


def test_the_documented_command_at_toy_size_reports_every_setting_as_the_stored_numbers_say(
        tiny_chat_model_dir, tmp_path, capsys):
    commands = documented_commands()
    assert len(commands) >= 2  # benchmarks/README.md's and the measured folder's
    for arguments in {tuple(words) for words in commands}:
        out = tmp_path / "_".join(arguments or ["defaults"]).strip("-")
        frontier.main(toy_size(list(arguments), tiny_chat_model_dir, out))
        printed = capsys.readouterr().out
        results = json.loads((out / "frontier.json").read_text())
        assert results["settings"] == ["1x0", "1x1", "1x10", "2x1"]  # 1x0 and 1x10 always run
        assert [row["setting"] for row in results["rows"]] == results["settings"]
        for setting in results["settings"]:
            table_cells(printed, setting)  # one printed row each
        assert (out / "frontier.md").read_text() == printed and (out / "frontier.png").stat().st_size > 0
        assert all(len(answers) == 2 * 2 for answers in results["model"]["answers"].values())  # prompts x seeds
        check_rows_against_the_stored_numbers(results, printed)
        multiple_try = [verdict["setting"] for verdict in results["verdicts"]]
        assert multiple_try == ["2x1"] and all(f"- {s}: passes" in printed for s in multiple_try)
        # the negative control: plain low-temperature sampling is far from p^alpha, ECMH at N = 10 much nearer
        row = {r["setting"]: r for r in results["rows"]}
        assert row["1x0"]["toys"]["mean_tv_over_floor"] > 3 > row["1x10"]["toys"]["mean_tv_over_floor"]


def test_the_measured_table_is_what_its_stored_numbers_say():
    """The committed run: its table (frontier.md) and verdicts recomputed from its JSON, every setting present."""
    results = json.loads((RESULTS / "frontier.json").read_text())
    printed = (RESULTS / "frontier.md").read_text()
    assert results["settings"] == [str(s) for s in sorted({frontier.LOW_TEMP, frontier.REFERENCE,
                                                           *frontier.parse_settings(frontier.DEFAULT_SETTINGS)})]
    assert len(results["toys"]) == 3 and all(len(a) == 32 for a in results["model"]["answers"].values())
    check_rows_against_the_stored_numbers(results, printed)
    assert results["verdicts"] == frontier.verdicts(results["rows"])
    assert "\n".join(frontier.verdict_lines(results["verdicts"])) in printed


def test_skip_model_measures_the_toys_alone(tmp_path, capsys):
    results = frontier.main(["--skip-model", "--settings", "2x1", "--toys", "1", "--chains", "300",
                             "--model", "no-such-model", "--out", str(tmp_path)])  # a model that would not load
    assert results["model"] is None and all(row["model"] is None for row in results["rows"])
    verdict = capsys.readouterr().out.splitlines()[-1]
    assert re.fullmatch(r"Multiple-try closer .*: TV/floor [01] of 1\.", verdict)


@pytest.mark.parametrize("flag,value", [("--settings", "4by3"), ("--settings", "4x0"), ("--settings", "4"),
                                        ("--seeds", "0,-1"), ("--toys", "9"), ("--prompts", "1"), ("--chains", "1")])
def test_a_wrong_flag_is_refused_by_name_before_any_model_loads(flag, value, tmp_path, capsys):
    with pytest.raises(SystemExit):
        frontier.main([flag, value, "--model", "no-such-model", "--out", str(tmp_path)])
    message = capsys.readouterr().err
    assert flag in message and "Traceback" not in message
    if flag == "--settings":
        assert "such as 1x1,1x10,4x3" in message
    assert not any(tmp_path.iterdir())
