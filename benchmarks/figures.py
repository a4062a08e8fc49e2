"""The benchmark report's figures: accuracy against decoded tokens, and MH acceptance by block (matplotlib's
`Figure`, never pyplot, so drawing them leaves the caller's backend alone)."""

import math
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .registry import method_rank

ACCURACY_PLOT = "accuracy_vs_tokens.png"
ACCEPTANCE_PLOT = "acceptance_by_block.png"


def panels(summary) -> list[tuple[str, str]]:
    """The (model, task) pairs in report order."""
    return list(dict.fromkeys((s.model, s.task) for s in summary.methods))


def method_colours(summary) -> dict[str, str]:
    methods = sorted({s.method for s in summary.methods}, key=method_rank)
    return {method: f"C{i % 10}" for i, method in enumerate(methods)}


def panel_grid(count: int):
    """A figure with `count` subplots, at most three a row, and the unused axes hidden."""
    columns = min(count, 3)
    rows = math.ceil(count / columns)
    figure = Figure(figsize=(5 * columns, 4 * rows))  # no pyplot: the caller's backend stays as it is
    axes = figure.subplots(rows, columns, squeeze=False)
    for axis in axes.flat[count:]:
        axis.set_visible(False)
    return figure, list(axes.flat)


def legend_below(figure, axes, columns: int = 4) -> None:
    """One legend for every panel, under them all, so that it hides no point; then lay the figure out."""
    entries = {}
    for axis in axes:
        for handle, label in zip(*axis.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    legend_inches = 0.3 * math.ceil(len(entries) / columns) + 0.2 if entries else 0.0
    height = figure.get_figheight() + legend_inches
    figure.set_figheight(height)
    if entries:
        figure.legend(list(entries.values()), list(entries), loc="lower center", ncol=min(len(entries), columns),
                      fontsize="small", frameon=False)
    figure.tight_layout(rect=(0, legend_inches / height, 1, 1))


def plot_accuracy_vs_tokens(summary, path: Path) -> None:
    """Accuracy (95% CI) against mean decoded tokens per problem (± their standard deviation over samples):
    a point per method, a panel per model x task, so methods compare at matched compute."""
    colours = method_colours(summary)
    figure, axes = panel_grid(len(panels(summary)))
    for axis, (model, task) in zip(axes, panels(summary)):
        for s in summary.methods:
            if (s.model, s.task) != (model, task) or s.tokens_per_problem is None:
                continue
            # with unequal samples per problem (a partial run) the interval's centre is not the sample mean
            error = [[100 * max(0.0, s.accuracy - s.ci_low)], [100 * max(0.0, s.ci_high - s.accuracy)]]
            axis.errorbar(s.tokens_per_problem, 100 * s.accuracy, yerr=error, xerr=s.tokens_sd, fmt="o", capsize=3,
                          color=colours[s.method], label=s.method)
        axis.set(title=f"{model} / {task}", xlabel="decoded tokens per problem", ylabel="accuracy %", ylim=(-2, 102))
    legend_below(figure, axes)
    figure.savefig(path, dpi=120)


def has_acceptance(summary) -> bool:
    return any(s.acceptance_by_block for s in summary.methods)


def plot_acceptance_by_block(summary, path: Path) -> None:
    """MH acceptance rate by block index: a line per method with acceptance data, a panel per model x task."""
    colours = method_colours(summary)
    figure, axes = panel_grid(len(panels(summary)))
    for axis, (model, task) in zip(axes, panels(summary)):
        lines = [s for s in summary.methods if (s.model, s.task) == (model, task) and s.acceptance_by_block]
        for s in lines:
            rates = [math.nan if r is None else r for r in s.acceptance_by_block]
            axis.plot(range(len(rates)), rates, marker=".", color=colours[s.method], label=s.method)
        axis.set(title=f"{model} / {task}", xlabel="block", ylabel="acceptance rate", ylim=(0, 1))
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        if not lines:
            axis.text(0.5, 0.5, "no MH method", ha="center", va="center", transform=axis.transAxes)
    legend_below(figure, axes)
    figure.savefig(path, dpi=120)
