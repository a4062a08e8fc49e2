"""The report's first lines: what a results folder of its size can show, in plain words, before any table."""

from .report_cells import TOO_FEW
from .stats import MIN_PROBLEMS, Z, problems_to_detect

SIZED_DIFFERENCES = (0.05, 0.10)  # the differences between two methods the first lines say the problems for


def section(methods: list) -> list[str]:
    """What the run's size can show (`methods`: the report's `MethodSummary`s), said at the fewest problems of any
    model x task x method."""
    problems = min(s.problems for s in methods)
    seeds = max(s.seeds for s in methods)
    needed = ", ".join(f"{100 * d:.0f} points about {problems_to_detect(d):,}" for d in SIZED_DIFFERENCES)
    lines = [f"**What this size can show.** {problems} problem(s) in the smallest table here, up to {seeds} seed(s) "
             "each. "]
    if problems < MIN_PROBLEMS:
        lines[0] += (f"That is too few for any interval (each needs at least {MIN_PROBLEMS} problems, so the tables "
                     f"print {TOO_FEW}): read these numbers as a check that the pipeline runs, not as evidence about "
                     "the methods. ")
    else:
        lines[0] += (f"At this size an accuracy's 95% interval spans about ±{100 * Z * (0.25 / problems) ** 0.5:.0f} "
                     "points near 50% (more seeds narrow it less than more problems). ")
    lines[0] += (f"To find a difference between two methods' accuracies at 95% confidence with 80% power, {needed} "
                 "problems are needed (accuracies near 50%; fewer where the methods agree on most problems).")
    return [lines[0], ""]
