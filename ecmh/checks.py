"""Argument checks shared by the package: one wording for one mistake."""


def is_int(value) -> bool:
    """An int that is not a bool (`True` is an int to Python, never a count to ecmh)."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_int(name: str, value, minimum: int, alternative: str = "") -> int:
    """`value` if it is an integer >= `minimum`, else a ValueError naming the argument (and `alternative`, e.g.
    "or None (no truncation)")."""
    if not is_int(value) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}{' ' + alternative if alternative else ''}, "
                         f"got {value!r}.")
    return value
