"""What the benchmark runner says while it works (issue 52), on stderr: its plan with the model, backend and device
before the model loads, the decoding steps of the batch in flight, what it wrote with the report command at the end,
and once, on a CPU, how long a sample of long answers may take; `--quick` sizes a first try for a CPU."""

import pytest

import ecmh
from benchmarks import progress
from benchmarks.__main__ import DEFAULTS, QUICK, _parser, main
from benchmarks.sweep import ModelSpec

from conftest import tiny_model

TINY = ["--max-new-tokens", "8", "--block-size", "4", "--mcmc-steps", "1", "--batch-size", "2", "--device", "cpu"]


class Bar:
    """What a tqdm bar is told."""

    def __init__(self):
        self.postfixes = []

    def set_postfix_str(self, text):
        self.postfixes.append(text)


@pytest.mark.parametrize("options", [dict(mcmc_steps=0), dict(mcmc_steps=2, block_size=4),
                                     dict(algorithm="smc", particles=4)])
def test_the_bar_counts_the_decoding_steps_of_the_batch_in_flight(monkeypatch, options):
    monkeypatch.setattr(progress, "REFRESH_SECONDS", 0.0)
    model, bar = tiny_model(), Bar()
    with progress.decoding_steps(model, bar, "ecmh seed 0"):
        out = ecmh.generate(model, [[0, 1]], max_new_tokens=8, seed=0, eos_token_id=None, return_dict_in_generate=True,
                            **options)
    steps = out.stats.sequential_passes.item()  # one row: every forward pass is one of its sequential passes
    assert bar.postfixes == [f"ecmh seed 0, {step} decoding steps" for step in range(1, steps + 1)]
    ecmh.generate(model, [[0, 1]], max_new_tokens=2, seed=0)
    assert len(bar.postfixes) == steps  # the count stops with its batch
    with progress.decoding_steps(object(), bar, "on an engine"):  # no forward hook (a vLLM engine): the label only
        pass
    assert len(bar.postfixes) == steps


def _run_seen_at_load(monkeypatch, capsys, argv) -> tuple[str, str, str]:
    """(stderr before the model loaded, stderr after, stdout) of the runner's `main(argv)`."""
    seen = []
    load = ModelSpec.load

    def loading(spec):
        seen.append(capsys.readouterr().err)
        return load(spec)

    monkeypatch.setattr(ModelSpec, "load", loading)
    assert main(argv) == 0
    after = capsys.readouterr()
    return (seen[0] if seen else None), after.err, after.out


def test_the_runner_says_its_plan_before_loading_and_ends_with_the_report_command(tiny_chat_model_dir, tmp_path,
                                                                                  monkeypatch, capsys):
    out = tmp_path / "out"
    argv = ["run", "--task", "gsm8k", "--method", "ecmh,low_temp", "--limit", "2", "--seeds", "0,1", "--model",
            str(tiny_chat_model_dir), "--out", str(out), *TINY]
    before, after, stdout = _run_seen_at_load(monkeypatch, capsys, argv)
    lines = before.splitlines()
    assert all(line.startswith("ecmh-benchmarks: ") for line in lines), before
    assert "gsm8k: 2 problem(s) x seed(s) 0, 1 x ecmh, low_temp: 8 sample(s) to draw" in lines[0]
    assert f"{out / 'gsm8k'}/METHOD.jsonl" in before
    assert f"loading {tiny_chat_model_dir} (transformers backend on cpu, the checkpoint's dtype)" in before
    assert after.splitlines()[-1] == (f"ecmh-benchmarks: wrote 8 row(s) (8 stored in {out}); summarise them with: "
                                      f"ecmh-benchmarks report {out}")
    assert stdout == f"{out}\n"  # what a script reads
    before, after, stdout = _run_seen_at_load(monkeypatch, capsys, argv)  # nothing left: no model, the same last line
    assert before is None and after.splitlines()[-1].startswith("ecmh-benchmarks: wrote 0 row(s) (8 stored in")


class _Loaded(Exception):
    pass


@pytest.mark.parametrize("max_new_tokens, warned", [(1024, False), (1025, True), (2048, True)])
def test_long_answers_on_a_cpu_say_once_how_long_a_sample_may_take(tiny_chat_model_dir, tmp_path, monkeypatch, capsys,
                                                                   max_new_tokens, warned):
    monkeypatch.setattr(ModelSpec, "load", lambda spec: (_ for _ in ()).throw(_Loaded()))
    with pytest.raises(_Loaded):
        main(["run", "--task", "gsm8k", "--method", "ecmh", "--limit", "1", "--model", str(tiny_chat_model_dir),
              "--out", str(tmp_path), "--device", "cpu", "--max-new-tokens", str(max_new_tokens)])
    said = [line for line in capsys.readouterr().err.splitlines() if "on a CPU" in line]
    assert len(said) == warned
    if warned:
        tokens = ecmh.cost.mh_tokens(max_new_tokens, max(16, max_new_tokens // 16), DEFAULTS.mcmc_steps)
        assert f"--max-new-tokens {max_new_tokens} on a CPU: an ECMH sample may decode up to about {tokens:,}" in said[0]
        assert "--quick" in said[0]


def test_cpu_time_reads_in_the_unit_that_fits():
    assert [ecmh.cost.cpu_time(tokens) for tokens in (13, 130 * 60, 13 * 3600 * 3)] == ["1 s", "10 min", "3.0 h"]


def _parsed(argv):
    args = _parser().parse_args(argv)
    return _parser(quick=True).parse_args(argv) if args.quick else args


def test_quick_sets_its_preset_where_not_given():
    task = ["run", "--task", "gsm8k", "--method", "ecmh"]
    values = lambda args: {name: getattr(args, name) for name in QUICK}  # noqa: E731
    assert values(_parsed([*task, "--quick"])) == QUICK
    assert values(_parsed([*task, "--quick", "--max-new-tokens", "64"])) == {**QUICK, "max_new_tokens": 64}
    assert values(_parsed([*task, "--max-new-tokens", "64", "--quick"])) == {**QUICK, "max_new_tokens": 64}
    plain = values(_parsed(task))  # the negative control: without it, the papers' settings
    assert plain == {"limit": None, "max_new_tokens": DEFAULTS.max_new_tokens, "mcmc_steps": DEFAULTS.mcmc_steps,
                     "particles": plain["particles"]} and plain != QUICK
    assert ecmh.cost.mh_tokens(QUICK["max_new_tokens"], 16, QUICK["mcmc_steps"]) < 1000  # CPU-sized
