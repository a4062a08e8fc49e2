"""Summary of graded task-benchmark samples: `python -m benchmarks report DIR`.

Reads every `*.jsonl` below DIR (one graded sample per line: model, task, method, seed,
problem_id, correct, tokens_decoded, seconds, acceptance_rate, acceptance_by_block, config, ...),
and writes next to the data (or to `out`):
  - `summary.md`: per model x task, a table of methods (accuracy with a 95% interval clustered by
    problem, unbiased pass@k over seeds, decoded tokens and seconds per problem, MH acceptance),
    then a clustered McNemar test of `ecmh` against every other method, then the plots;
  - `summary.json`: the same numbers;
  - `accuracy_vs_tokens.png` and `acceptance_by_block.png`.
Unreadable lines (a killed run's partial last line) are skipped with a warning on stderr, and a
sample seen twice (same model, task, method, seed, problem_id) keeps its first copy, files read
in path order. The statistics live in `stats.py`, the figures in `figures.py`; this module
reads, summarises and writes the tables.
"""

import dataclasses
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from .figures import (ACCEPTANCE_PLOT, ACCURACY_PLOT, has_acceptance, panels, plot_acceptance_by_block,
                      plot_accuracy_vs_tokens)
from .registry import method_rank
from .results_file import SAMPLE_KEY, read_rows, row_key
from .stats import (CLUSTERED_CI, accuracy_interval, clustered_mcnemar, mean_or_none, paired_difference,
                    pass_at_k, pass_at_k_levels, sd_or_none)

REFERENCE_METHOD = "ecmh"
REQUIRED_KEYS = (*SAMPLE_KEY, "correct")


# ---------------------------------------------------------------- reading


def warn(message: str) -> None:
    print(f"report: {message}", file=sys.stderr)


def complete_rows(path: Path) -> list[dict]:
    """The graded samples in one file: readable lines (`results_file.read_rows`) that carry every key."""
    rows = []
    for row in read_rows(path):
        missing = [key for key in REQUIRED_KEYS if not isinstance(row, dict) or key not in row]
        if missing:
            warn(f"{path}: skipping a row without {', '.join(missing)}")
            continue
        rows.append(row)
    return rows


def load_rows(directory: str | Path) -> list[dict]:
    """Every graded sample in the `*.jsonl` files below `directory`, first copy of each sample key.

    Raises ValueError when there is no such file or no readable sample in them.
    """
    paths = sorted(Path(directory).rglob("*.jsonl"))
    if not paths:
        raise ValueError(f"no *.jsonl result files under {directory}")
    rows, seen, duplicates = [], set(), 0
    for path in paths:
        for row in complete_rows(path):
            key = row_key(row)
            if key in seen:
                duplicates += 1
                continue
            seen.add(key)
            rows.append(row)
    if duplicates:
        warn(f"dropped {duplicates} duplicate sample(s), keeping the first copy of each")
    if not rows:
        raise ValueError(f"no graded samples in the {len(paths)} *.jsonl file(s) under {directory}")
    return rows


# ---------------------------------------------------------------- summary


@dataclasses.dataclass
class MethodSummary:
    """One model x task x method. Per-problem figures are means over samples (one problem, one seed)."""

    model: str
    task: str
    method: str
    problems: int
    seeds: int
    samples: int
    accuracy: float
    ci_low: float
    ci_high: float
    ci_method: str
    pass_at_k: dict[int, float]
    tokens_per_problem: float | None
    tokens_sd: float | None  # standard deviation of the decoded tokens over samples
    at_token_limit: float | None
    seconds_per_problem: float | None
    passes_per_problem: float | None  # sequential forward passes per answer (rows made before it was recorded: None)
    acceptance_rate: float | None
    acceptance_by_block: list[float | None]
    configs: list[dict]
    by_extraction: dict[str, tuple[int, float]]  # math answers: kind -> (samples, accuracy)
    by_selector: dict[str, tuple[int, float]]  # best-of-N: selector -> (samples, accuracy of its pick)


@dataclasses.dataclass
class McNemarComparison:
    """`ecmh` against `method` on the (problem, seed) samples both have, clustered by problem."""

    model: str
    task: str
    method: str
    pairs: int
    ecmh_only: int
    other_only: int
    statistic: float
    p_value: float
    difference: float  # ecmh's accuracy less the other method's, over the pairs
    difference_low: float | None  # its 95% interval, clustered by problem (None for one problem)
    difference_high: float | None
    # the difference had every answer the token limit cut off gone against ecmh (ecmh's wrong, the other's right):
    # how far the limit could move it; None when no answer in the pairs was cut off
    difference_if_cut_offs_went_against_ecmh: float | None
    token_ratio: float | None  # ecmh's mean decoded tokens / the other method's, over the pairs


