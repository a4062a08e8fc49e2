"""Reading argparse parsers for the documentation tests: a subcommand's parser, its options, and whether a documented
synopsis (`prog sub [--alpha 4] [--json] ...`) lists every option with its default."""

import argparse


def subcommand(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    return parser._subparsers._group_actions[0].choices[name]


def options(parser: argparse.ArgumentParser) -> set[str]:
    return {name for action in parser._actions for name in action.option_strings if name.startswith("--")} - {"--help"}


def check_synopsis(arguments: list[str], parser: argparse.ArgumentParser, where: str = "") -> None:
    """`arguments` (a synopsis' words after the program and subcommand) name exactly `parser`'s options, and every
    number shown after an option (`[--alpha 4]`) is its default."""
    named = [w.strip("[]") for w in arguments if w.strip("[").startswith("--")]
    assert set(named) == options(parser), (where, set(named) ^ options(parser))
    for option, value in zip(arguments, arguments[1:]):
        action = parser._option_string_actions.get(option.strip("["))
        if action is not None and value.rstrip("]").replace(".", "", 1).replace(",", "").isdigit():  # not an address
            default = action.default
            shown = ",".join(map(str, default)) if isinstance(default, (list, tuple)) else str(default)
            assert float(value.rstrip("]").split(",")[0]) == float(str(shown).split(",")[0]), (where, option, value, shown)
