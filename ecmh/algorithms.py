"""The samplers `ecmh.generate` runs, by name. Each is an `Entry`: its options dataclass (`ecmh.options`) and a
builder from those options to an `ecmh.algorithm.Algorithm`. A new sampler is one module with both, plus one
`register` line (here, or in the caller's code), or one entry point of group `ecmh.samplers` in its package
(`ecmh.plugins`): then the `ecmh` command line, the benchmark programs and lm-eval's model take it too.

Example:
    >>> sorted(REGISTRY)
    ['mh', 'smc']
    >>> given = {"particles": 8, "max_new_tokens": 32}
    >>> options_for("smc", given).particles, given  # what is left is not a sampler option
    (8, {'max_new_tokens': 32})
"""

from typing import Callable, NamedTuple

from . import mh, smc
from .options import OptionSpec, names, specs
from .plugins import Registry


class Entry(NamedTuple):
    options: type  # the algorithm's frozen options dataclass: every option, its default and its help
    build: Callable  # build(options, generation: ecmh.settings.GenerationSettings) -> ecmh.algorithm.Algorithm
    summary: str  # one line: what it is and what it returns besides the answers


REGISTRY = Registry("ecmh.samplers", Entry)
register = REGISTRY.register
on_register = REGISTRY.on_register  # told after each registration (generate's signature follows the table)
DEFAULT = "mh"  # the sampler of a call that names none

register("mh", Entry(mh.SamplerConfig, mh.build, "ECMH: block-wise Metropolis-Hastings with entropy-jump cuts, exact "
                                                 "in the limit of MH steps; out.history with record_history=True"))
register("smc", Entry(smc.SMCConfig, smc.build, "Sequential Monte Carlo: particles in one batch, about plain "
                                                       "decoding's latency; every particle with its weight in "
                                                       "out.particles"))


def get(name: str) -> Entry:
    if name not in REGISTRY:
        raise ValueError(f"`algorithm` must be one of {', '.join(map(repr, REGISTRY))}, got {name!r}.")
    return REGISTRY[name]


def option_specs() -> list[tuple[OptionSpec, list[str]]]:
    """Every registered algorithm's command-line options, each once, with the algorithms that take it."""
    found: dict[str, tuple[OptionSpec, list[str]]] = {}
    for name, entry in REGISTRY.items():
        for spec in specs(entry.options):
            found.setdefault(spec.name, (spec, []))[1].append(name)
    return list(found.values())


def _takers(key: str) -> list[str]:
    return [name for name, entry in REGISTRY.items() if key in names(entry.options)]


def options_for(name: str, given: dict):
    """The options of algorithm `name`, taken (popped) from `given` (a call's keyword arguments; a None value counts
    as not given); an option that only other algorithms take is refused, naming them. What is left in `given` is not
    a sampler option."""
    entry = get(name)
    own = names(entry.options)
    taken = {key: given.pop(key) for key in list(given) if _takers(key)}
    stray = [key for key, value in taken.items() if key not in own and value is not None]
    if stray:
        owners = sorted({owner for key in stray for owner in _takers(key)})
        algorithms = " / ".join(f'algorithm="{owner}"' for owner in owners)
        fix = f"pass {algorithms} too" if len(owners) == 1 else "pass the algorithm that takes them"
        listed, one = ", ".join(f"`{key}`" for key in stray), len(stray) == 1
        raise ValueError(f"{listed} {'is an option' if one else 'are options'} of {algorithms}, not of "
                         f'algorithm="{name}" ({entry.summary}): {fix}, or leave {"it" if one else "them"} out.')
    return entry.options(**{key: value for key, value in taken.items() if key in own and value is not None})
