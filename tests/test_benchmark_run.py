"""`python -m benchmarks run` end to end on a tiny model: every task and method, resuming, seeds."""

import json
from pathlib import Path

import pytest

from benchmarks.__main__ import main
from benchmarks.methods import MH, BestOfN
from benchmarks.registry import METHODS
from benchmarks.results_file import read_rows
from benchmarks.tasks import TASK_NAMES, TASKS
from interrupted import run_benchmarks_signalled
from synopsis import check_synopsis, subcommand

TINY = ["--max-new-tokens", "8", "--block-size", "4", "--mcmc-steps", "1", "--batch-size", "2"]


def _run(model_dir, out, *args):
    return main(["run", "--model", str(model_dir), "--out", str(out), *TINY, *args])


def _rows(out) -> list[dict]:
    return [row for path in sorted(Path(out).rglob("*.jsonl")) for row in read_rows(path)]


@pytest.fixture(scope="module")
def math500_file(tmp_path_factory):
    """Three problems in MATH500's format (the hub set's columns)."""
    path = tmp_path_factory.mktemp("data") / "math500.json"
    path.write_text(json.dumps([{"problem": f"What is {i} + {i}?", "solution": f"$\\boxed{{{2 * i}}}$",
                                 "answer": str(2 * i), "subject": "Algebra", "level": 1,
                                 "unique_id": f"test/algebra/{i}.json"} for i in range(1, 4)]))
    return path


@pytest.mark.parametrize("task", TASK_NAMES)  # every registered task: one more is one more case, with no edit here
def test_two_problems_of_every_task_with_every_method(tiny_chat_model_dir, tmp_path, task, math500_file):
    data = [] if TASKS[task].packaged else ["--data", str(math500_file)]  # offline: a hub-only set reads a local copy
    assert _run(tiny_chat_model_dir, tmp_path, "--task", task, "--method", "all", "--limit", "2", *data) == 0
    rows = _rows(tmp_path)
    assert sorted({row["method"] for row in rows}) == sorted(METHODS)
    assert len(rows) == 2 * len(METHODS)
    by_key = {(row["method"], row["problem_id"]): row for row in rows}
    for row in rows:
        assert row["task"] == task and row["seed"] == 0 and isinstance(row["correct"], bool)
        assert 1 <= row["completion_tokens"] <= 8 and row["config"]["block_size"] == 4
        kind = METHODS[row["method"]]
        mh = isinstance(kind, MH)
        assert (row["acceptance_rate"] is not None) == mh and len(row["acceptance_by_block"]) == (2 if mh else 0)
        assert row["tokens_forwarded"] > row["tokens_decoded"] >= row["completion_tokens"]  # the prompt, once
        if row["config"].get("smc"):  # 64 particles decode in lockstep: about one answer's passes, and moves' after it
            moves = row["config"]["smc"].get("moves", 0)
            assert row["config"]["smc"]["particles"] == 64
            assert row["sequential_passes"] <= (8 + 1 if moves == 0 else row["tokens_decoded"] + 1)
        elif row["config"].get("mh", {}).get("tries", 1) > 1:  # multiple-try: the tries decode side by side
            assert row["sequential_passes"] < row["tokens_decoded"] + 1
        elif not isinstance(kind, BestOfN):  # one token after another, plus the prompt's pass
            assert row["sequential_passes"] == row["tokens_decoded"] + 1
        if isinstance(kind, BestOfN):  # at least one draw, about the same problem's budget (its source's tokens)
            assert 0 < row["tokens_decoded"] < 2 * by_key[(kind.budget_from, row["problem_id"])]["tokens_decoded"] + 8
            assert row["selected_by"] == "log_p" and set(row["by_selector"]) == {"log_p", "hes", "majority"}
            assert row["by_selector"]["log_p"]["correct"] == row["correct"]
            assert all(0 <= pick["draw"] < row["draws"] for pick in row["by_selector"].values())


