"""The run scripts kept in the results folders (`benchmarks/results/*/*.sh`) still describe runs the runner accepts:
each script runs with `python` replaced by a recorder, and every `python -m benchmarks run ...` it would start parses
with the runner's parser, names registered methods and builds its settings. (Running them for real needs the
optional Qwen model and vLLM: hours on a CPU.)"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.__main__ import _parser
from benchmarks.methods import RUN_OPTIONS, RunSettings
from benchmarks.registry import METHODS
from synopsis import subcommand

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((ROOT / "benchmarks" / "results").glob("*/*.sh"))
ARGUMENT = {"frontier-qwen-humaneval": "4x2"}  # each script's first argument (the others take a shard)


def recorded_commands(script: Path, tmp_path: Path) -> list[list[str]]:
    bin_dir, record = tmp_path / "bin", tmp_path / "record.jsonl"
    bin_dir.mkdir(exist_ok=True)
    recorder = bin_dir / "python"
    recorder.write_text(f"#!{sys.executable}\nimport json, os, sys\n"
                        "open(os.environ['RECORD'], 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n")
    recorder.chmod(0o755)
    argument = ARGUMENT.get(script.parent.name, "0")
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "RECORD": str(record)}
    done = subprocess.run(["bash", str(script), argument], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: f"{path.parent.name}/{path.name}")
def test_a_results_script_starts_runs_the_runner_accepts(script, tmp_path):
    commands = recorded_commands(script, tmp_path)
    assert commands and all(command[:3] == ["-m", "benchmarks", "run"] for command in commands)
    for command in commands:
        args = subcommand(_parser(), "run").parse_args(command[3:])
        assert [name for name in args.method.split(",") if name not in METHODS] == []
        RunSettings(**{name: getattr(args, name) for name in RUN_OPTIONS}, max_new_tokens=args.max_new_tokens,
                    particles=args.particles)


def test_a_stale_flag_is_caught(tmp_path):  # negative control: the parser refuses what a stale script would pass
    with pytest.raises(SystemExit):
        subcommand(_parser(), "run").parse_args(["--task", "humaneval", "--method", "ecmh", "--mcmc-step", "3"])
