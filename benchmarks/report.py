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
in path order.
"""

import dataclasses
import json
import math
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .results_file import SAMPLE_KEY, read_rows, row_key  # noqa: E402

REFERENCE_METHOD = "ecmh"
METHOD_ORDER = ["standard", "low_temp", "bon_std", "bon_low_temp", "uniform_mh", "restart_mh", "ecmh"]
REQUIRED_KEYS = (*SAMPLE_KEY, "correct")
CONFIDENCE = 0.95
Z = statistics.NormalDist().inv_cdf(0.5 + CONFIDENCE / 2)
CLUSTERED_CI = "cluster-robust"
WILSON_CI = "Wilson"
ACCURACY_PLOT = "accuracy_vs_tokens.png"
ACCEPTANCE_PLOT = "acceptance_by_block.png"


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


# ---------------------------------------------------------------- statistics


def pass_at_k(samples: int, correct: int, k: int) -> float:
    """Unbiased pass@k of one problem (Chen et al. 2021): 1 - C(n - c, k) / C(n, k)."""
    if not 0 < k <= samples:
        raise ValueError(f"pass@{k} needs 1 <= k <= n = {samples}")
    return 1.0 - math.comb(samples - correct, k) / math.comb(samples, k)


def pass_at_k_levels(samples_per_problem: list[int]) -> list[int]:
    """k = 1, 2, 4, ... up to the number of samples every problem has."""
    fewest = min(samples_per_problem)
    return [2**i for i in range(fewest.bit_length())]


def wilson_interval(correct: int, samples: int) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion."""
    share, z2 = correct / samples, Z * Z
    centre = (share + z2 / (2 * samples)) / (1 + z2 / samples)
    half = Z / (1 + z2 / samples) * math.sqrt(share * (1 - share) / samples + z2 / (4 * samples**2))
    return max(0.0, centre - half), min(1.0, centre + half)


