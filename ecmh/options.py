"""Sampler options, declared once: each algorithm's options are one frozen dataclass (`ecmh.mh.SamplerConfig`,
`ecmh.smc.SMCConfig`) built from the shared groups here, and every field's default and help live on the field.
`ecmh.generate`'s keywords, the `ecmh` command line's flags and lm-evaluation-harness's model arguments are read
from these tables (`ecmh.algorithms`), so an option has one default project-wide.

Example:
    >>> from ecmh.mh import SamplerConfig
    >>> [spec.flag for spec in specs(SamplerConfig)]
    ['--alpha', '--cut', '--cut-power', '--mcmc-steps', '--block-size', '--early-rejection', '--tries']
"""

import dataclasses
from typing import Callable, Collection, NamedTuple, Union

from .checks import check_number
from .cuts import CUTS, DEFAULT_POWER, CutDistribution, cut_help, resolve_cut


def option(default, help: Union[str, Callable[[], str]], *, cli: bool = True, choices: Collection = ()):
    """A dataclass field with its help text; `cli=False` for options a command line cannot give (callbacks). `help` and
    `choices` may be live (a function giving the text, a registry): a command line reads them when it is built."""
    return dataclasses.field(default=default, metadata={"help": help, "cli": cli, "choices": choices})


class OptionSpec(NamedTuple):
    """One option as a command line sees it."""

    name: str
    flag: str
    type: type
    default: object
    help: str
    choices: tuple


def specs(options: type) -> list[OptionSpec]:
    """The command-line options of an options dataclass, in declaration order (`option(cli=False)` left out)."""
    found = []
    for field in dataclasses.fields(options):
        if not field.metadata.get("cli", True):
            continue
        kind = type(field.default) if field.default is not None else int
        choices, help = tuple(field.metadata.get("choices", ())), field.metadata["help"]
        found.append(OptionSpec(field.name, "--" + field.name.replace("_", "-"), str if choices else kind,
                                field.default, help() if callable(help) else help, choices))
    return found


def names(options: type) -> tuple[str, ...]:
    return tuple(field.name for field in dataclasses.fields(options))


@dataclasses.dataclass(frozen=True, kw_only=True)
class PowerTarget:
    """The target `p^alpha` every sampler shares."""

    alpha: float = option(4.0, "the power of the target p^alpha (>= 1); proposals are drawn at temperature 1/alpha")

    def __post_init__(self):
        check_number("alpha", self.alpha, minimum=1, meaning="the power of p^alpha")


@dataclasses.dataclass(frozen=True, kw_only=True)
class CutChoice(PowerTarget):
    """Where an MH step cuts the answer (`ecmh.cuts`)."""

    cut: Union[str, CutDistribution] = option(
        "entropy", lambda: f"where MH steps cut ({cut_help()})", choices=CUTS)  # or, from Python, an object with
    # log_weights(entropy, length) (`ecmh.cuts.CutDistribution`): not in the help, which command lines read too
    cut_power: float = option(DEFAULT_POWER, "the exponent of the entropy-jump cut weights")

    def __post_init__(self):
        super().__post_init__()
        self.cut_distribution  # checks `cut` and `cut_power`

    @property
    def cut_distribution(self) -> CutDistribution:
        return resolve_cut(self.cut, self.cut_power)
