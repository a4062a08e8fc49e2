"""docs/serve.md and the README's Serve section agree with the code: both `ecmh serve` synopses with its parser, and
every registered sampler and option named among the request fields."""

import re
import shlex
from pathlib import Path

import pytest

from ecmh import algorithms, cli
from ecmh.options import specs
from synopsis import check_synopsis, subcommand

ROOT = Path(__file__).resolve().parents[1]
DOCS = (ROOT / "docs" / "serve.md").read_text()
README = (ROOT / "README.md").read_text()


def serve_synopses() -> list[list[str]]:
    """The words after `ecmh serve` of each synopsis (a code block starting `ecmh serve [`)."""
    blocks = re.findall(r"```(?:bash)?\n(ecmh serve \[.*?)```", DOCS + README, re.S)
    return [shlex.split(" ".join(block.split()))[2:] for block in blocks]


def test_the_serve_synopses_are_its_parser():
    synopses = serve_synopses()
    assert len(synopses) == 2  # docs/serve.md's and the README's
    for words in synopses:
        check_synopsis(words, subcommand(cli._parser(), "serve"), "ecmh serve")


def test_the_synopsis_check_finds_a_stale_serve_synopsis():
    [words, _] = serve_synopses()
    with pytest.raises(AssertionError):
        check_synopsis([w.replace("16]", "8]") for w in words], subcommand(cli._parser(), "serve"), "ecmh serve")


def test_docs_name_every_sampler_option_as_a_request_field():
    fields = DOCS.split("**The sampler's options**")[1].split("\n\n")[0]
    for entry in algorithms.REGISTRY.values():
        for spec in specs(entry.options):
            assert f"`{spec.name}`" in fields, spec.name
    for name in algorithms.REGISTRY:
        assert f"`{name}`" in fields, name
