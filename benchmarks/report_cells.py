"""How the report's tables write a number: percentages, signed points, digits, `mean [low, high]`; `–` for none."""


def percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def signed_points(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:+.1f}"


def number(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def interval(values: tuple | None, digits: int, signed: bool = False) -> str:
    """`mean [low, high]` of a (mean, low, high) triple."""
    if values is None:
        return "–"
    mean, low, high = values
    form = f"{{:{'+' if signed else ''},.{digits}f}}"
    return form.format(mean) + ("" if low is None else f" [{form.format(low)}, {form.format(high)}]")

