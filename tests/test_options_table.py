"""Options from one table (issue 42): `ecmh.generate`'s keywords, the `ecmh generate` flags and the benchmark runner's
sampler flags are the registered algorithms' options dataclasses (`ecmh.algorithms`, `ecmh.options`), with one
default per option; an option of another algorithm is refused alike from Python and the command line.

The runner's run settings are not sampler options, and say so here (`RUN_SETTINGS`): `--max-new-tokens` (3072, the
papers' length; the command line's is 128) is no option of any algorithm, and `--particles` (64, the entropy-cut
paper's SMC baseline, against `SMCConfig`'s 16) is what the benchmark's SMC methods are: changing either would
change what the benchmark samples.
"""

import dataclasses
import inspect

import pytest
import torch

import ecmh
from benchmarks.__main__ import _parser as runner_parser
from ecmh import algorithms, cli
from ecmh.options import specs

from conftest import tiny_model
from synopsis import options, subcommand

COMMAND_LINE_SETTINGS = {"--model", "--algorithm", "--max-new-tokens", "--seed", "--dtype", "--device", "--no-chat",
                         "--stop-string", "--json"}  # `ecmh generate`'s flags that are no sampler option
RUN_SETTINGS = {"--max-new-tokens": 3072, "--particles": 64}  # the runner's own defaults (see the module docstring)


def registered_options() -> dict[str, list]:
    """Every registered option's name -> its default in each algorithm that takes it."""
    found = {}
    for entry in algorithms.REGISTRY.values():
        for field in dataclasses.fields(entry.options):
            found.setdefault(field.name, []).append(field.default)
    return found


def test_one_default_per_option_and_generate_names_each_with_it():
    parameters = inspect.signature(ecmh.generate).parameters
    for name, defaults in registered_options().items():
        assert len(set(map(repr, defaults))) == 1, (name, defaults)
        assert parameters[name].kind is inspect.Parameter.KEYWORD_ONLY and parameters[name].default == defaults[0], name


def test_the_command_lines_flags_are_the_options_with_their_defaults_and_types():
    parser = subcommand(cli._parser(), "generate")
    flags = {spec.flag: spec for entry in algorithms.REGISTRY.values() for spec in specs(entry.options)}
    negated = {"--no-" + flag[2:] for flag, spec in flags.items() if spec.type is bool}  # --no-early-rejection
    assert options(parser) == flags.keys() | negated | COMMAND_LINE_SETTINGS
    help_text = " ".join(parser.format_help().split())
    for flag, spec in flags.items():
        action = parser._option_string_actions[flag]
        assert action.default is None  # not given: the table's default, and no option of another algorithm
        assert spec.type is bool or action.type is spec.type, flag
        assert f"(default: {spec.default})" in help_text, flag
    assert {spec.name for spec in flags.values()} == registered_options().keys() - {"on_step", "record_history",
                                                                                     "progress"}  # Python's only


def test_the_benchmark_runners_sampler_flags_have_the_tables_defaults():
    run = subcommand(runner_parser(), "run")
    flags = {spec.flag: spec.default for entry in algorithms.REGISTRY.values() for spec in specs(entry.options)}
    shared = options(run) & flags.keys()
    assert shared >= {"--alpha", "--mcmc-steps", "--cut-power", "--block-size", "--particles"}
    for flag in shared:
        expected = RUN_SETTINGS.get(flag, flags[flag])
        assert run._option_string_actions[flag].default == expected, flag
    for flag, default in RUN_SETTINGS.items():
        assert run._option_string_actions[flag].default == default
    assert "--max-new-tokens" not in flags  # a run setting, not a sampler option


ANOTHERS = [("smc", "mcmc_steps", 2, "mh"), ("smc", "early_rejection", False, "mh"), ("smc", "block_size", 4, "mh"),
            ("mh", "particles", 4, "smc"), ("mh", "moves", 1, "smc"), ("mh", "resample_every", 8, "smc")]


@pytest.mark.parametrize("algorithm, option, value, owner", ANOTHERS)
def test_an_option_of_another_algorithm_is_refused_alike_in_python_and_on_the_command_line(algorithm, option, value,
                                                                                          owner, capsys):
    said = f'`{option}` is an option of algorithm="{owner}", not of algorithm="{algorithm}"'
    with pytest.raises(ValueError, match=said) as refused:
        ecmh.generate(tiny_model(), torch.tensor([[0, 1]]), algorithm=algorithm, max_new_tokens=2, **{option: value})
    flag = "--" + option.replace("_", "-")
    words = [f"--no-{flag[2:]}"] if value is False else [flag, str(value)]
    assert cli.main(["generate", "Hi", "--algorithm", algorithm, *words]) == 2  # refused before any model loads
    assert capsys.readouterr().err == f"ecmh: error: {refused.value}\n"


def test_each_algorithm_takes_its_own_options_from_the_same_call():
    for algorithm, option, value, owner in ANOTHERS:  # the negative control: the owner takes what the other refused
        assert getattr(algorithms.options_for(owner, {option: value}), option) == value
