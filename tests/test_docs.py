"""The README and docs/architecture.md agree with the code: the `ecmh generate` synopsis with its parser, every
module in the architecture page, every module path they name exists, every option and output field documented."""

import dataclasses
import re
import shlex
from pathlib import Path

import pytest

from ecmh import algorithms, cli, cuts
from ecmh.options import specs
from ecmh.outputs import ChainStats, ParticleSet

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


DOCS = sorted([ROOT / "README.md", ROOT / "benchmarks" / "README.md", *(ROOT / "docs").glob("*.md")])


def missing_module_paths(text: str) -> list[str]:
    return [path for path in re.findall(r"\b((?:ecmh|benchmarks)/[\w/]+\.py)\b", text) if not (ROOT / path).exists()]


def test_every_module_path_the_docs_name_exists():
    assert len(DOCS) > 3
    assert {doc.name: missing_module_paths(doc.read_text()) for doc in DOCS} == {doc.name: [] for doc in DOCS}
    assert missing_module_paths("the sampler core (`ecmh/kernel.py`, `ecmh/sampler.py`)") == ["ecmh/sampler.py"]


def test_the_readme_and_the_benchmarks_readme_name_every_benchmark_method():
    from benchmarks.registry import METHODS

    benchmarks_readme = (ROOT / "benchmarks" / "README.md").read_text()
    for text in (section(README, "## Benchmarks"), benchmarks_readme.split("**Methods**")[1].split("\n\n")[1]):
        assert [name for name in METHODS if f"`{name}`" not in text] == []


def test_the_readme_documents_every_option_and_every_output_field():
    names = {field.name for entry in algorithms.REGISTRY.values() for field in dataclasses.fields(entry.options)}
    stats = {field.name for field in dataclasses.fields(ChainStats)}  # the common Stats' fields and MH's own
    for name in sorted(names | stats | (set(ParticleSet._fields) - {"trace", "sequences"})):
        assert re.search(rf"`{name}\b", README), name


def test_the_readme_names_every_cut_of_the_registry():
    [row] = [line for line in README.splitlines() if line.startswith("| `cut` |")]
    own = [name for name in cuts.CUTS if name not in cuts.CUTS.plugins]
    assert own and all(f'`"{name}"`' in row for name in own)


ADDING = section(ARCHITECTURE, "## Adding things")


def test_the_architecture_page_counts_one_registration_line_for_each_kind_of_thing():
    rows = {line.split(" | ")[0].strip("| "): line for line in ADDING.splitlines() if line.startswith("| a ")}
    assert set(rows) == {"a sampler", "a cut", "a backend (llama.cpp, SGLang, ...)", "a task", "a benchmark method"}
    for kind in ("a sampler", "a cut", "a backend (llama.cpp, SGLang, ...)"):
        assert "one line" in rows[kind] and "one entry point" in rows[kind], kind
    assert "one `benchmarks.registry.register(...)` line" in rows["a benchmark method"]
    for group in ("ecmh.samplers", "ecmh.cuts", "ecmh.backends"):
        assert group in ADDING and group in (ROOT / "ecmh" / "plugins.py").read_text()


@pytest.fixture
def toy_method():
    from benchmarks import methods, registry

    method = registry.register(methods.Plain("toy_plain", "a method registered in a test", tempered=True))
    yield method
    registry.METHODS.pop(method.name, None)


def test_a_registered_benchmark_method_reaches_the_runner_the_speed_benchmark_and_the_report(toy_method):
    """The architecture page's count for a benchmark method, one `register` line and no other edit, read off the
    three programs that list the methods."""
    from benchmarks import registry, report, speed
    from benchmarks.__main__ import _parser as runner_parser
    from benchmarks.run import order_methods

    name = toy_method.name
    rows = [{"model": "m", "task": "t", "method": method, "problem_id": str(p), "seed": 0, "correct": p % 2 == 0,
             "tokens_decoded": 10 + p, "config": {}} for method in (name, "ecmh") for p in range(3)]

    def reached() -> dict[str, bool]:
        text = report.markdown(report.summarise(rows), "report", len(rows))
        assert f"| {name} |" in text  # its rows are reported whatever the registry says
        return {"runner": name in order_methods(["all"])[0]
                and name in " ".join(subcommand(runner_parser(), "run").format_help().split()),
                "speed": name in speed.latency_methods(speed.build_parser().parse_args([])),
                "report": f"`{name}`" in text}  # named among the registered methods that do not target p^alpha

    assert reached() == {"runner": True, "speed": True, "report": True}
    del registry.METHODS[name]
    assert reached() == {"runner": False, "speed": False, "report": False}  # the negative control: unregistered
