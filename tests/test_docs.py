"""The README and docs/architecture.md agree with the code: the `ecmh generate` synopsis with its parser, every
module in the architecture page, every module path they name exists, every option and output field documented."""

import dataclasses
import re
import shlex
from pathlib import Path

import pytest

from ecmh import algorithms, cli
from ecmh.options import specs
from ecmh.outputs import ParticleSet, Stats

from synopsis import check_synopsis, subcommand

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
ARCHITECTURE = (ROOT / "docs" / "architecture.md").read_text()


def section(text: str, heading: str) -> str:
    start = text.index(heading + "\n")
    end = text.find("\n#", start + len(heading))
    return text[start:end if end >= 0 else None]


def generate_synopsis() -> list[str]:
    """The words of the README's `ecmh generate` synopsis after the subcommand (comments left out)."""
    [block] = re.findall(r"```\n(ecmh generate .*?)```", section(README, "## The command line"), re.S)
    return shlex.split(" ".join(line.split("#")[0] for line in block.splitlines()))[2:]


def generate_parser():
    """`ecmh generate`'s parser, its sampler flags' defaults set to the options tables' (the parser's own are None:
    not given)."""
    parser = subcommand(cli._parser(), "generate")
    for entry in algorithms.REGISTRY.values():
        for spec in specs(entry.options):
            parser._option_string_actions[spec.flag].default = spec.default
    return parser


def test_the_readme_synopsis_of_ecmh_generate_is_its_parser():
    check_synopsis(generate_synopsis(), generate_parser(), "ecmh generate")


@pytest.mark.parametrize("edit", [lambda words: words + ["[--beams", "4]"],  # a flag the parser lacks
                                  lambda words: [w for w in words if w != "[--moves"],  # a flag left out
                                  lambda words: [w.replace("16]", "32]") for w in words]])  # a wrong default
def test_the_synopsis_check_finds_a_stale_synopsis(edit):
    with pytest.raises(AssertionError):
        check_synopsis(edit(generate_synopsis()), generate_parser(), "ecmh generate")


def test_the_architecture_page_names_every_module_once_in_its_package():
    for package in ("ecmh", "benchmarks"):
        table = section(ARCHITECTURE, f"## `{package}/`")
        for path in sorted((ROOT / package).rglob("*.py")):
            name = path.relative_to(ROOT / package).as_posix()
            assert f"`{name}`" in table or f"`{path.name}`" in table, f"{package}/{name}"


def test_every_module_path_the_docs_name_exists():
    for text in (README, ARCHITECTURE):
        for path in re.findall(r"\b((?:ecmh|benchmarks)/[\w/]+\.py)\b", text):
            assert (ROOT / path).exists(), path
    assert not (ROOT / "ecmh" / "sampler.py").exists() and "ecmh/sampler.py" not in README


def test_the_readme_documents_every_option_and_every_output_field():
    names = {field.name for entry in algorithms.REGISTRY.values() for field in dataclasses.fields(entry.options)}
    for name in sorted(names | set(Stats._fields) | (set(ParticleSet._fields) - {"trace", "sequences"})):
        assert re.search(rf"`{name}\b", README), name
