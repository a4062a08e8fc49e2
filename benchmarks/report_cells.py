"""How the report's tables write a number: percentages, signed points, digits, `mean [low, high]`; `–` for none;
`[too few]` for an interval over fewer problems than `stats.MIN_PROBLEMS`."""

from .stats import MIN_PROBLEMS

TOO_FEW = "[too few]"


def bounds(low: str, high: str, problems: int | None = None) -> str:
    """`[low, high]`, or `TOO_FEW` when it rests on fewer than `MIN_PROBLEMS` problems."""
    return TOO_FEW if problems is not None and problems < MIN_PROBLEMS else f"[{low}, {high}]"


def percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def signed_points(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:+.1f}"


def number(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def interval(values: tuple | None, digits: int, signed: bool = False, problems: int | None = None) -> str:
    """`mean [low, high]` of a (mean, low, high) triple over `problems` problems (see `bounds`)."""
    if values is None:
        return "–"
    mean, low, high = values
    form = f"{{:{'+' if signed else ''},.{digits}f}}"
    if problems is not None and problems < MIN_PROBLEMS:
        return f"{form.format(mean)} {TOO_FEW}"
    return form.format(mean) + ("" if low is None else f" [{form.format(low)}, {form.format(high)}]")

