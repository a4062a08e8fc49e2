"""Summary of graded task-benchmark samples: `python -m benchmarks report DIR`.

Reads every `*.jsonl` below DIR (one graded sample per line: model, task, method, seed,
problem_id, correct, tokens_decoded, seconds, acceptance_rate, acceptance_by_block, config, ...),
and writes next to the data (or to `out`):
  - `summary.md`: per model x task, a table of methods (accuracy with a 95% interval clustered by
    problem, unbiased pass@k over seeds, decoded tokens and seconds per problem, MH acceptance),
    then a clustered McNemar test (asymptotic, exact and Holm-adjusted) of the subject method (`registry.SUBJECT`)
    against every other method, the target check (each method's law of `log p(answer)` and length against the
    subject's), then the plots;
  - `summary.json`: the same numbers;
  - `accuracy_vs_tokens.png` and `acceptance_by_block.png`.
Unreadable lines (a killed run's partial last line) are skipped with a warning on stderr, and a
sample seen twice (same model, task, method, seed, problem_id) keeps its first copy, files read
in path order. Each table lives with its numbers in a module of its own (`report_methods.py`, `report_mcnemar.py`,
`report_target.py`; the rows are read in `report_rows.py`), the statistics in `stats.py`, the figures in
`figures.py`; this module puts them together and writes the files.
"""

import dataclasses
import json
from collections import defaultdict
from pathlib import Path

from . import report_mcnemar, report_methods, report_size, report_target
from .figures import (ACCEPTANCE_PLOT, ACCURACY_PLOT, has_acceptance, panels, plot_acceptance_by_block,
                      plot_accuracy_vs_tokens)
from .registry import COST_REFERENCE, SUBJECT, method_rank
from .report_mcnemar import McNemarComparison, compare_with_subject, read_family, with_holm
from .report_methods import MethodSummary, summarise_method, token_ratio_spread
from .report_rows import load_rows, warn
from .report_target import TargetCheck, target_check


@dataclasses.dataclass
class Summary:
    """Every model x task x method, every comparison of the subject with another method, and the target check."""

    methods: list[MethodSummary]
    comparisons: list[McNemarComparison]
    targets: list[TargetCheck]

    def method(self, model: str, task: str, method: str) -> MethodSummary:
        return next(s for s in self.methods if (s.model, s.task, s.method) == (model, task, method))

    def comparison(self, model: str, task: str, method: str) -> McNemarComparison:
        return next(c for c in self.comparisons if (c.model, c.task, c.method) == (model, task, method))


def summarise(rows: list[dict], family: set[str] | None = None) -> Summary:
    """Per model x task x method numbers, the subject (`registry.SUBJECT`) against each other method of its
    model x task (Holm's adjustment over `family`, see `with_holm`), and every method's target check."""
    groups = defaultdict(list)
    for row in rows:
        groups[row["model"], row["task"], row["method"]].append(row)
    keys = sorted(groups, key=lambda key: (key[0], key[1], method_rank(key[2])))
    comparisons = [compare_with_subject(groups[model, task, SUBJECT], groups[model, task, method])
                   for model, task, method in keys if method != SUBJECT and (model, task, SUBJECT) in groups]
    methods = []
    for model, task, method in keys:
        summary = summarise_method(groups[model, task, method])
        reference = groups.get((model, task, COST_REFERENCE))
        summary.token_ratio_spread = token_ratio_spread(groups[model, task, method], reference) if reference else None
        methods.append(summary)
    targets = [target_check(groups[key], groups.get((key[0], key[1], SUBJECT)) if key[2] != SUBJECT else None)
               for key in keys if any(row.get("log_p") is not None for row in groups[key])]
    unknown = sorted((family or set()) - {method for _, _, method in keys})
    if unknown:
        warn(f"the pre-registered family names {', '.join(unknown)}, with no rows here")
    return Summary(methods=methods, comparisons=with_holm(comparisons, family), targets=targets)


def markdown(summary: Summary, command: str, rows: int) -> str:
    """The report: command, one table per model x task, the McNemar table, the plots."""
    lines = [
        "# Task benchmark summary", "",
        *report_size.section(summary.methods),
        f"`{command}`: {rows} graded samples.", "",
        "Accuracy: mean over all problem x seed samples. 95% CI: cluster-robust (CR1) standard error over "
        "problems (samples of one problem across seeds are correlated), t quantile on problems - 1 degrees "
        "of freedom, clipped to [0, 100] (zero width when all per-problem accuracies are equal); † marks a "
        "Wilson score interval, used where every problem has one sample or there is one problem. "
        "pass@k: unbiased estimator over seeds (Chen et al. 2021), averaged over problems. "
        "Tokens, seconds and acceptance: means over samples (one problem, one seed). At limit: share of "
        "answers that used every one of `max_new_tokens` (cut off, unless their EOS came last); a high share "
        "means the limit, not the method, decides much of the accuracy.",
    ]
    for model, task in panels(summary):
        lines += report_methods.section([s for s in summary.methods if (s.model, s.task) == (model, task)], model, task)
    lines += report_mcnemar.section(summary.comparisons) + report_target.section(summary.targets)
    lines += ["", "## Plots", "", f"![accuracy against decoded tokens]({ACCURACY_PLOT})", ""]
    if has_acceptance(summary):
        lines += [f"![MH acceptance rate by block]({ACCEPTANCE_PLOT})", ""]
    else:
        lines += ["No MH method here, so no acceptance plot.", ""]
    return "\n".join(lines)


def summary_json(summary: Summary) -> str:
    return json.dumps(dataclasses.asdict(summary), indent=2)


def main_report(directory: str | Path, out: str | Path | None = None) -> Path:
    """Summarise the results below `directory`, write the report into `out` (default: `directory`).

    Returns the path of `summary.md`; `summary.json` and the two PNG plots are written beside it.
    """
    family = read_family(directory)
    rows = load_rows(directory)
    summary = summarise(rows, family)
    command = f"ecmh-benchmarks report {directory}" + ("" if out is None else f" --out {out}")
    out = Path(directory if out is None else out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(summary_json(summary))
    plot_accuracy_vs_tokens(summary, out / ACCURACY_PLOT)
    if has_acceptance(summary):
        plot_acceptance_by_block(summary, out / ACCEPTANCE_PLOT)
    report = out / "summary.md"
    report.write_text(markdown(summary, command, len(rows)))
    return report
