"""The report's target check ("Sampler or target?"): each method's law of `log p(answer)` and of the answer's length,
and its paired difference from the subject's (`TargetCheck`, `target_check`, `section`)."""

import dataclasses
from collections import defaultdict

from .registry import METHODS, SUBJECT
from .report_cells import interval
from .report_rows import by_sample
from .stats import mean_interval


@dataclasses.dataclass
class TargetCheck:
    """One method's law of `log p(answer)` and of the answer's length, and its paired difference from the subject's
    (same problems, same seeds). Samplers of the same target agree on both, whatever their cost."""

    model: str
    task: str
    method: str
    samples: int  # with a recorded log p
    problems: int  # ... of that many problems
    log_p: tuple[float, float | None, float | None]  # mean, and its 95% interval clustered by problem
    length: tuple[float, float | None, float | None]  # answer tokens: mean, interval
    pairs: int  # (problem, seed) samples the subject has too
    paired_problems: int  # ... of that many problems
    log_p_difference: tuple[float, float | None, float | None] | None  # this method's less the subject's, interval
    length_difference: tuple[float, float | None, float | None] | None


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
        problems=len({problem for problem, _ in scored}), paired_problems=len({problem for problem, _ in shared}),
        log_p=mean_interval(by_problem(log_p)), length=mean_interval(by_problem(length)), pairs=len(shared),
        log_p_difference=mean_interval(by_problem(log_p_difference)) if log_p_difference else None,
        length_difference=mean_interval(by_problem(length_difference)) if length_difference else None)


def target_table(targets: list[TargetCheck]) -> list[str]:
    lines = [f"| model | task | method | samples | mean log p [95% CI] | mean length, tokens [95% CI] "
             f"| pairs with {SUBJECT} | log p - {SUBJECT}'s [95% CI] | length - {SUBJECT}'s [95% CI] |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for t in targets:
        lines.append(f"| {t.model} | {t.task} | {t.method} | {t.samples} | {interval(t.log_p, 2, problems=t.problems)} "
                     f"| {interval(t.length, 1, problems=t.problems)} | {t.pairs} "
                     f"| {interval(t.log_p_difference, 2, signed=True, problems=t.paired_problems)} "
                     f"| {interval(t.length_difference, 1, signed=True, problems=t.paired_problems)} |")
    return lines


def section(targets: list[TargetCheck]) -> list[str]:
    """The report's target-check section: what it shows, then the table (or why there is none)."""
    lines = ["", "## Sampler or target? The law of log p", "",
             "Samplers that all sample `p^α` exactly draw answers from one law, so they agree on the law of "
             "`log p(answer)` under the base model and of the answer's length, whatever they cost. Per method: the "
             "mean of each with its 95% interval clustered by problem, and its paired difference from "
             f"{SUBJECT}'s on the same problems and seeds. An interval of the difference that excludes 0 says the "
             f"method samples another law than {SUBJECT}: by design (of the registered methods "
             f"{', '.join(f'`{m.name}`' for m in METHODS.values() if not m.targets_power)} do not target `p^α`), by "
             "bias, or by not having mixed; which of the two `p^α` samplers is off it does not "
             "say (the tests check ECMH's exactness on models small enough to enumerate).", ""]
    return lines + (target_table(targets) if targets else ["No sample records its log p."])
