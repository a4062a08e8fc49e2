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
from .registry import COST_REFERENCE, METHODS, SUBJECT, method_rank
from .results_file import SAMPLE_KEY, read_rows, row_key
from .stats import (CLUSTERED_CI, accuracy_interval, clustered_mcnemar, holm, mean_interval, mean_or_none,
                    paired_difference, pass_at_k, pass_at_k_levels, sd_or_none, sign_flip_p_value, spread)

FAMILY_FILE = "holm_family.json"  # in a results folder: the pre-registered methods Holm adjusts over (JSON list)
COST_FIELDS = ("tokens_decoded", "tokens_forwarded", "sequential_passes", "seconds")  # per answer, in the rows
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


@dataclasses.dataclass
class McNemarComparison:
    """The subject method (`registry.SUBJECT`) against `method` on the (problem, seed) samples both have, clustered
    by problem."""

    model: str
    task: str
    subject: str
    method: str
    pairs: int
    subject_only: int  # pairs only the subject got right
    other_only: int
    statistic: float
    p_value: float  # asymptotic: the clustered McNemar statistic against chi-square(1)
    exact_p: float  # the sign-flip permutation test by problem (the binomial McNemar test with one seed)
    # exact_p adjusted by Holm over the family (the methods of `FAMILY_FILE`, or every other method of the panel);
    # None for a method outside the family (added after the pre-registration: reported beside it, not adjusted)
    holm_p: float | None
    difference: float  # the subject's accuracy less the other method's, over the pairs
    difference_low: float | None  # its 95% interval, clustered by problem (None for one problem)
    difference_high: float | None
    # the difference had every answer the token limit cut off gone against the subject (the subject's wrong, the
    # other's right): how far the limit could move it; None when no answer in the pairs was cut off
    difference_if_cut_offs_went_against_subject: float | None
    token_ratio: float | None  # the subject's mean decoded tokens / the other method's, over the pairs


@dataclasses.dataclass
class TargetCheck:
    """One method's law of `log p(answer)` and of the answer's length, and its paired difference from the subject's
    (same problems, same seeds). Samplers of the same target agree on both, whatever their cost."""

    model: str
    task: str
    method: str
    samples: int  # with a recorded log p
    log_p: tuple[float, float | None, float | None]  # mean, and its 95% interval clustered by problem
    length: tuple[float, float | None, float | None]  # answer tokens: mean, interval
    pairs: int  # (problem, seed) samples the subject has too
    log_p_difference: tuple[float, float | None, float | None] | None  # this method's less the subject's, interval
    length_difference: tuple[float, float | None, float | None] | None


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


def by_sample(rows: list[dict]) -> dict[tuple, dict]:
    """The rows by (problem, seed)."""
    return {(row["problem_id"], row["seed"]): row for row in rows}


def compare_with_subject(subject: list[dict], other: list[dict]) -> McNemarComparison:
    """Clustered McNemar, asymptotic and exact, of the subject method's samples against another method's (its Holm
    p is the family's: `summarise` sets it)."""
    subject_correct = {key: bool(row["correct"]) for key, row in by_sample(subject).items()}
    other_correct = {key: bool(row["correct"]) for key, row in by_sample(other).items()}
    paired = sorted(subject_correct.keys() & other_correct.keys())  # sums in one order: the same digits every run
    discordant = defaultdict(lambda: [0, 0])
    pairs_per_problem = defaultdict(int)
    for problem, seed in paired:
        pairs_per_problem[problem] += 1
        ours, theirs = subject_correct[problem, seed], other_correct[problem, seed]
        if ours != theirs:
            discordant[problem][0 if ours else 1] += 1
    statistic, p_value = clustered_mcnemar([tuple(counts) for counts in discordant.values()])
    difference = paired_difference([(pairs, discordant[problem][0] - discordant[problem][1])
                                    for problem, pairs in pairs_per_problem.items()])
    by_keys = [by_sample(subject), by_sample(other)]
    tokens = [mean_or_none(by_key[key].get("tokens_decoded") for key in paired) for by_key in by_keys]
    cut_off = {key: [at_token_limit(by_key[key]) == 1.0 for by_key in by_keys] for key in paired}
    would_flip = sum((subject_correct[key] and cut_off[key][0]) + (not other_correct[key] and cut_off[key][1])
                     for key in paired)
    exact_p = sign_flip_p_value([b - c for b, c in discordant.values()])
    return McNemarComparison(
        model=other[0]["model"], task=other[0]["task"], subject=subject[0]["method"], method=other[0]["method"],
        pairs=len(paired), subject_only=sum(b for b, _ in discordant.values()),
        other_only=sum(c for _, c in discordant.values()), statistic=statistic, p_value=p_value, exact_p=exact_p,
        holm_p=exact_p, difference=difference[0], difference_low=difference[1], difference_high=difference[2],
        difference_if_cut_offs_went_against_subject=difference[0] - would_flip / len(paired)
        if any(any(flags) for flags in cut_off.values()) else None,
        token_ratio=tokens[0] / tokens[1] if None not in tokens and tokens[1] else None,
    )


