"""The statistics of the benchmark report, in the standard library alone: pass@k, accuracy intervals (Wilson,
cluster-robust by problem), the clustered McNemar test and its exact counterpart (a sign-flip permutation test by
problem, the binomial McNemar test with one pair per problem), Holm's multiplicity adjustment, intervals of means
and paired differences clustered by problem, and percentile spreads."""

import math
import statistics

CONFIDENCE = 0.95
Z = statistics.NormalDist().inv_cdf(0.5 + CONFIDENCE / 2)
CLUSTERED_CI = "cluster-robust"
WILSON_CI = "Wilson"
# The report prints an interval only from at least this many problems ("too few" instead). Its intervals are
# clustered by problem (CR1 standard errors, a t quantile on problems - 1 degrees of freedom), which cover well below
# 95% with fewer clusters (Cameron & Miller 2015, "A practitioner's guide to cluster-robust inference", VI); a Wilson
# interval over fewer than 10 problems spans about half of [0, 100] near 50% accuracy, so it cannot tell methods
# apart either. The numbers behind them are still in summary.json.
MIN_PROBLEMS = 10
POWER = 0.8  # the power at which the report's first lines size a difference between two methods


def problems_to_detect(difference: float) -> int:
    """Problems for a two-sided 95% test to find `difference` between two accuracies near 50% with power `POWER`
    (two independent proportions, n = 2 (z_0.975 + z_0.8)^2 p (1 - p) / d^2 per method; a paired test on methods that
    agree on most problems needs fewer)."""
    z = Z + statistics.NormalDist().inv_cdf(POWER)
    return math.ceil(2 * z * z * 0.25 / difference**2)


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


def clustered_mean(counts: list[tuple[int, int]]) -> tuple[float, float]:
    """sum(x) / sum(samples) over problems given as (samples, sum of x), and the half-width of its 95% interval.

    Cluster-robust (CR1) standard error of the ratio over the G >= 2 problems,
    sqrt(G / (G - 1) * sum_i (x_i - m * n_i)^2) / N, with a t quantile on G - 1 degrees of
    freedom; with equal samples per problem this is the standard error of the per-problem means.
    """
    total_samples = sum(n for n, _ in counts)
    mean = sum(x for _, x in counts) / total_samples
    problems = len(counts)
    spread = sum((x - mean * n) ** 2 for n, x in counts)
    error = math.sqrt(problems / (problems - 1) * spread) / total_samples
    return mean, student_t_quantile(CONFIDENCE, problems - 1) * error


def clustered_interval(counts: list[tuple[int, int]]) -> tuple[float, float]:
    """95% interval for sum(correct) / sum(samples) over problems given as (samples, correct), clustered by
    problem (`clustered_mean`), clipped to [0, 1]."""
    share, half = clustered_mean(counts)
    return max(0.0, share - half), min(1.0, share + half)


def paired_difference(differences: list[tuple[int, int]]) -> tuple[float, float | None, float | None]:
    """Accuracy of one method less another's on paired samples, with its 95% interval clustered by problem.

    `differences` holds, for every problem with pairs (concordant ones too), (pairs, b - c): b pairs
    only the first method got right, c only the second. Returns (difference, low, high), the interval
    clipped to [-1, 1]; (difference, None, None) with fewer than two problems.
    """
    if len(differences) < 2:
        return sum(d for _, d in differences) / sum(n for n, _ in differences), None, None
    difference, half = clustered_mean(differences)
    return difference, max(-1.0, difference - half), min(1.0, difference + half)


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


def sign_flip_p_value(differences: list[int]) -> float:
    """Exact two-sided p of the paired permutation test by problem: under no difference between two methods, each
    problem's b - c (samples only the first got right less samples only the second did) is as likely to have
    either sign, independently across problems. p = P(|sum of s_k (b_k - c_k)| >= |sum of (b_k - c_k)|) over the
    2^G sign choices, counted exactly by convolution over the integer sums. With one pair per problem it is the
    exact (binomial) McNemar test: p = P(|2X - n| >= |B - C|), X ~ Binomial(n = B + C, 1/2)."""
    observed = abs(sum(differences))
    ways = {0: 1}  # sum -> number of sign choices giving it
    for d in (abs(d) for d in differences if d):
        grown = {}
        for total, count in ways.items():
            for step in (d, -d):
                grown[total + step] = grown.get(total + step, 0) + count
        ways = grown
    extreme = sum(count for total, count in ways.items() if abs(total) >= observed)
    return extreme / sum(ways.values())


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjustment of a family of p-values (in the given order): the k-th smallest becomes
    max over j <= k of min(1, (m - j + 1) p_(j)), which controls the family-wise error rate."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted, running = [0.0] * len(p_values), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def mean_interval(values_by_problem: list[list[float]]) -> tuple[float, float | None, float | None]:
    """The mean over every value, with its 95% interval clustered by problem (`clustered_mean`): (mean, low, high);
    (mean, None, None) with fewer than two problems."""
    counts = [(len(values), math.fsum(values)) for values in values_by_problem if values]
    if len(counts) < 2:
        return math.fsum(x for _, x in counts) / sum(n for n, _ in counts), None, None
    mean, half = clustered_mean(counts)
    return mean, mean - half, mean + half


def spread(values: list[float]) -> tuple[float, float, float] | None:
    """(10th percentile, median, 90th percentile) of the values (None for fewer than two)."""
    if len(values) < 2:
        return None
    deciles = statistics.quantiles(values, n=10, method="inclusive")
    return deciles[0], statistics.median(values), deciles[-1]