@dataclasses.dataclass
class Summary:
    """Every model x task x method, and every comparison of ecmh with another method."""

    methods: list[MethodSummary]
    comparisons: list[McNemarComparison]

    def method(self, model: str, task: str, method: str) -> MethodSummary:
        return next(s for s in self.methods if (s.model, s.task, s.method) == (model, task, method))

    def comparison(self, model: str, task: str, method: str) -> McNemarComparison:
        return next(c for c in self.comparisons if (c.model, c.task, c.method) == (model, task, method))


def mean_acceptance_by_block(rows: list[dict]) -> list[float | None]:
    """Per block index, the mean over samples of acceptance_by_block[i], nulls ignored."""
    blocks = [row.get("acceptance_by_block") or [] for row in rows]
    length = max(map(len, blocks), default=0)
    return [mean_or_none(block[i] if i < len(block) else None for block in blocks) for i in range(length)]


def at_token_limit(row: dict) -> float | None:
    """1.0 when the answer used all of `max_new_tokens` (cut off, unless its EOS came last), else 0.0."""
    limit, tokens = (row.get("config") or {}).get("max_new_tokens"), row.get("completion_tokens")
    return None if limit is None or tokens is None else float(tokens >= limit)


def distinct_configs(rows: list[dict]) -> list[dict]:
    """The different `config` values of the samples, in order of appearance."""
    configs = []
    for row in rows:
        if row.get("config") not in configs:
            configs.append(row.get("config"))
    return configs


def summarise_method(rows: list[dict]) -> MethodSummary:
    """The numbers of one model x task x method from its samples."""
    first = rows[0]
    by_problem = defaultdict(list)
    for row in rows:
        by_problem[row["problem_id"]].append(bool(row["correct"]))
    counts = [(len(results), sum(results)) for results in by_problem.values()]
    low, high, ci_method = accuracy_interval(counts)
    configs = distinct_configs(rows)
    if len(configs) > 1:
        warn(f"{first['model']} / {first['task']} / {first['method']} mixes {len(configs)} configs")
    return MethodSummary(
        model=first["model"], task=first["task"], method=first["method"],
        problems=len(by_problem), seeds=len({row["seed"] for row in rows}), samples=len(rows),
        accuracy=sum(c for _, c in counts) / len(rows), ci_low=low, ci_high=high, ci_method=ci_method,
        pass_at_k={k: statistics.fmean(pass_at_k(n, c, k) for n, c in counts)
                   for k in pass_at_k_levels([n for n, _ in counts])},
        tokens_per_problem=mean_or_none(row.get("tokens_decoded") for row in rows),
        tokens_sd=sd_or_none(row.get("tokens_decoded") for row in rows),
        at_token_limit=mean_or_none(map(at_token_limit, rows)),
        seconds_per_problem=mean_or_none(row.get("seconds") for row in rows),
        passes_per_problem=mean_or_none(row.get("sequential_passes") for row in rows),
        acceptance_rate=mean_or_none(row.get("acceptance_rate") for row in rows),
        acceptance_by_block=mean_acceptance_by_block(rows),
        configs=configs,
        by_extraction=accuracy_by_extraction(rows),
        by_selector=accuracy_by_selector(rows),
    )


def accuracy_by_extraction(rows: list[dict]) -> dict[str, tuple[int, float]]:
    """Samples and accuracy per way the answer was extracted (rows graded with an `extraction` field)."""
    kinds = defaultdict(list)
    for row in rows:
        if "extraction" in row:
            kinds[row["extraction"]].append(bool(row["correct"]))
    return {kind: (len(results), sum(results) / len(results)) for kind, results in sorted(kinds.items())}


def accuracy_by_selector(rows: list[dict]) -> dict[str, tuple[int, float]]:
    """Best-of-N: samples and accuracy of the draw each selector picks (rows that record `by_selector`)."""
    picks = defaultdict(list)
    for row in rows:
        for selector, pick in (row.get("by_selector") or {}).items():
            picks[selector].append(bool(pick["correct"]))
    return {name: (len(results), sum(results) / len(results)) for name, results in sorted(picks.items())}


