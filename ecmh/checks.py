"""Argument checks shared by the package: one wording for one mistake."""

import math


def is_int(value) -> bool:
    """An int that is not a bool (`True` is an int to Python, never a count to ecmh)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value) -> bool:
    """An int or float that is not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_int(name: str, value, minimum: int, alternative: str = "") -> int:
    """`value` if it is an integer >= `minimum`, else a ValueError naming the argument (and `alternative`, e.g.
    "or None (no truncation)")."""
    if not is_int(value) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}{' ' + alternative if alternative else ''}, "
                         f"got {value!r}.")
    return value


def check_number(name: str, value, *, minimum: float = -math.inf, maximum: float = math.inf,
                 above: bool = False, meaning: str = "") -> float:
    """`value` as a float if it is a finite number in `[minimum, maximum]` (`(minimum, maximum]` with `above`), else a
    ValueError naming the argument and what it means (`meaning`, e.g. "the power of p^alpha").

    Example:
        >>> check_number("alpha", 0.5, minimum=1, meaning="the power of p^alpha")
        Traceback (most recent call last):
        ...
        ValueError: `alpha` must be a finite number >= 1 (the power of p^alpha), got 0.5.
    """
    if not is_number(value) or not math.isfinite(value) or not (value > minimum if above else value >= minimum) \
            or value > maximum:
        if math.isfinite(maximum):
            what = f"a number in {'(' if above else '['}{minimum:g}, {maximum:g}]"
        else:
            what = f"a finite number {'>' if above else '>='} {minimum:g}"
        raise ValueError(f"`{name}` must be {what}{f' ({meaning})' if meaning else ''}, got {value!r}.")
    return float(value)


SEED_LIMIT = 2**63  # seeds are int64 (a JSON number, a column of a results file); torch's generators take them all


def check_seed(name: str, value) -> int:
    """`value` if it is a seed, an integer in [0, 2**63), else a ValueError naming the argument: the one rule of the
    library, the command lines, the benchmark runner, lm-eval's model and the server.

    Example:
        >>> check_seed("--seed", -1)
        Traceback (most recent call last):
        ...
        ValueError: `--seed` must be an integer in [0, 2**63) (a seed), got -1.
    """
    if not is_int(value) or not 0 <= value < SEED_LIMIT:
        raise ValueError(f"`{name}` must be an integer in [0, 2**63) (a seed), got {value!r}.")
    return value