def student_t_two_sided_probability(t: float, dof: int) -> float:
    """P(|T| < t) for Student's t with an integer number of degrees of freedom (A&S 26.7.3-4)."""
    theta = math.atan(t / math.sqrt(dof))
    sine, cosine2 = math.sin(theta), math.cos(theta) ** 2
    if dof % 2 == 0:
        term = total = 1.0
        for j in range(1, dof // 2):
            term *= (2 * j - 1) / (2 * j) * cosine2
            total += term
        return sine * total
    if dof == 1:
        return 2 * theta / math.pi
    term = total = math.cos(theta)
    for j in range(1, (dof - 1) // 2):
        term *= (2 * j) / (2 * j + 1) * cosine2
        total += term
    return 2 / math.pi * (theta + sine * total)


def student_t_quantile(confidence: float, dof: int) -> float:
    """The t with P(|T| < t) = confidence, by bisection."""
    low, high = 0.0, 1.0
    while student_t_two_sided_probability(high, dof) < confidence:
        low, high = high, 2 * high
    for _ in range(100):
        middle = (low + high) / 2
        if student_t_two_sided_probability(middle, dof) < confidence:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def clustered_interval(counts: list[tuple[int, int]]) -> tuple[float, float]:
    """95% interval for sum(correct) / sum(samples) over problems given as (samples, correct).

    Cluster-robust (CR1) standard error of the ratio over the G problems,
    sqrt(G / (G - 1) * sum_i (c_i - p * n_i)^2) / N, with a t quantile on G - 1 degrees of
    freedom; with equal samples per problem this is the standard error of the per-problem means.
    """
    total_samples = sum(n for n, _ in counts)
    share = sum(c for _, c in counts) / total_samples
    problems = len(counts)
    spread = sum((c - share * n) ** 2 for n, c in counts)
    error = math.sqrt(problems / (problems - 1) * spread) / total_samples
    half = student_t_quantile(CONFIDENCE, problems - 1) * error
    return max(0.0, share - half), min(1.0, share + half)


def accuracy_interval(counts: list[tuple[int, int]]) -> tuple[float, float, str]:
    """95% interval for accuracy and its method: clustered by problem, or Wilson when that is not possible.

    Wilson (samples treated as independent) when every problem has one sample, or there is one problem.
    """
    if len(counts) > 1 and any(n > 1 for n, _ in counts):
        return (*clustered_interval(counts), CLUSTERED_CI)
    return (*wilson_interval(sum(c for _, c in counts), sum(n for n, _ in counts)), WILSON_CI)


def clustered_mcnemar(discordant: list[tuple[int, int]]) -> tuple[float, float]:
    """Clustered McNemar test (Durkalski et al. 2003) from per-cluster discordant counts.

    `discordant` holds, per cluster k, (b_k, c_k): pairs where only the first, only the second
    method is correct. Statistic (B - C)^2 / sum_k (b_k - c_k)^2 with B = sum b_k, C = sum c_k,
    chi-square with 1 degree of freedom; it is the ordinary McNemar (B - C)^2 / (B + C) when every
    cluster holds one pair. Returns (statistic, p-value); no difference at all gives (0, 1).
    """
    difference = sum(b - c for b, c in discordant)
    variance = sum((b - c) ** 2 for b, c in discordant)
    if difference == 0:
        return 0.0, 1.0
    statistic = difference**2 / variance
    return statistic, math.erfc(math.sqrt(statistic / 2))


def mean_or_none(values) -> float | None:
    """Mean of the values that are not None, or None when there are none."""
    present = [v for v in values if v is not None]
    return statistics.fmean(present) if present else None


def sd_or_none(values) -> float | None:
    """Sample standard deviation of the values that are not None (None for fewer than two)."""
    present = [v for v in values if v is not None]
    return statistics.stdev(present) if len(present) > 1 else None


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


def method_rank(method: str) -> tuple[int, str]:
    """Sort key: the known methods in METHOD_ORDER, then any other alphabetically."""
    return (METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER), method)


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
    paired = reference_correct.keys() & other_correct.keys()
    discordant = defaultdict(lambda: [0, 0])
    for problem, seed in paired:
        ours, theirs = reference_correct[problem, seed], other_correct[problem, seed]
        if ours != theirs:
            discordant[problem][0 if ours else 1] += 1
    statistic, p_value = clustered_mcnemar([tuple(counts) for counts in discordant.values()])
    tokens = [mean_or_none(by_key[key].get("tokens_decoded") for key in paired)
              for by_key in ({(r["problem_id"], r["seed"]): r for r in rows} for rows in (reference, other))]
    return McNemarComparison(
        model=other[0]["model"], task=other[0]["task"], method=other[0]["method"], pairs=len(paired),
        ecmh_only=sum(b for b, _ in discordant.values()), other_only=sum(c for _, c in discordant.values()),
        statistic=statistic, p_value=p_value,
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


def number(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def panels(summary: Summary) -> list[tuple[str, str]]:
    """The (model, task) pairs in report order."""
    return list(dict.fromkeys((s.model, s.task) for s in summary.methods))


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


def settings_lines(methods: list[MethodSummary]) -> list[str]:
    """One line for all methods when they share their settings, else one line per method."""
    described = [("; ".join(f"`{json.dumps(c, sort_keys=True)}`" for c in s.configs), s.method) for s in methods]
    if len({text for text, _ in described}) == 1:
        return [f"- all methods: {described[0][0]}"]
    return [f"- `{method}`: {text}" for text, method in described]


def mcnemar_table(comparisons: list[McNemarComparison]) -> list[str]:
    lines = ["| model | task | ecmh vs | pairs | ecmh only | other only | statistic | p | ecmh tokens / other |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for c in comparisons:
        lines.append(f"| {c.model} | {c.task} | {c.method} | {c.pairs} | {c.ecmh_only} | {c.other_only} "
                     f"| {c.statistic:.2f} | {c.p_value:.3g} | {number(c.token_ratio, 2)} |")
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
        lines += ["", f"## {model} / {task}", "", *method_table(methods),
                  *breakdown_table(methods, "by_extraction", "Accuracy by how the answer was extracted"),
                  *breakdown_table(methods, "by_selector", "Best-of-N accuracy by the selector that picks the draw"), "",
                  "Settings:", "", *settings_lines(methods)]
    lines += ["", "## ecmh against each method: clustered McNemar", "",
              "Paired on (problem, seed) samples both methods have, clustered by problem (Durkalski et al. "
              "2003): statistic (B - C)² / Σ_problems (b - c)², chi-square with 1 degree of freedom, where "
              "b (B in all) counts samples only ecmh got right and c (C) samples only the other method got right.",
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


# ---------------------------------------------------------------- plots


def method_colours(summary: Summary) -> dict[str, str]:
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


def plot_accuracy_vs_tokens(summary: Summary, path: Path) -> None:
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


def has_acceptance(summary: Summary) -> bool:
    return any(s.acceptance_by_block for s in summary.methods)


def plot_acceptance_by_block(summary: Summary, path: Path) -> None:
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