def test_a_rerun_cuts_a_torn_last_line_once_and_keeps_every_complete_row(tiny_chat_model_dir, tmp_path, capsys):
    args = ["--task", "gsm8k", "--method", "ecmh,low_temp"]
    assert _run(tiny_chat_model_dir, tmp_path, *args, "--limit", "2") == 0
    first = {(r["method"], r["problem_id"]): r for r in _rows(tmp_path)}
    ecmh_file, low_temp_file = tmp_path / "gsm8k" / "ecmh.jsonl", tmp_path / "gsm8k" / "low_temp.jsonl"
    with open(ecmh_file, "a") as out:
        out.write('{"model": "killed mid-wri')  # a kill -9 during a write
    low_temp_file.write_bytes(low_temp_file.read_bytes().rstrip(b"\n"))  # killed just before a row's newline
    capsys.readouterr()
    assert _run(tiny_chat_model_dir, tmp_path, *args, "--limit", "3") == 0
    said = capsys.readouterr().err
    assert said.count("cut off a partial last line") == 1 and f"{ecmh_file}: cut off" in said, said
    assert b"killed mid-wri" not in ecmh_file.read_bytes()
    rows = _rows(tmp_path)
    assert len(rows) == 6 and len({(r["method"], r["problem_id"]) for r in rows}) == 6
    assert all(first[(r["method"], r["problem_id"])] == r for r in rows if (r["method"], r["problem_id"]) in first)
    assert _run(tiny_chat_model_dir, tmp_path, *args, "--limit", "3") == 0 and len(_rows(tmp_path)) == 6
    assert main(["report", str(tmp_path)]) == 0
    assert "cut off" not in capsys.readouterr().err and "not a complete JSON line" not in capsys.readouterr().err


def test_a_resumed_runs_bar_counts_only_the_samples_left_and_names_what_runs(tiny_chat_model_dir, tmp_path, capsys):
    assert _run(tiny_chat_model_dir, tmp_path, "--task", "gsm8k", "--method", "low_temp", "--limit", "3") == 0
    capsys.readouterr()
    # left: low_temp's 4th problem (its batch [3rd, 4th] has the 3rd stored) and ecmh's 4
    assert _run(tiny_chat_model_dir, tmp_path, "--task", "gsm8k", "--method", "low_temp,ecmh", "--limit", "4") == 0
    bar = capsys.readouterr().err
    assert " 0/5 " in bar and " 5/5 " in bar and "/6 " not in bar, bar
    assert bar.index("low_temp seed 0") < bar.index("ecmh seed 0") and "Loading weights" not in bar, bar


def test_regrade_recomputes_verdicts_in_place_and_the_run_still_resumes(tiny_chat_model_dir, tmp_path, capsys,
                                                                        math500_file):
    args = ["--task", "gsm8k", "--method", "low_temp", "--limit", "2"]
    assert _run(tiny_chat_model_dir, tmp_path, *args) == 0
    path = tmp_path / "gsm8k" / "low_temp.jsonl"
    right, wrong = read_rows(path)
    right.update(completion=f"So the answer is \\boxed{{{right['answer']}}}.", correct=False)
    wrong.update(completion="So the answer is \\boxed{-1}.", correct=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in (right, wrong)))
    assert main(["regrade", str(tmp_path)]) == 0
    assert "2 rows, 2 verdicts changed" in capsys.readouterr().out
    regraded = read_rows(path)
    assert [row["correct"] for row in regraded] == [True, False]
    assert regraded[0]["extracted"] == right["answer"] and list(path.parent.iterdir()) == [path]
    assert _run(tiny_chat_model_dir, tmp_path, *args) == 0 and read_rows(path) == regraded  # nothing redrawn
    assert main(["regrade", str(tmp_path), "--data", str(math500_file)]) == 2
    assert main(["regrade", str(tmp_path / "missing")]) == 2
    errors = capsys.readouterr().err
    assert "pass the `--data` the run used" in errors and "missing does not exist" in errors


