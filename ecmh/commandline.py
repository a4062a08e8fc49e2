"""The parser every command line of the project is built with (`ecmh`, `ecmh-benchmarks`, `python -m ecmh.hub`,
the benchmark programs): argparse's, refusing abbreviated flags. argparse takes a unique prefix of a flag for the
flag, so `--mcmc-step 3` would pass as `--mcmc-steps 3` where the Python API refuses `mcmc_step=3`."""

import argparse
import difflib


class ArgumentParser(argparse.ArgumentParser):
    """`argparse.ArgumentParser` with `allow_abbrev=False`; its subcommands' parsers are of this class too
    (`add_subparsers` builds them with the parent's class). An unknown flag is refused naming the nearest one."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs, allow_abbrev=False)

    def parse_args(self, args=None, namespace=None):
        parsed, unknown = self.parse_known_args(args, namespace)
        if unknown:
            near = [match for word in unknown if word.startswith("--")
                    for match in difflib.get_close_matches(word.split("=")[0], _flags(self), n=1)]
            hint = f" (did you mean {' / '.join(near)}? flags are never abbreviated)" if near else ""
            self.error(f"unrecognized arguments: {' '.join(unknown)}{hint}")
        return parsed


def _flags(parser: argparse.ArgumentParser) -> list[str]:
    """The long flags of `parser` and of its subcommands."""
    found = [flag for action in parser._actions for flag in action.option_strings if flag.startswith("--")]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found += [flag for sub in action.choices.values() for flag in _flags(sub)]
    return found
