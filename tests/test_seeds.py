"""One rule for seeds everywhere (issue 52): the library, `ecmh generate --seed`, the runner's `--seeds`, lm-eval's
model and the server take an integer in [0, 2**63) and refuse any other with the same sentence, naming their own
argument (`ecmh.checks.check_seed`). Each entry point is tried with the same integers, both sides of both ends."""

import contextlib
import io
import tempfile
from unittest import mock

from hypothesis import example, given, settings
from hypothesis import strategies as st

import ecmh
from ecmh.checks import SEED_LIMIT

from conftest import tiny_model

MODEL = tiny_model()
SEEDS = st.one_of(st.integers(-3, 3), st.integers(SEED_LIMIT - 3, SEED_LIMIT + 3), st.integers(-2**70, 2**70))


class _Loaded(Exception):
    """The entry point went on to load the model: the seed was taken."""


def _refusal(error: str, name: str):
    """The sentence of a refusal with the argument's name made generic, to compare entry points."""
    return error.strip().replace(f"`{name}`", "`NAME`")


def library(seed):
    try:
        ecmh.generate(MODEL, [[0, 1]], max_new_tokens=1, mcmc_steps=0, seed=seed)
    except ValueError as error:
        return _refusal(str(error), "seed")


def library_per_prompt(seed):
    try:
        ecmh.generate(MODEL, [[0, 1], [1]], max_new_tokens=1, mcmc_steps=0, seed=[0, seed])
    except ValueError as error:
        return _refusal(str(error), "seed[1]")


def command_line(seed):
    from ecmh import cli

    err = io.StringIO()
    with mock.patch.object(ecmh, "load_model", side_effect=_Loaded), contextlib.redirect_stderr(err):
        try:
            code = cli.main(["generate", "Hi", "--max-new-tokens", "4", f"--seed={seed}"])
        except _Loaded:
            return None
    assert code == 2
    return _refusal(err.getvalue().removeprefix("ecmh: error: "), "--seed")


def runner(seed):
    from benchmarks.__main__ import main
    from benchmarks.sweep import ModelSpec

    err = io.StringIO()
    with tempfile.TemporaryDirectory() as out, mock.patch.object(ModelSpec, "load", side_effect=_Loaded), \
            contextlib.redirect_stderr(err):
        try:
            code = main(["run", "--task", "gsm8k", "--method", "low_temp", "--limit", "1", "--out", out,
                         f"--seeds=0,{seed}"])
        except _Loaded:
            return None
    assert code == 2
    return _refusal(err.getvalue().removeprefix("ecmh-benchmarks: error: "), "--seeds")


def lm_eval_model(seed):
    from ecmh.harness import ECMHLM

    with mock.patch.object(ecmh, "load_model", side_effect=_Loaded):
        try:
            ECMHLM(seed=str(seed))  # lm-eval hands `--model_args` over as text where it is not a plain number
        except _Loaded:
            return None
        except ValueError as error:
            return _refusal(str(error), "seed")


def server(seed):
    import pydantic
    from fastapi.exceptions import RequestValidationError

    from ecmh.serve.errors import from_validation
    from ecmh.serve.schemas import request_models

    completion, _ = request_models()
    try:
        completion(prompt="Hi", seed=seed)
    except pydantic.ValidationError as error:
        return _refusal(from_validation(RequestValidationError(error.errors())).message, "seed")


ENTRY_POINTS = (library, library_per_prompt, command_line, runner, lm_eval_model, server)


@settings(max_examples=20)
@given(SEEDS)
@example(-1)
@example(0)
@example(SEED_LIMIT - 1)
@example(SEED_LIMIT)
def test_every_entry_point_takes_the_same_seeds_and_refuses_the_others_alike(seed):
    expected = None if 0 <= seed < SEED_LIMIT else f"`NAME` must be an integer in [0, 2**63) (a seed), got {seed}."
    assert {entry.__name__: entry(seed) for entry in ENTRY_POINTS} == {entry.__name__: expected
                                                                      for entry in ENTRY_POINTS}