def test_same_seed_same_samples_and_shards_cover_the_problems(tiny_chat_model_dir, tmp_path):
    args = ["--task", "gsm8k", "--method", "uniform_mh", "--limit", "4", "--seeds", "0,1"]
    assert _run(tiny_chat_model_dir, tmp_path / "a", *args) == 0
    assert _run(tiny_chat_model_dir, tmp_path / "b", *args) == 0
    strip = lambda rows: sorted((r["seed"], r["problem_id"], r["completion"]) for r in rows)  # noqa: E731
    assert strip(_rows(tmp_path / "a")) == strip(_rows(tmp_path / "b"))
    for index in range(2):
        assert _run(tiny_chat_model_dir, tmp_path / "c", *args, "--shard", f"{index}/2", "--batch-size", "4") == 0
    assert sorted(p.name for p in (tmp_path / "c" / "gsm8k").iterdir()) == [
        "uniform_mh.shard-0-of-2.jsonl", "uniform_mh.shard-1-of-2.jsonl"]
    assert {(r["seed"], r["problem_id"]) for r in _rows(tmp_path / "c")} == {
        (r["seed"], r["problem_id"]) for r in _rows(tmp_path / "a")}


def test_every_refusal_comes_in_one_line_before_the_model_loads(tiny_chat_model_dir, tmp_path, capsys):
    gsm8k = ["--task", "gsm8k", "--method", "low_temp", "--limit", "1"]
    assert _run(tiny_chat_model_dir, tmp_path / "made", *gsm8k) == 0
    (tmp_path / "empty").mkdir()
    refusals = {
        "Unknown --method 'beam'": ["run", "--task", "gsm8k", "--method", "low_temp,beam"],
        "missing.json does not exist": ["run", "--task", "math500", "--method", "ecmh", "--data", str(tmp_path / "missing.json")],
        "another --out": ["run", *gsm8k, "--alpha", "2", "--out", str(tmp_path / "made")],
        "`--limit` must be an integer >= 1, got 0": ["run", *gsm8k, "--limit", "0"],
        "`--limit` must be an integer >= 1, got -1": ["run", *gsm8k, "--limit", "-1"],
        "`--seeds` must be an integer in [0, 2**63) (a seed), got -1": ["run", *gsm8k, "--seeds=0,-1"],
        "--particles": ["run", *gsm8k, "--method", "smc", "--particles", "0"],
        "no *.jsonl result files under": ["report", str(tmp_path / "empty")],
        "missing does not exist": ["report", str(tmp_path / "missing")],
    }
    capsys.readouterr()
    with pytest.MonkeyPatch.context() as patch:
        from benchmarks.sweep import ModelSpec

        patch.setattr(ModelSpec, "load", lambda self: pytest.fail("the model was loaded"))
        for message, args in refusals.items():
            if args[0] == "run" and "--model" not in args:
                args = ["run", "--model", str(tiny_chat_model_dir), "--out", str(tmp_path / "out"), *TINY, *args[1:]]
            assert main(args) == 2, args
            said = capsys.readouterr().err.strip()
            assert said.startswith("ecmh-benchmarks: error: ") and len(said.splitlines()) == 1, said
            assert message in said, said
        assert _run(tiny_chat_model_dir, tmp_path / "made", *gsm8k) == 0  # nothing left to sample: no model needed
    with pytest.raises(SystemExit):
        main(["run", "--task", "gsm8k", "--method", "ecmh", "--shard", "3/2"])


HOLDER = """\
import runpy, sys
from benchmarks.results_file import ResultsFile
store = ResultsFile.append
def store_then_hold(self, row):
    store(self, row)
    print("holding", flush=True)  # the test runs its second runner now
    sys.stdin.readline()  # ... and lets this one go on when that one is done
ResultsFile.append = store_then_hold
sys.argv = ["benchmarks", *sys.argv[1:]]
runpy.run_module("benchmarks", run_name="__main__", alter_sys=True)
"""