def compare_with_reference(reference: list[dict], other: list[dict]) -> McNemarComparison:
    """Clustered McNemar of the reference method's samples against another method's."""
    reference_correct = {(row["problem_id"], row["seed"]): bool(row["correct"]) for row in reference}
    other_correct = {(row["problem_id"], row["seed"]): bool(row["correct"]) for row in other}
    paired = sorted(reference_correct.keys() & other_correct.keys())  # sums in one order: the same digits every run
    discordant = defaultdict(lambda: [0, 0])
    pairs_per_problem = defaultdict(int)
    for problem, seed in paired:
        pairs_per_problem[problem] += 1
        ours, theirs = reference_correct[problem, seed], other_correct[problem, seed]
        if ours != theirs:
            discordant[problem][0 if ours else 1] += 1
    statistic, p_value = clustered_mcnemar([tuple(counts) for counts in discordant.values()])
    difference = paired_difference([(pairs, discordant[problem][0] - discordant[problem][1])
                                    for problem, pairs in pairs_per_problem.items()])
    by_keys = [{(row["problem_id"], row["seed"]): row for row in rows} for rows in (reference, other)]
    tokens = [mean_or_none(by_key[key].get("tokens_decoded") for key in paired) for by_key in by_keys]
    cut_off = {key: [at_token_limit(by_key[key]) == 1.0 for by_key in by_keys] for key in paired}
    would_flip = sum((reference_correct[key] and cut_off[key][0]) + (not other_correct[key] and cut_off[key][1])
                     for key in paired)
    return McNemarComparison(
        model=other[0]["model"], task=other[0]["task"], method=other[0]["method"], pairs=len(paired),
        ecmh_only=sum(b for b, _ in discordant.values()), other_only=sum(c for _, c in discordant.values()),
        statistic=statistic, p_value=p_value, difference=difference[0], difference_low=difference[1],
        difference_high=difference[2],
        difference_if_cut_offs_went_against_ecmh=difference[0] - would_flip / len(paired)
        if any(any(flags) for flags in cut_off.values()) else None,
        token_ratio=tokens[0] / tokens[1] if None not in tokens and tokens[1] else None,
    )


def agreement(rows: list[dict], model: str, task: str) -> tuple[list[str], list[list[float | None]]]:
    """Per pair of methods, the share of the (problem, seed) samples both have on which they agree (both right or
    both wrong): `(methods, matrix)`, None where they share no sample."""
    correct = defaultdict(dict)
    for row in rows:
        if (row["model"], row["task"]) == (model, task):
            correct[row["method"]][row["problem_id"], row["seed"]] = bool(row["correct"])
    names = sorted(correct, key=method_rank)

    def share(a, b):
        both = correct[a].keys() & correct[b].keys()
        return sum(correct[a][k] == correct[b][k] for k in both) / len(both) if both else None

    return names, [[share(a, b) for b in names] for a in names]


def summarise(rows: list[dict]) -> Summary:
    """Per model x task x method numbers, and `ecmh` against each other method of its model x task."""
    groups = defaultdict(list)
    for row in rows:
        groups[row["model"], row["task"], row["method"]].append(row)
    keys = sorted(groups, key=lambda key: (key[0], key[1], method_rank(key[2])))
    comparisons = [compare_with_reference(groups[model, task, REFERENCE_METHOD], groups[model, task, method])
                   for model, task, method in keys
                   if method != REFERENCE_METHOD and (model, task, REFERENCE_METHOD) in groups]
    return Summary(methods=[summarise_method(groups[key]) for key in keys], comparisons=comparisons)


# ---------------------------------------------------------------- markdown


def percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def signed_points(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:+.1f}"


