"""Every example in a docstring of `ecmh/` runs and prints what it shows (the style guide asks for runnable examples;
this keeps them true). The vLLM backend's modules are collected only where vLLM is installed."""

import doctest
import importlib
import importlib.util
import pkgutil

import pytest

import ecmh

MODULES = sorted(name for _, name, _ in pkgutil.walk_packages(ecmh.__path__, "ecmh.")
                 if not name.endswith(".__main__")  # runs the command line when imported
                 and (importlib.util.find_spec("vllm") is not None or not name.startswith("ecmh.backends.vllm")))


@pytest.mark.parametrize("name", MODULES)
def test_the_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples of {name} failed (output above)"


def test_a_wrong_example_fails():  # negative control: testmod reports a failed example
    module = type(ecmh)("example")
    module.__doc__ = ">>> 1 + 1\n3\n"
    assert doctest.testmod(module, report=False).failed == 1
