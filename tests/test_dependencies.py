"""The README's set-up installs without a pip warning from ecmh's own dependency list (issue 52): every extra that
pyproject.toml asks of another package is one that package declares, spelt as it declares it. pip before 23.3
compares extras as written, so `math-verify[antlr4_13_2]` warned "math-verify 0.9.0 does not provide the extra
'antlr4_13_2'" (it declares `antlr4-13-2`)."""

import importlib.metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

PYPROJECT = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
REQUIREMENTS = [*PYPROJECT["dependencies"], *(r for extra in PYPROJECT["optional-dependencies"].values() for r in extra)]


def undeclared_extras(requirements) -> list[str]:
    """`package[extra]` for each extra asked of an installed package that its metadata does not declare as written."""
    found = []
    for requirement in map(Requirement, requirements):
        try:
            declared = importlib.metadata.distribution(requirement.name).metadata.get_all("Provides-Extra") or []
        except importlib.metadata.PackageNotFoundError:  # an extra not installed here (vllm): nothing to compare
            continue
        found += [f"{requirement.name}[{extra}]" for extra in sorted(requirement.extras) if extra not in declared]
    return found


def test_every_extra_pyproject_asks_for_is_declared_by_the_installed_package():
    assert [r for r in REQUIREMENTS if Requirement(r).extras]  # some are compared (ray[serve], lm-eval[api])
    assert undeclared_extras(REQUIREMENTS) == []


def test_the_check_finds_the_extra_pip_warned_about():
    assert undeclared_extras(["math-verify[antlr4_13_2]>=0.7", "ray[serve]>=2.40"]) == ["math-verify[antlr4_13_2]"]
