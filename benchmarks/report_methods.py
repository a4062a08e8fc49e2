"""The report's table of methods, per model x task: accuracy with its interval, pass@k, tokens, seconds and MH
acceptance (`MethodSummary`, `method_table`), the cost per answer as ratios to the cost reference's (`cost_table`),
accuracy by extraction and by best-of-N selector (`breakdown_table`) and the settings the rows record."""

import dataclasses
import json
import statistics
from collections import defaultdict

from .registry import COST_REFERENCE
from .report_cells import bounds, number, percent
from .report_rows import at_token_limit, by_sample, warn
from .stats import (CLUSTERED_CI, MIN_PROBLEMS, accuracy_interval, mean_or_none, pass_at_k, pass_at_k_levels, sd_or_none,
                    spread)

COST_FIELDS = ("tokens_decoded", "tokens_forwarded", "sequential_passes", "seconds")  # per answer, in the rows


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
    forwarded_per_problem: float | None  # positions run through the model per answer, prompts included
    rows_with: dict[str, int]  # per cost field (COST_FIELDS), how many of the samples record it
    # decoded tokens / the cost reference's on the same (problem, seed), over the samples both have:
    # (10th percentile, median, 90th percentile, samples); None without the reference or fewer than two pairs
    token_ratio_spread: tuple[float, float, float, int] | None
    acceptance_rate: float | None
    acceptance_by_block: list[float | None]
    configs: list[dict]
    by_extraction: dict[str, tuple[int, float]]  # math answers: kind -> (samples, accuracy)
    by_selector: dict[str, tuple[int, float]]  # best-of-N: selector -> (samples, accuracy of its pick)


def mean_acceptance_by_block(rows: list[dict]) -> list[float | None]:
    """Per block index, the mean over samples of acceptance_by_block[i], nulls ignored."""
    blocks = [row.get("acceptance_by_block") or [] for row in rows]
    length = max(map(len, blocks), default=0)
    return [mean_or_none(block[i] if i < len(block) else None for block in blocks) for i in range(length)]


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
        forwarded_per_problem=mean_or_none(row.get("tokens_forwarded") for row in rows),
        rows_with={name: sum(row.get(name) is not None for row in rows) for name in COST_FIELDS},
        token_ratio_spread=None,
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


def token_ratio_spread(rows: list[dict], reference: list[dict]) -> tuple[float, float, float, int] | None:
    """Per (problem, seed) both have, decoded tokens / the reference's: (10th percentile, median, 90th, samples)."""
    theirs = by_sample(reference)
    ratios = [row["tokens_decoded"] / theirs[key]["tokens_decoded"] for key, row in sorted(by_sample(rows).items())
              if key in theirs and row.get("tokens_decoded") is not None and theirs[key].get("tokens_decoded")]
    quantiles = spread(ratios)
    return None if quantiles is None else (*quantiles, len(ratios))


def method_table(methods: list[MethodSummary]) -> list[str]:
    levels = sorted({k for s in methods for k in s.pass_at_k})
    header = ["method", "problems", "seeds", "accuracy % [95% CI]", *(f"pass@{k} %" for k in levels),
              "tokens/problem (sd)", "at limit %", "s/problem", "acceptance %"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for s in methods:
        marker = "" if s.ci_method == CLUSTERED_CI or s.problems < MIN_PROBLEMS else " †"
        cells = [s.method, str(s.problems), str(s.seeds),
                 f"{percent(s.accuracy)} {bounds(percent(s.ci_low), percent(s.ci_high), s.problems)}{marker}",
                 *(percent(s.pass_at_k.get(k)) for k in levels),
                 f"{number(s.tokens_per_problem, 0)} ({number(s.tokens_sd, 0)})", percent(s.at_token_limit), number(s.seconds_per_problem, 2),
                 percent(s.acceptance_rate)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def cost_table(methods: list[MethodSummary]) -> list[str]:
    """Each method's mean cost per answer as ratios to the cost reference's, each figure with the rows it rests on
    where some rows do not record it, and the spread over samples of its decoded tokens / the reference's."""
    reference = next((s for s in methods if s.method == COST_REFERENCE), None)
    if reference is None:
        return []
    means = {"tokens_decoded": "tokens_per_problem", "tokens_forwarded": "forwarded_per_problem",
             "sequential_passes": "passes_per_problem", "seconds": "seconds_per_problem"}

    def ratio(s: MethodSummary, field: str) -> str:
        value, base = getattr(s, means[field]), getattr(reference, means[field])
        text = number(value / base if value is not None and base else None, 2)
        rows = s.rows_with[field]
        return text if text == "–" or rows == s.samples else f"{text} ({rows} of {s.samples} rows)"

    def spread_cell(s: MethodSummary) -> str:
        if s.token_ratio_spread is None:
            return "–"
        low, median, high, pairs = s.token_ratio_spread
        return f"{median:.2f} [{low:.2f}, {high:.2f}]" + ("" if pairs == s.samples else f" ({pairs} of {s.samples} rows)")

    lines = ["", f"Cost per answer as a ratio to `{COST_REFERENCE}`'s mean (latency on a GPU follows the sequential "
             "passes; a figure that rests on fewer than all rows says on how many), and the spread of the ratio "
             f"over the samples both have: decoded tokens / `{COST_REFERENCE}`'s on the same problem and seed, "
             "median [10th, 90th percentile]:", "",
             "| method | decoded tokens | positions forwarded | sequential passes | seconds | decoded tokens per sample: "
             "median [10th, 90th] |", "| --- | --- | --- | --- | --- | --- |"]
    for s in methods:
        lines.append(f"| {s.method} | " + " | ".join(ratio(s, field) for field in COST_FIELDS) + f" | {spread_cell(s)} |")
    return lines


def settings_lines(methods: list[MethodSummary]) -> list[str]:
    """One line for all methods when they share their settings, else one line per method."""
    described = [("; ".join(f"`{json.dumps(c, sort_keys=True)}`" for c in s.configs), s.method) for s in methods]
    if len({text for text, _ in described}) == 1:
        return [f"- all methods: {described[0][0]}"]
    return [f"- `{method}`: {text}" for text, method in described]


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


def section(methods: list[MethodSummary], model: str, task: str) -> list[str]:
    """The report's section of one model x task: its methods' table, their costs, the breakdowns, the settings."""
    return ["", f"## {model} / {task}", "", *method_table(methods), *cost_table(methods),
            *breakdown_table(methods, "by_extraction", "Accuracy by how the answer was extracted"),
            *breakdown_table(methods, "by_selector", "Best-of-N accuracy by the selector that picks the draw"), "",
            "Settings:", "", *settings_lines(methods)]
