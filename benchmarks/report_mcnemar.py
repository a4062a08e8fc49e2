"""The report's test of the subject method (`registry.SUBJECT`) against every other: a clustered McNemar test, exact
and asymptotic, Holm-adjusted over the pre-registered family (`FAMILY_FILE`), with the paired difference of
accuracies (`compare_with_subject`, `with_holm`, `section`); and how often two methods agree (`agreement`)."""

import dataclasses
import json
from collections import defaultdict
from pathlib import Path

from .registry import SUBJECT, method_rank
from .report_cells import bounds, number, signed_points
from .report_rows import at_token_limit, by_sample
from .stats import clustered_mcnemar, holm, mean_or_none, paired_difference, sign_flip_p_value

FAMILY_FILE = "holm_family.json"  # in a results folder: the pre-registered methods Holm adjusts over (JSON list)


@dataclasses.dataclass
class McNemarComparison:
    """The subject method (`registry.SUBJECT`) against `method` on the (problem, seed) samples both have, clustered
    by problem."""

    model: str
    task: str
    subject: str
    method: str
    pairs: int
    problems: int  # with pairs
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
        pairs=len(paired), problems=len(pairs_per_problem), subject_only=sum(b for b, _ in discordant.values()),
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


def p_values(c: McNemarComparison) -> str:
    """The exact p, with the asymptotic one beside it where they differ at the digits shown."""
    exact, asymptotic = f"{c.exact_p:.2g}", f"{c.p_value:.2g}"
    return exact if exact == asymptotic else f"{exact} ({asymptotic})"


def mcnemar_table(comparisons: list[McNemarComparison]) -> list[str]:
    subject = comparisons[0].subject
    lines = [f"| model | task | {subject} vs | pairs | {subject} only | other only | statistic | p exact (asymptotic) "
             f"| p Holm | {subject} - other, points [95% CI] | had cut-off answers gone against {subject} "
             f"| {subject} tokens / other |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for c in comparisons:
        difference = f" {bounds(signed_points(c.difference_low), signed_points(c.difference_high), c.problems)}"
        holm_cell = "– (outside)" if c.holm_p is None else f"{c.holm_p:.2g}"
        lines.append(f"| {c.model} | {c.task} | {c.method} | {c.pairs} | {c.subject_only} | {c.other_only} "
                     f"| {c.statistic:.2f} | {p_values(c)} | {holm_cell} | {signed_points(c.difference)}{difference} "
                     f"| {signed_points(c.difference_if_cut_offs_went_against_subject)} | {number(c.token_ratio, 2)} |")
    return lines


def section(comparisons: list[McNemarComparison]) -> list[str]:
    """The report's McNemar section: what its columns mean, then the table (or why there is none)."""
    lines = ["", f"## {SUBJECT} against each method: clustered McNemar", "",
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
    if comparisons:
        return lines + mcnemar_table(comparisons)
    return lines + [f"Needs two methods: no model x task here has {SUBJECT} and another method."]
