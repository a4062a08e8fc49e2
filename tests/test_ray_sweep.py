"""`python -m benchmarks run --ray`: the sweep on a local Ray cluster (2 CPUs, loopback) gives the serial runner's rows,
token for token; an actor killed mid-unit loses and duplicates nothing; a unit that raises is reported while the
others finish. Skipped where Ray is not installed (`pip install "ecmh[ray]"`)."""

import json
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'ecmh[ray]')")

from benchmarks.__main__ import main  # noqa: E402
from benchmarks.methods import RunSettings  # noqa: E402
from benchmarks.ray_sweep import RaySweep, SweepFailed  # noqa: E402
from benchmarks.results_file import read_rows  # noqa: E402
from benchmarks.run import run  # noqa: E402
from benchmarks.sweep import ModelSpec  # noqa: E402
from interrupted import run_benchmarks_signalled  # noqa: E402

TINY = ["--max-new-tokens", "8", "--block-size", "4", "--mcmc-steps", "1", "--batch-size", "2"]
SWEEP = ["--task", "gsm8k", "--method", "low_temp,ecmh,bon_low_temp", "--limit", "4"]
TIMED = ("seconds",)  # the one field that depends on the machine, not on the seeds


@pytest.fixture(scope="module", autouse=True)
def local_cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def rows(out: Path) -> dict:
    found = [row for path in sorted(Path(out).rglob("*.jsonl")) for row in read_rows(path)]
    keyed = {(r["method"], r["seed"], r["problem_id"]): {k: v for k, v in r.items() if k not in TIMED} for r in found}
    assert len(keyed) == len(found), "a duplicate row"
    return keyed


@pytest.fixture(scope="module")
def serial(tiny_chat_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("serial")
    assert main(["run", "--model", str(tiny_chat_model_dir), "--out", str(out), *TINY, *SWEEP]) == 0
    return rows(out)


def test_a_sweep_on_ray_gives_the_serial_runners_rows(tiny_chat_model_dir, tmp_path, serial):
    assert main(["run", "--model", str(tiny_chat_model_dir), "--out", str(tmp_path), *TINY, *SWEEP, "--ray"]) == 0
    assert rows(tmp_path) == serial and len(serial) == 12


def test_an_actor_killed_mid_unit_loses_and_duplicates_nothing(tiny_chat_model_dir, tmp_path, serial):
    started = []

    def kill_the_second(actor, unit):
        started.append(unit)
        if len(started) == 2:
            ray.kill(actor)

    options = RaySweep(ModelSpec(str(tiny_chat_model_dir)), actors=2, on_unit_started=kill_the_second)
    run("gsm8k", ["low_temp", "ecmh", "bon_low_temp"], None, model_name=str(tiny_chat_model_dir), limit=4,
        out=tmp_path, settings=RunSettings(max_new_tokens=8, block_size=4, mcmc_steps=1), batch_size=2,
        progress=False, ray=options)
    assert len(started) == 6 + 1  # six units, the killed one handed out again
    assert rows(tmp_path) == serial


def test_a_unit_that_raises_is_reported_and_the_others_finish(tiny_chat_model_dir, tmp_path):
    data = tmp_path / "gsm8k.jsonl"
    problems = [{"question": "What is 1 + 1?", "answer": "#### 2"}, {"question": "x" * 17000, "answer": "#### 0"},
                {"question": "What is 2 + 2?", "answer": "#### 4"}]
    data.write_text("".join(json.dumps(p) + "\n" for p in problems))
    out = tmp_path / "out"
    with pytest.raises(SweepFailed, match=r"(?s)1 unit\(s\).*low_temp seed 0 problem 1: .*context"):
        run("gsm8k", ["low_temp"], None, model_name=str(tiny_chat_model_dir), data=str(data), out=out,
            settings=RunSettings(max_new_tokens=8), batch_size=1, chat=False, progress=False,
            ray=RaySweep(ModelSpec(str(tiny_chat_model_dir)), actors=2))
    assert len(rows(out)) == 2  # the two other problems


def test_a_driver_killed_mid_sweep_resumes_to_the_uninterrupted_rows(tiny_chat_model_dir, tmp_path, serial):
    args = ["run", "--model", str(tiny_chat_model_dir), "--out", str(tmp_path), *TINY, *SWEEP]
    killed = run_benchmarks_signalled([*args, "--ray", "auto"], rows=2, signal="SIGKILL")  # joins this cluster
    assert killed.returncode == -9 and len(rows(tmp_path)) == 2
    assert main([*args, "--ray"]) == 0
    assert rows(tmp_path) == serial