def test_a_second_runner_on_the_same_results_file_is_refused_naming_the_first(tiny_chat_model_dir, tmp_path, capsys):
    import subprocess
    import sys

    args = ["run", "--model", str(tiny_chat_model_dir), "--out", str(tmp_path), *TINY, "--task", "gsm8k",
            "--method", "low_temp", "--limit", "3", "--batch-size", "1"]
    first = subprocess.Popen([sys.executable, "-c", HOLDER, *args], cwd=Path(__file__).resolve().parents[1],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert first.stdout.readline() == "holding\n"  # the first runner holds the file, mid-run
        capsys.readouterr()
        assert main(args) == 2
        said = capsys.readouterr().err.strip()
        assert len(said.splitlines()) == 1 and f"is being written by pid {first.pid} on " in said, said
        assert "--limit 3" in said  # its command
        assert _run(tiny_chat_model_dir, tmp_path, "--task", "gsm8k", "--method", "low_temp", "--limit", "3",
                    "--shard", "0/2") == 0  # another shard of the folder runs beside it
        first.communicate("\n" * 3, timeout=600)
    finally:
        first.kill()
    assert first.returncode == 0
    rows = read_rows(tmp_path / "gsm8k" / "low_temp.jsonl")
    assert sorted(r["problem_id"] for r in rows) == ["0", "1", "2"]
    assert not list(tmp_path.rglob("*.lock"))  # released, and cleared away


def test_a_killed_runner_leaves_no_lock_behind(tiny_chat_model_dir, tmp_path):
    args = ["run", "--model", str(tiny_chat_model_dir), "--out", str(tmp_path), *TINY, "--task", "gsm8k",
            "--method", "low_temp", "--limit", "3", "--batch-size", "1"]
    killed = run_benchmarks_signalled(args, rows=1, signal="SIGKILL")
    assert killed.returncode == -9 and list(tmp_path.rglob("*.lock"))
    assert main(args) == 0
    assert sorted(r["problem_id"] for r in _rows(tmp_path)) == ["0", "1", "2"]


def test_a_method_that_needs_another_says_so_and_the_bar_names_what_runs(tiny_chat_model_dir, tmp_path, capsys):
    assert _run(tiny_chat_model_dir, tmp_path, "--task", "gsm8k", "--method", "bon_std", "--limit", "2") == 0
    said = capsys.readouterr().err
    assert "ecmh-benchmarks: bon_std spends, per problem, what ecmh decoded on it: ecmh runs too, first" in said, said
    assert "ecmh seed 0 (bon_std's budget)" in said and "bon_std seed 0" in said
    assert sorted({r["method"] for r in _rows(tmp_path)}) == ["bon_std", "ecmh"]


def test_prompts_are_left_padded_whatever_the_tokenizer_says(tiny_chat_model_dir):
    from transformers import AutoTokenizer

    import ecmh

    tokenizer = AutoTokenizer.from_pretrained(tiny_chat_model_dir)
    tokenizer.padding_side = "right"  # vLLM's pooled tokenizers ignore this attribute; ecmh never relies on it
    batch = ecmh.encode_prompts(tokenizer, ["hi", "a longer prompt"])
    assert batch.attention_mask[0, 0] == 0 and batch.attention_mask[:, -1].all()


@pytest.mark.parametrize("budget, spent", [(13, 12), (15, 12), (17, 22), (2, 4), (12, 12)])
def test_best_of_n_stops_at_the_draw_closest_to_its_budget(monkeypatch, budget, spent):
    import torch

    from benchmarks import methods

    lengths = iter([4, 4, 4, 10, 10, 10, 10, 10])  # the decoded tokens of successive draws of the one prompt
    made = []

    def draw_plain(model, input_ids, attention_mask, settings, seed, tokenizer):
        return input_ids.shape[0]

    def answers(count, input_ids):
        for _ in range(count):
            length = next(lengths)
            made.append(length)
            yield methods.Draw([1] * length, methods.Cost(length, length + 2, length + 1), -float(length), -1.0, 0.0)

    monkeypatch.setattr(methods, "draws", answers)
    ids = torch.zeros(1, 2, dtype=torch.long)
    settings = methods.RunSettings(max_new_tokens=4)
    [answer] = methods._best_of_n(draw_plain, None, ids, torch.ones_like(ids), settings, 0, [budget], None)
    assert answer.cost.tokens_decoded == spent
    assert answer.cost.tokens_forwarded == sum(n + 2 for n in made)  # discarded draws' work included
    assert max(made) + 1 <= answer.cost.sequential_passes <= sum(n + 1 for n in made)


def test_completion_style_humaneval_ends_answers_at_its_stop_strings(tiny_chat_model_dir, tmp_path):
    assert _run(tiny_chat_model_dir, tmp_path / "default", "--task", "humaneval", "--method", "standard", "--limit", "1",
                "--no-chat") == 0
    [row] = _rows(tmp_path / "default")
    assert row["config"]["stop_strings"] == ["\ndef ", "\nclass ", "\nif __name__", "\nprint(", "```"]

    letters = [chr(c) for c in range(ord("!"), ord("~") + 1)]  # a random byte-level model ends most answers early
    assert _run(tiny_chat_model_dir, tmp_path / "letters", "--task", "humaneval", "--method", "standard,ecmh",
                "--limit", "2", "--no-chat", *[arg for letter in letters for arg in ("--stop-string", letter)]) == 0
    rows = _rows(tmp_path / "letters")
    assert any(row["completion_tokens"] < 8 for row in rows)
    for row in rows:  # the text before the stop string is graded, the stop string is not
        assert not set(row["completion"]) & set(letters)


def test_chat_answers_and_no_stop_strings_keep_the_settings_rows_had_before(tiny_chat_model_dir, tmp_path):
    assert _run(tiny_chat_model_dir, tmp_path, "--task", "humaneval", "--method", "standard", "--limit", "1",
                "--no-chat", "--no-stop-strings") == 0
    assert "stop_strings" not in _rows(tmp_path)[0]["config"]


def test_no_early_rejection_reaches_the_mh_methods_and_only_then_is_recorded(tiny_chat_model_dir, tmp_path,
                                                                               monkeypatch):
    import ecmh

    calls, generate = [], ecmh.generate

    def recorded(*args, **kwargs):
        calls.append((kwargs.get("cut"), kwargs.get("early_rejection")))
        return generate(*args, **kwargs)

    monkeypatch.setattr(ecmh, "generate", recorded)
    for name, flags in (("on", []), ("off", ["--no-early-rejection"])):
        assert _run(tiny_chat_model_dir, tmp_path / name, "--task", "gsm8k", "--method", "ecmh,uniform_mh",
                    "--limit", "1", *flags) == 0
    assert calls == [("entropy", True), ("uniform", True), ("entropy", False), ("uniform", False)]
    on, off = _rows(tmp_path / "on"), _rows(tmp_path / "off")
    assert all("early_rejection" not in row["config"] for row in on)  # the default: rows made before the flag resume
    assert all(row["config"]["early_rejection"] is False for row in off)
    assert [r["completion"] for r in on] == [r["completion"] for r in off]  # exact: the same answers either way
    assert all(a["tokens_decoded"] <= b["tokens_decoded"] for a, b in zip(on, off))


def test_each_selector_picks_its_draw():
    from benchmarks import methods

    cost = methods.Cost(1, 1, 2)
    draws = [methods.Draw([1], cost, -1.0, -1.0, 2.0), methods.Draw([2], cost, -0.5, -0.5, 3.0),
             methods.Draw([3], cost, -2.0, -2.0, 0.5)]
    assert methods.choose(draws, "log_p") == 1
    assert methods.choose(draws, "hes") == 2
    assert methods.choose(draws, "majority", ["7", "8", "7"]) == 0  # the common answer, its likelier draw
    with pytest.raises(ValueError, match="selector"):
        methods.choose(draws, "cme")


def test_smc_methods_take_their_particles_and_the_report_prints_costs_against_low_temp(tiny_chat_model_dir, tmp_path):
    assert _run(tiny_chat_model_dir, tmp_path, "--task", "gsm8k", "--method", "low_temp,smc,power_smc", "--limit", "2",
                "--particles", "3") == 0
    rows = _rows(tmp_path)
    smc_rows = [row for row in rows if row["method"] != "low_temp"]
    assert len(smc_rows) == 4 and all(row["config"]["smc"]["particles"] == 3 for row in smc_rows)
    assert {row["config"]["smc"]["bridge_tokens"] for row in smc_rows} == {0, 2}  # power_smc: 400/2048 of 8 tokens
    assert main(["report", str(tmp_path)]) == 0
    report = (tmp_path / "summary.md").read_text()
    assert "| method | decoded tokens | positions forwarded | sequential passes | seconds |" in report
    assert "| low_temp | 1.00 | 1.00 | 1.00 | 1.00 | 1.00 [1.00, 1.00] |" in report
    assert _run(tiny_chat_model_dir, tmp_path / "bad", "--task", "gsm8k", "--method", "smc", "--particles", "0", "--limit", "1") == 2


def test_ctrl_c_prints_one_line_with_what_was_kept_and_the_resume_command(tiny_chat_model_dir, tmp_path):
    args = ["run", "--model", str(tiny_chat_model_dir), "--out", str(tmp_path), *TINY, "--task", "gsm8k",
            "--method", "ecmh", "--limit", "40", "--batch-size", "1"]
    run = run_benchmarks_signalled(args, rows=2, signal="SIGINT")
    kept = len(read_rows(tmp_path / "gsm8k" / "ecmh.jsonl"))
    assert run.returncode == 130 and "Traceback" not in run.stderr and kept == 2
    last = run.stderr.strip().splitlines()[-1]
    assert f"interrupted: {kept} new row(s) kept ({kept} in {tmp_path})" in last, last
    assert "the same command resumes (python -m benchmarks run --model" in last and "--limit 40" in last


def test_a_ctrl_c_just_after_a_row_is_stored_still_counts_it(tiny_chat_model_dir, tmp_path, monkeypatch, capsys):
    import os
    import signal

    from benchmarks.results_file import ResultsFile

    store = ResultsFile.append

    def store_then_interrupt(self, row):  # the signal lands between the row's write and its bookkeeping
        store(self, row)
        os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(ResultsFile, "append", store_then_interrupt)
    assert _run(tiny_chat_model_dir, tmp_path, "--task", "gsm8k", "--method", "low_temp", "--limit", "4") == 130
    kept = len(_rows(tmp_path))
    assert kept >= 1 and f"interrupted: {kept} new row(s) kept ({kept} in" in capsys.readouterr().err


# ---------------------------------------------------------------- the documented commands

ROOT = Path(__file__).resolve().parents[1]
# the runner's options a toy run replaces, and the ones it drops: the vLLM and Ray paths run in test_vllm_runner.py
# and test_ray_sweep.py, and nothing here may load a model from the hub or reach a cluster
TOY_VALUES = {"--limit": "1", "--seeds": "0", "--max-new-tokens": "8", "--block-size": "4", "--mcmc-steps": "1",
              "--batch-size": "2", "--particles": "2"}
DROPPED = {"--backend", "--tensor-parallel-size", "--pipeline-parallel-size", "--distributed-executor-backend", "--ray",
           "--ray-actors", "--gpus-per-actor", "--dtype", "--device"}


def documented_commands() -> list[list[str]]:
    """The words of every benchmark command in benchmarks/README.md, README.md's Benchmarks section and the
    `ecmh-benchmarks --help` examples, from `python -m benchmarks...` or `ecmh-benchmarks` on (a code block's
    indented line continues the command above it)."""
    import re
    import shlex

    from benchmarks.__main__ import EXAMPLES

    readme = (ROOT / "README.md").read_text()
    texts = [(ROOT / "benchmarks" / "README.md").read_text(),
             readme[readme.index("## Benchmarks\n"):readme.index("## How ECMH works")], EXAMPLES]
    found = []
    for text in texts:
        text = re.sub(r"\\\n\s*", " ", text)
        blocks = re.findall(r"```[a-z]*\n(.*?)```", text, re.S)
        lines = [re.sub(r"\n[ \t]+", " ", block) for block in blocks]
        prose = re.sub(r"`` .*? ``", "", re.sub(r"```[a-z]*\n.*?```", "", text, flags=re.S))
        lines += [" ".join(span.split()) for span in re.findall(r"`([^`]+)`", prose)]
        lines += text.splitlines() if text is EXAMPLES else []
        for line in (part for block in lines for part in block.splitlines()):
            start = re.search(r"python -m benchmarks|ecmh-benchmarks (run|report|regrade) ", line)
            if start:
                words = shlex.split(line[start.start():].split("#")[0])
                found.append(["benchmarks", *words[1:]] if words[0] == "ecmh-benchmarks" else words[2:])
    return [words for words in found if len(words) > 2]  # not a program named in prose


def program_parser(words: list[str]):
    """The parser a command's words go to: (parser, the words it takes)."""
    from benchmarks import draw_speed, frontier_humaneval, serve_load, speed
    from benchmarks.__main__ import _parser

    # programs of their own, run at toy size in their tests (test_serve_load.py, test_frontier_humaneval.py, ...)
    programs = {"benchmarks.serve_load": serve_load, "benchmarks.speed": speed, "benchmarks.draw_speed": draw_speed,
                "benchmarks.frontier_humaneval": frontier_humaneval}
    if words[0] in programs:
        return programs[words[0]].build_parser(), words[1:]
    return subcommand(_parser(), words[1]), words[2:]


def test_every_synopsis_lists_every_option_with_its_default():
    synopses = [words for words in documented_commands() if any(w.startswith("[") for w in words)]
    assert {tuple(w[:2]) for w in synopses} >= {("benchmarks", "run"), ("benchmarks", "report"), ("benchmarks", "regrade"),
                                                ("benchmarks.speed", "[--model"), ("benchmarks.draw_speed", "[--vocab")}
    for words in synopses:
        parser, arguments = program_parser(words)
        check_synopsis(arguments, parser, where=" ".join(words[:2]))


def test_every_documented_command_parses_and_runs_at_toy_size(tiny_chat_model_dir, tmp_path, math500_file, capsys,
                                                               monkeypatch):
    """Each documented `run`, `report` and `regrade` command runs here with a tiny model (`TOY_VALUES`, `DROPPED`;
    MATH500 from a local file); the speed and draw-speed commands parse here and run at toy size in
    test_speed_benchmark.py (their vLLM form in test_vllm_runner.py)."""
    commands = [words for words in documented_commands() if not any(w.startswith("[") for w in words)]
    runs = [words for words in commands if words[0] == "benchmarks"]
    assert {words[1] for words in runs} == {"run", "report", "regrade"} and len(runs) >= 8
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a command that reached for the hub would fail at once
    out = tmp_path / "out"
    for words in commands:
        parser, arguments = program_parser(words)
        parser.parse_args(arguments)  # a documented option that no longer exists fails here
    for words in sorted(runs, key=lambda w: w[1] != "run"):  # sample before reporting
        parser, arguments = program_parser(words)
        if words[1] == "report":
            toy = ["report", str(out), *arguments[1:]]
        elif words[1] == "regrade":  # task by task: MATH500's problems come from the local file
            for task in sorted(p.name for p in out.iterdir() if p.is_dir()):
                data = ["--data", str(math500_file)] if task == "math500" else []
                assert main(["regrade", str(out), "--task", task, *data]) == 0, capsys.readouterr().err[-2000:]
            continue
        else:
            toy, index = ["run", "--model", str(tiny_chat_model_dir), "--out", str(out)], 0
            while index < len(arguments):
                word = arguments[index]
                action = parser._option_string_actions.get(word)
                takes = action is not None and action.nargs != 0 and (
                    action.nargs != "?" or index + 1 < len(arguments) and not arguments[index + 1].startswith("--"))
                value = arguments[index + 1] if takes else None
                index += 2 if takes else 1
                if word in DROPPED or word in ("--model", "--out", "--data"):
                    continue
                toy += [word, TOY_VALUES.get(word, value)] if takes else [word]
            toy += [w for option, v in TOY_VALUES.items() if option not in toy for w in (option, v)]
            if "math500" in toy:
                toy += ["--data", str(math500_file)]
        assert main(toy) == 0, (words, toy, capsys.readouterr().err[-2000:])


def test_every_help_shows_every_default():
    from benchmarks import draw_speed, speed
    from benchmarks.__main__ import _parser

    parsers = [*_parser()._subparsers._group_actions[0].choices.values(), speed.build_parser(), draw_speed.build_parser()]
    for parser in parsers:
        text = " ".join(parser.format_help().split())
        for action in parser._actions:
            if action.option_strings and action.default not in (None, False, "==SUPPRESS=="):
                shown = ",".join(map(str, action.default)) if isinstance(action.default, list) else action.default
                assert f"(default: {shown})" in text, (parser.prog, action.option_strings)
