"""Every command line of the project refuses abbreviated flags (issue 52): `ecmh generate --mcmc-step 3` is an error
naming `--mcmc-steps`, not `--mcmc-steps 3`. The programs are found in the source (each module of `ecmh/` and
`benchmarks/` that builds a parser), each builds it with `ecmh.commandline.ArgumentParser`, and every command of
each (its subcommands included) is tried with an abbreviation of each of its flags."""

import argparse
import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from ecmh import commandline

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted(p for package in ("ecmh", "benchmarks") for p in (ROOT / package).rglob("*.py"))


def parsers_built(source: str) -> dict[str, int]:
    """How often `source` calls `ArgumentParser(` (the project's) and `argparse.ArgumentParser(` (abbreviations on)."""
    counts = {"ArgumentParser": 0, "argparse.ArgumentParser": 0}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, (ast.Name, ast.Attribute)):
            called = ast.unparse(node.func)
            if called in counts:
                counts[called] += 1
    return counts


PROGRAMS = [".".join(p.relative_to(ROOT).with_suffix("").parts) for p in SOURCES
            if parsers_built(p.read_text())["ArgumentParser"]]


def test_no_module_builds_argparses_own_parser():
    assert [p.name for p in SOURCES if parsers_built(p.read_text())["argparse.ArgumentParser"]] == []
    assert parsers_built("p = argparse.ArgumentParser(prog='x')")["argparse.ArgumentParser"] == 1  # the control
    assert {"ecmh.cli", "ecmh.hub", "benchmarks.__main__", "benchmarks.speed"} <= set(PROGRAMS)


class _Built(Exception):
    pass


def program_parser(module: str, monkeypatch) -> argparse.ArgumentParser:
    """The parser `module.main` builds, caught as it parses (nothing of the program runs)."""
    def caught(parser, *args, **kwargs):
        raise _Built(parser)

    monkeypatch.setattr(commandline.ArgumentParser, "parse_args", caught)
    with pytest.raises(_Built) as built:
        importlib.import_module(module).main([])
    return built.value.args[0]


def commands(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """`parser` and every subcommand's parser under it."""
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found += [command for sub in action.choices.values() for command in commands(sub)]
    return found


def abbreviations_taken(parser: argparse.ArgumentParser) -> list[str]:
    """The abbreviations of `parser`'s flags (each flag less its last letter, where that prefixes no other flag) that it
    takes for the flag. Its arguments are made optional first, so that a refusal is about the abbreviation alone."""
    for action in parser._actions:
        action.required = False
    parser.error = lambda message: (_ for _ in ()).throw(ValueError(message))
    flags = [flag for action in parser._actions for flag in action.option_strings if flag.startswith("--")]
    taken = []
    for flag in flags:
        abbreviation = flag[:-1]
        if sum(other.startswith(abbreviation) for other in flags) > 1:
            continue
        try:
            taken += [] if parser.parse_known_args([abbreviation])[1] == [abbreviation] else [abbreviation]
        except (ValueError, SystemExit):  # taken for the flag, and then short of its value (or it was --help)
            taken.append(abbreviation)
    return taken


@pytest.mark.parametrize("module", PROGRAMS)
def test_every_command_of_every_program_refuses_abbreviated_flags(module, monkeypatch):
    parser = program_parser(module, monkeypatch)
    monkeypatch.undo()
    for command in commands(parser):
        assert isinstance(command, commandline.ArgumentParser), command.prog
        assert [flag for action in command._actions for flag in action.option_strings if flag != "-h"], command.prog
        assert abbreviations_taken(command) == [], command.prog


@pytest.mark.parametrize("module", PROGRAMS)
def test_every_argument_of_every_command_says_what_it_is(module, monkeypatch):
    parser = program_parser(module, monkeypatch)
    for command in commands(parser):
        assert [action.dest for action in command._actions if not action.help
                and not isinstance(action, argparse._SubParsersAction)] == [], command.prog  # its commands have help


def test_the_check_finds_a_parser_that_takes_abbreviations(monkeypatch):
    parser = program_parser("ecmh.cli", monkeypatch)
    monkeypatch.undo()
    [generate] = [c for c in commands(parser) if c.prog.endswith("generate")]
    generate.allow_abbrev = True  # the negative control: argparse's default
    assert "--mcmc-step" in abbreviations_taken(generate)


@pytest.mark.parametrize("args, flag", [
    (["ecmh.cli", "generate", "Hi", "--mcmc-step", "3"], "--mcmc-steps"),
    (["benchmarks", "run", "--task", "gsm8k", "--method", "ecmh", "--out", "{tmp}", "--max-new-token", "8"],
     "--max-new-tokens"),
])
def test_an_abbreviated_flag_is_one_error_naming_the_flag(args, flag, tmp_path):
    args = [arg.format(tmp=tmp_path) for arg in args]
    done = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert f"unrecognized arguments: {' '.join(args[-2:])} (did you mean {flag}?" in done.stderr.splitlines()[-1]