def read_family(directory: str | Path) -> set[str] | None:
    """The pre-registered family of a results folder: the methods its `FAMILY_FILE` names (None without one: every
    method compared with the subject). Raises ValueError for a file that is not a JSON list of method names."""
    path = Path(directory) / FAMILY_FILE
    if not path.is_file():
        return None
    try:
        family = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not JSON ({error}); write the family as a list of method names, "
                         f'e.g. ["standard", "low_temp"]') from None
    if not (isinstance(family, list) and family and all(isinstance(name, str) for name in family)):
        raise ValueError(f'{path}: expected a non-empty JSON list of method names, e.g. ["standard", "low_temp"]')
    return set(family)


def with_holm(comparisons: list[McNemarComparison], family: set[str] | None = None) -> list[McNemarComparison]:
    """The comparisons with Holm's adjustment of their exact p over each model x task's family (`family`: the
    pre-registered methods; default every compared method); a comparison outside it gets `holm_p = None`."""
    panels = defaultdict(list)
    for c in comparisons:
        if family is None or c.method in family:
            panels[c.model, c.task].append(c)
        else:
            c.holm_p = None
    for members in panels.values():
        for c, adjusted in zip(members, holm([c.exact_p for c in members])):
            c.holm_p = adjusted
    return comparisons


def token_ratio_spread(rows: list[dict], reference: list[dict]) -> tuple[float, float, float, int] | None:
    """Per (problem, seed) both have, decoded tokens / the reference's: (10th percentile, median, 90th, samples)."""
    theirs = by_sample(reference)
    ratios = [row["tokens_decoded"] / theirs[key]["tokens_decoded"] for key, row in sorted(by_sample(rows).items())
              if key in theirs and row.get("tokens_decoded") is not None and theirs[key].get("tokens_decoded")]
    quantiles = spread(ratios)
    return None if quantiles is None else (*quantiles, len(ratios))


def target_check(rows: list[dict], subject: list[dict] | None) -> TargetCheck:
    """The law of `log p` and of the length of one method's answers, against the subject's on shared samples."""
    scored = {key: row for key, row in by_sample(rows).items() if row.get("log_p") is not None}

    def by_problem(values: dict) -> list[list[float]]:
        grouped = defaultdict(list)
        for (problem, _), value in sorted(values.items()):
            grouped[problem].append(value)
        return list(grouped.values())

    log_p = {key: row["log_p"] for key, row in scored.items()}
    length = {key: row["completion_tokens"] for key, row in scored.items() if row.get("completion_tokens") is not None}
    theirs = {key: row for key, row in by_sample(subject or []).items() if row.get("log_p") is not None}
    shared = sorted(scored.keys() & theirs.keys())
    log_p_difference = {key: log_p[key] - theirs[key]["log_p"] for key in shared}
    length_difference = {key: length[key] - theirs[key]["completion_tokens"] for key in shared
                         if key in length and theirs[key].get("completion_tokens") is not None}
    first = rows[0]
    return TargetCheck(
        model=first["model"], task=first["task"], method=first["method"], samples=len(scored),
        log_p=mean_interval(by_problem(log_p)), length=mean_interval(by_problem(length)), pairs=len(shared),
        log_p_difference=mean_interval(by_problem(log_p_difference)) if log_p_difference else None,
        length_difference=mean_interval(by_problem(length_difference)) if length_difference else None)


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


def p_values(c: McNemarComparison) -> str:
    """The exact p, with the asymptotic one beside it where they differ at the digits shown."""
    exact, asymptotic = f"{c.exact_p:.2g}", f"{c.p_value:.2g}"
    return exact if exact == asymptotic else f"{exact} ({asymptotic})"