def number(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def method_table(methods: list[MethodSummary]) -> list[str]:
    levels = sorted({k for s in methods for k in s.pass_at_k})
    header = ["method", "problems", "seeds", "accuracy % [95% CI]", *(f"pass@{k} %" for k in levels),
              "tokens/problem (sd)", "at limit %", "s/problem", "acceptance %"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for s in methods:
        marker = "" if s.ci_method == CLUSTERED_CI else " †"
        cells = [s.method, str(s.problems), str(s.seeds),
                 f"{percent(s.accuracy)} [{percent(s.ci_low)}, {percent(s.ci_high)}]{marker}",
                 *(percent(s.pass_at_k.get(k)) for k in levels),
                 f"{number(s.tokens_per_problem, 0)} ({number(s.tokens_sd, 0)})", percent(s.at_token_limit), number(s.seconds_per_problem, 2),
                 percent(s.acceptance_rate)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


COST_REFERENCE = "low_temp"


def cost_table(methods: list[MethodSummary]) -> list[str]:
    """Each method's mean decoded tokens, sequential passes and seconds per answer as ratios to `low_temp`'s."""
    reference = next((s for s in methods if s.method == COST_REFERENCE), None)
    if reference is None:
        return []

    def ratio(value, base):
        return number(value / base if value is not None and base else None, 2)

    lines = ["", f"Cost per answer as a ratio to `{COST_REFERENCE}` (latency on a GPU follows the sequential passes):",
             "", "| method | decoded tokens | sequential passes | seconds |", "| --- | --- | --- | --- |"]
    for s in methods:
        lines.append(f"| {s.method} | {ratio(s.tokens_per_problem, reference.tokens_per_problem)} "
                     f"| {ratio(s.passes_per_problem, reference.passes_per_problem)} "
                     f"| {ratio(s.seconds_per_problem, reference.seconds_per_problem)} |")
    return lines


def settings_lines(methods: list[MethodSummary]) -> list[str]:
    """One line for all methods when they share their settings, else one line per method."""
    described = [("; ".join(f"`{json.dumps(c, sort_keys=True)}`" for c in s.configs), s.method) for s in methods]
    if len({text for text, _ in described}) == 1:
        return [f"- all methods: {described[0][0]}"]
    return [f"- `{method}`: {text}" for text, method in described]


def mcnemar_table(comparisons: list[McNemarComparison]) -> list[str]:
    lines = ["| model | task | ecmh vs | pairs | ecmh only | other only | statistic | p "
             "| ecmh - other, points [95% CI] | had cut-off answers gone against ecmh | ecmh tokens / other |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for c in comparisons:
        interval = "" if c.difference_low is None else \
            f" [{signed_points(c.difference_low)}, {signed_points(c.difference_high)}]"
        lines.append(f"| {c.model} | {c.task} | {c.method} | {c.pairs} | {c.ecmh_only} | {c.other_only} "
                     f"| {c.statistic:.2f} | {c.p_value:.3g} | {signed_points(c.difference)}{interval} "
                     f"| {signed_points(c.difference_if_cut_offs_went_against_ecmh)} | {number(c.token_ratio, 2)} |")
    return lines


def breakdown_table(methods: list[MethodSummary], field: str, title: str) -> list[str]:
    """Accuracy per kind (a `MethodSummary` dict field: kind -> (samples, accuracy)), for the methods that have it."""
    methods = [s for s in methods if getattr(s, field)]
    kinds = sorted({kind for s in methods for kind in getattr(s, field)})
    if not kinds:
        return []
    lines = ["", f"{title} (% of samples, samples):", "",
             "| method | " + " | ".join(kinds) + " |", "|" + " --- |" * (len(kinds) + 1)]
    for s in methods:
        shares = getattr(s, field)
        cells = [f"{percent(shares[k][1])} ({shares[k][0]})" if k in shares else "–" for k in kinds]
        lines.append(f"| {s.method} | " + " | ".join(cells) + " |")
    return lines


def markdown(summary: Summary, command: str, rows: int) -> str:
    """The report: command, one table per model x task, the McNemar table, the plots."""
    lines = [
        "# Task benchmark summary", "",
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
        methods = [s for s in summary.methods if (s.model, s.task) == (model, task)]
        lines += ["", f"## {model} / {task}", "", *method_table(methods), *cost_table(methods),
                  *breakdown_table(methods, "by_extraction", "Accuracy by how the answer was extracted"),
                  *breakdown_table(methods, "by_selector", "Best-of-N accuracy by the selector that picks the draw"), "",
                  "Settings:", "", *settings_lines(methods)]
    lines += ["", "## ecmh against each method: clustered McNemar", "",
              "Paired on (problem, seed) samples both methods have, clustered by problem (Durkalski et al. "
              "2003): statistic (B - C)² / Σ_problems (b - c)², chi-square with 1 degree of freedom, where "
              "b (B in all) counts samples only ecmh got right and c (C) samples only the other method got right. "
              "ecmh - other: the difference of their accuracies on those pairs, (B - C) / pairs, with its 95% "
              "interval clustered by problem as for accuracy. Had cut-off answers gone against ecmh: that difference "
              "if every answer that used all of `max_new_tokens` had gone against ecmh (its right ones wrong, the "
              "other's wrong ones right), so how far the token limit could move it; – where no answer was cut off.",
              ""]
    if summary.comparisons:
        lines += mcnemar_table(summary.comparisons)
    else:
        lines.append("Needs two methods: no model x task here has ecmh and another method.")
    lines += ["", "## Plots", "", f"![accuracy against decoded tokens]({ACCURACY_PLOT})", ""]
    if has_acceptance(summary):
        lines += [f"![MH acceptance rate by block]({ACCEPTANCE_PLOT})", ""]
    else:
        lines += ["No MH method here, so no acceptance plot.", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------- entry point


def summary_json(summary: Summary) -> str:
    return json.dumps(dataclasses.asdict(summary), indent=2)


def main_report(directory: str | Path, out: str | Path | None = None) -> Path:
    """Summarise the results below `directory`, write the report into `out` (default: `directory`).

    Returns the path of `summary.md`; `summary.json` and the two PNG plots are written beside it.
    """
    rows = load_rows(directory)
    summary = summarise(rows)
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
