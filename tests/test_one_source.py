"""Each option's name and default, each cut's name and the default sampler are typed once (issue 50): the programs
and texts that name them read them from the options tables (`ecmh.options`), the cut registry (`ecmh.cuts.CUTS`),
the sampler registry (`ecmh.algorithms`) and the benchmark's methods (`benchmarks.registry`).

Read from the source (`ast`): in `benchmarks/speed.py` no sampler option (of a command line's) is set to a literal (a method's options
retyped), no flag named after an option defaults to the table's own default (retyped rather than read), and no cut
name is written out; `ecmh/cli.py`, `ecmh/harness.py`, `ecmh/generation.py` and `ecmh/hub.py` do not write the
default sampler's name; `generate`'s docstring and the Hub card's source list no option by hand. Each check is run
on a line that breaks it too (the negative control)."""

import ast
import re
from pathlib import Path

import pytest

import ecmh
from ecmh import algorithms, cuts, hub

ROOT = Path(__file__).resolve().parents[1]
DEFAULTS = {spec.name: spec.default for spec, _ in algorithms.option_specs()}  # the options a run sets (not callbacks)


def retyped(source: str) -> list[str]:
    """What `source` (a program of the benchmarks) types that the tables say: options set to literals, flags named after
    an option defaulting to its table default, cut names, the default sampler's name."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.keyword) and node.arg in DEFAULTS and isinstance(node.value, ast.Constant):
            found.append(f"option {node.arg}={node.value.value!r}")
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument" and node.args:
            name = str(getattr(node.args[0], "value", "")).lstrip("-").replace("-", "_")
            default = next((k.value for k in node.keywords if k.arg == "default"), None)
            if name in DEFAULTS and isinstance(default, ast.Constant) and default.value == DEFAULTS[name]:
                found.append(f"--{name}'s default {default.value!r}")
        if isinstance(node, ast.Constant) and node.value in (*cuts.CUTS, algorithms.DEFAULT):
            found.append(f"the name {node.value!r}")
    return found


def code_without_docstrings(path: Path) -> str:
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            body[0] = ast.Pass()
    return ast.unparse(tree)


@pytest.mark.parametrize("path", ["benchmarks/speed.py", "ecmh/cli.py", "ecmh/harness.py", "ecmh/generation.py",
                                  "ecmh/hub.py"])
def test_no_program_types_an_option_a_cut_or_the_default_sampler_again(path):
    assert retyped(code_without_docstrings(ROOT / path)) == []


@pytest.mark.parametrize("line, said", [
    ("smc = dict(algorithm='smc', moves=1)", "option moves=1"),  # a method's options retyped
    ("parser.add_argument('--resample-every', type=int, default=16)", "--resample_every's default 16"),
    ("MH_CUTS = {'ecmh': 'entropy'}", "the name 'entropy'"),
    ("def generate(algorithm: str = 'mh'): pass", "the name 'mh'"),
])
def test_the_check_finds_what_is_typed_again(line, said):
    assert said in retyped(line)


def backticked_options(text: str) -> set[str]:
    return set(re.findall(r"`(\w+)`", text)) & DEFAULTS.keys()


def test_generates_docstring_and_the_hub_card_list_no_option_by_hand():
    assert backticked_options(ecmh.generate.__doc__) == set()
    assert backticked_options(hub.CARD) == set()  # the card's arguments are `hub.arguments()`, from the tables
    assert backticked_options("(`ecmh.SamplerConfig` for \"mh\": `alpha`, `cut`)") == {"alpha", "cut"}  # the control
    card = hub.CARD.replace("{arguments}", hub.arguments())
    for name, default in DEFAULTS.items():
        assert f"- `{name}` ({default!r}" in card, name