def interval(values: tuple | None, digits: int, signed: bool = False) -> str:
    """`mean [low, high]` of a (mean, low, high) triple."""
    if values is None:
        return "–"
    mean, low, high = values
    form = f"{{:{'+' if signed else ''},.{digits}f}}"
    return form.format(mean) + ("" if low is None else f" [{form.format(low)}, {form.format(high)}]")


def mcnemar_table(comparisons: list[McNemarComparison]) -> list[str]:
    subject = comparisons[0].subject
    lines = [f"| model | task | {subject} vs | pairs | {subject} only | other only | statistic | p exact (asymptotic) "
             f"| p Holm | {subject} - other, points [95% CI] | had cut-off answers gone against {subject} "
             f"| {subject} tokens / other |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for c in comparisons:
        difference = "" if c.difference_low is None else \
            f" [{signed_points(c.difference_low)}, {signed_points(c.difference_high)}]"
        holm_cell = "– (outside)" if c.holm_p is None else f"{c.holm_p:.2g}"
        lines.append(f"| {c.model} | {c.task} | {c.method} | {c.pairs} | {c.subject_only} | {c.other_only} "
                     f"| {c.statistic:.2f} | {p_values(c)} | {holm_cell} | {signed_points(c.difference)}{difference} "
                     f"| {signed_points(c.difference_if_cut_offs_went_against_subject)} | {number(c.token_ratio, 2)} |")
    return lines


def target_table(targets: list[TargetCheck]) -> list[str]:
    lines = [f"| model | task | method | samples | mean log p [95% CI] | mean length, tokens [95% CI] "
             f"| pairs with {SUBJECT} | log p - {SUBJECT}'s [95% CI] | length - {SUBJECT}'s [95% CI] |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for t in targets:
        lines.append(f"| {t.model} | {t.task} | {t.method} | {t.samples} | {interval(t.log_p, 2)} "
                     f"| {interval(t.length, 1)} | {t.pairs} | {interval(t.log_p_difference, 2, signed=True)} "
                     f"| {interval(t.length_difference, 1, signed=True)} |")
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
    lines += ["", f"## {SUBJECT} against each method: clustered McNemar", "",
              f"Paired on (problem, seed) samples both methods have, clustered by problem (Durkalski et al. "
              "2003): statistic (B - C)² / Σ_problems (b - c)², chi-square with 1 degree of freedom (the asymptotic "
              f"p, in brackets where it differs), where b (B in all) counts samples only {SUBJECT} got right and c "
              "(C) samples only the other method got right. p exact: the sign-flip permutation test by problem "
              "(each problem's b - c equally likely positive or negative under no difference, all 2^problems "
              "signs counted), which is the exact binomial McNemar test where each problem has one sample; small "
              f"samples make the asymptotic p too small. p Holm: the exact p adjusted by Holm's method over the "
              f"pre-registered family, {SUBJECT} against each method the results folder's {FAMILY_FILE} names (without "
              "one, every other method of the panel); outside: a method added after the pre-registration, reported "
              f"beside the family and not adjusted. {SUBJECT} - other: the "
              "difference of their accuracies on those pairs, (B - C) / pairs, with its 95% interval clustered by "
              f"problem as for accuracy. Had cut-off answers gone against {SUBJECT}: that difference if every answer "
              f"that used all of `max_new_tokens` had gone against {SUBJECT} (its right ones wrong, the other's "
              "wrong ones right), so how far the token limit could move it; – where no answer was cut off.", ""]
    if summary.comparisons:
        lines += mcnemar_table(summary.comparisons)
    else:
        lines.append(f"Needs two methods: no model x task here has {SUBJECT} and another method.")
    lines += ["", "## Sampler or target? The law of log p", "",
              "Samplers that all sample `p^α` exactly draw answers from one law, so they agree on the law of "
              "`log p(answer)` under the base model and of the answer's length, whatever they cost. Per method: the "
              "mean of each with its 95% interval clustered by problem, and its paired difference from "
              f"{SUBJECT}'s on the same problems and seeds. An interval of the difference that excludes 0 says the "
              f"method samples another law than {SUBJECT}: by design (of the registered methods "
              f"{', '.join(f'`{m.name}`' for m in METHODS.values() if not m.targets_power)} do not target `p^α`), by "
              "bias, or by not having mixed; which of the two `p^α` samplers is off it does not "
              "say (the tests check ECMH's exactness on models small enough to enumerate).", ""]
    lines += target_table(summary.targets) if summary.targets else ["No sample records its log p."]
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
