"""A third sampler through every layer (issue 42): `tests/lowtemp_algorithm.py` (plain low-temperature sampling as an
`ecmh.algorithm.Algorithm`) runs through `ecmh.generate`, the `ecmh` command line, the benchmark runner and the
lm-evaluation-harness model, which runs SMC through the same table.

What adding it took, measured: 1 new module (tests/lowtemp_algorithm.py, 65 lines) and 1 registration line per
layer; no file of ecmh/ or benchmarks/ changed for it (`benchmarks.methods.SamplerMethod` was added once, for every
registered sampler, and SMC's benchmark methods are now instances of it):
- `ecmh.generate`, the command line and lm-eval: `ecmh.algorithms.register("lowtemp", lowtemp_algorithm.ENTRY)` (in the
  process that runs them: the command line's parser and lm-eval's model arguments are read from the registry when
  they are built);
- the benchmark runner: `benchmarks.registry.register(methods.SamplerMethod("lowtemp_toy", ..., algorithm="lowtemp"))`
  (`methods.SamplerMethod` serves every registered sampler, SMC included).
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import ecmh
from benchmarks import methods, registry
from ecmh import algorithms, cli

import lowtemp_algorithm
from conftest import EOS, PAD, tiny_model
from synopsis import subcommand
from test_benchmark_run import _rows, _run as run_benchmark
from lm_eval_task import write_arithmetic_task
from test_harness import GENERATION, QUESTIONS, lm_eval

PROMPTS = torch.tensor([[PAD, 0, 1], [1, 1, 0]])
MASK = torch.tensor([[0, 1, 1], [1, 1, 1]])
REGISTER = "import ecmh.algorithms, lowtemp_algorithm; ecmh.algorithms.register('lowtemp', lowtemp_algorithm.ENTRY)"


@pytest.fixture
def lowtemp():
    algorithms.register("lowtemp", lowtemp_algorithm.ENTRY)
    yield
    del algorithms.REGISTRY["lowtemp"]


def _generate(model, **settings):
    return ecmh.generate(model, PROMPTS, attention_mask=MASK, alpha=1.5, max_new_tokens=6, num_return_sequences=8,
                         eos_token_id=EOS, return_dict_in_generate=True, **settings)


def test_generate_runs_it_as_it_runs_mh_without_mh_steps(lowtemp):
    model = tiny_model(vocab_size=6, sharpness=2.0, seed=1)
    out = _generate(model, algorithm="lowtemp", seed=3)
    same = _generate(model, algorithm="mh", mcmc_steps=0, block_size=6, seed=3)  # one block, no MH step
    assert torch.equal(out.sequences, same.sequences)
    assert torch.equal(out.stats.tokens_decoded, out.trace.length) and type(out) is ecmh.Output
    assert torch.equal(out.stats.tokens_forwarded, same.stats.tokens_forwarded)
    assert not torch.equal(out.sequences, _generate(model, algorithm="lowtemp", seed=4).sequences)  # the seed counts
    with pytest.raises(ValueError, match='`mcmc_steps` is an option of algorithm="mh", not of algorithm="lowtemp"'):
        _generate(model, algorithm="lowtemp", mcmc_steps=2)


def test_an_unregistered_name_is_refused_and_the_command_line_reads_the_registry_when_called(lowtemp):
    assert "lowtemp" in subcommand(cli._parser(), "generate").format_help()
    del algorithms.REGISTRY["lowtemp"]
    try:
        assert "lowtemp" not in subcommand(cli._parser(), "generate").format_help()
        with pytest.raises(ValueError, match="`algorithm` must be one of 'mh', 'smc', got 'lowtemp'"):
            ecmh.generate(tiny_model(), PROMPTS, algorithm="lowtemp", max_new_tokens=2)
    finally:
        algorithms.register("lowtemp", lowtemp_algorithm.ENTRY)


def test_the_command_line(tiny_chat_model_dir):
    code = f"import sys; {REGISTER}; import ecmh.cli; sys.exit(ecmh.cli.main())"
    result = subprocess.run(
        [sys.executable, "-c", code, "generate", "What is 1 + 1?", "--model", str(tiny_chat_model_dir),
         "--algorithm", "lowtemp", "--alpha", "2", "--max-new-tokens", "4", "--seed", "0", "--json"],
        capture_output=True, text=True, timeout=600, cwd=Path(__file__).parent,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    record = json.loads(result.stdout)
    assert record["settings"]["algorithm"] == "lowtemp" and record["settings"]["alpha"] == 2.0
    assert "proposals" not in record and 1 <= record["tokens_decoded"] <= 4  # its own output: no MH counters


@pytest.fixture
def benchmark_method(lowtemp):
    registry.register(methods.SamplerMethod("lowtemp_toy", "plain sampling at 1/alpha, as a registered algorithm",
                                        algorithm="lowtemp"))
    yield "lowtemp_toy"
    del registry.METHODS["lowtemp_toy"]


def test_the_benchmark_runner(benchmark_method, tiny_chat_model_dir, tmp_path):
    assert run_benchmark(tiny_chat_model_dir, tmp_path, "--task", "gsm8k", "--method", f"{benchmark_method},low_temp",
                         "--limit", "2", "--max-new-tokens", "6") == 0
    rows = {(row["method"], row["problem_id"]): row for row in _rows(tmp_path)}
    toy = [row for (method, _), row in rows.items() if method == benchmark_method]
    assert len(toy) == 2 and all(row["config"]["lowtemp"] == {} and row["acceptance_rate"] is None for row in toy)
    for row in toy:  # one plain answer's costs
        assert row["tokens_decoded"] == row["completion_tokens"] and row["sequential_passes"] == row["tokens_decoded"] + 1


@pytest.fixture(scope="module")
def any_algorithm_task(tmp_path_factory):
    """test_harness's local task without its MH option (`mcmc_steps`), which other algorithms refuse."""
    generation = {key: value for key, value in GENERATION.items() if key != "mcmc_steps"}
    return write_arithmetic_task(tmp_path_factory.mktemp("any-algorithm-task"), "ecmh_local_arithmetic", QUESTIONS,
                                 generation)


@pytest.mark.parametrize("algorithm", ["lowtemp,alpha=2", "smc,particles=3"])
def test_the_lm_evaluation_harness_model(lowtemp, any_algorithm_task, tiny_chat_model_dir, monkeypatch, algorithm):
    from lm_eval.tasks import TaskManager

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    results = lm_eval.simple_evaluate(
        model="ecmh", model_args=f"pretrained={tiny_chat_model_dir},algorithm={algorithm},batch_size=3,seed=1",
        tasks=["ecmh_local_arithmetic"], task_manager=TaskManager(include_path=str(any_algorithm_task)),
        log_samples=True, limit=3,
    )
    samples = results["samples"]["ecmh_local_arithmetic"]
    assert len(samples) == 3
    for sample in samples:
        [record] = sample["arguments"][0][1]["ecmh"]
        assert set(record) == {"log_p", "tokens_decoded", "tokens_forwarded", "sequential_passes"}  # its own stats
        assert 1 <= record["tokens_decoded"]
