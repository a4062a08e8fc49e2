"""The task-benchmark report: statistics against hand-worked values, and the files it writes.

tests/data/fake_results holds one model ("tiny-llama"), two tasks, three methods, seeds 0 and 1,
four problems. Correct (seed 0, seed 1) per problem:

    math500     ecmh        (1,1) (1,0) (0,1) (1,0)
                standard    (1,0) (0,0) (0,1) (0,1)
                uniform_mh  (1,1) (1,1) (0,0) (1,0)
    humaneval   ecmh        (1,1) (0,0) (1,0) (0,0)
                standard    (1,1) (0,0) (1,0) (0,0)   + a later, wrong duplicate of problem 1 seed 0
                uniform_mh  (1,1) (1,1) (1,1) (0,1)

math500/ecmh.jsonl ends in a partial line (a killed run).
"""

import dataclasses
import json
import math
import os
import shutil
import statistics
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from benchmarks import report, report_mcnemar, stats

FAKE_RESULTS = Path(__file__).parent / "data" / "fake_results"
T_975_3_DOF = 3.182446305284263  # two-sided 95% Student t quantile, 3 degrees of freedom


@pytest.fixture(scope="module")
def summary():
    return report.summarise(report.load_rows(FAKE_RESULTS))


def test_loading_skips_the_partial_line_and_keeps_the_first_duplicate(capsys):
    rows = report.load_rows(FAKE_RESULTS)
    assert len(rows) == 2 * 3 * 2 * 4
    warnings = capsys.readouterr().err
    assert "math500/ecmh.jsonl:9 is not a complete JSON line" in warnings
    assert "dropped 1 duplicate" in warnings
    first = [r for r in rows if (r["task"], r["method"], r["problem_id"], r["seed"]) ==
             ("humaneval", "standard", "HumanEval/0", 0)]
    assert [r["correct"] for r in first] == [True]


def test_accuracy_pass_at_k_and_interval(summary):
    ecmh = summary.method("tiny-llama", "math500", "ecmh")
    assert (ecmh.problems, ecmh.seeds, ecmh.samples) == (4, 2, 8)
    assert ecmh.accuracy == 5 / 8
    # pass@1 = accuracy; pass@2 with n = 2 is "any seed right": all four problems
    assert ecmh.pass_at_k == {1: 5 / 8, 2: 1.0}
    # Per-problem means 1, .5, .5, .5: mean .625, sample variance (.375² + 3 * .125²) / 3 = .0625,
    # standard error sqrt(.0625 / 4) = .125; .625 -/+ t(3 dof) * .125 = [.2272, 1.0228], clipped to 1.
    assert ecmh.ci_method == stats.CLUSTERED_CI
    assert ecmh.ci_low == pytest.approx(0.625 - T_975_3_DOF * 0.125)
    assert ecmh.ci_high == 1.0

    standard = summary.method("tiny-llama", "math500", "standard")
    assert standard.accuracy == 3 / 8
    assert standard.pass_at_k == {1: 3 / 8, 2: 3 / 4}
    # per-problem means .5, 0, .5, .5: again variance .0625, standard error .125; the low end is clipped
    assert (standard.ci_low, standard.ci_high) == (0.0, pytest.approx(0.375 + T_975_3_DOF * 0.125))

    assert summary.method("tiny-llama", "humaneval", "uniform_mh").pass_at_k == {1: 7 / 8, 2: 1.0}
    # the dropped duplicate (wrong) would have changed this
    assert summary.method("tiny-llama", "humaneval", "standard").pass_at_k == {1: 3 / 8, 2: 1 / 2}


def test_cost_and_acceptance(summary):
    ecmh = summary.method("tiny-llama", "math500", "ecmh")
    assert ecmh.tokens_per_problem == 400  # (400+420+380+400+500+460+300+340) / 8
    assert ecmh.at_token_limit == 1 / 8  # one answer of 48 tokens, max_new_tokens 48
    assert ecmh.seconds_per_problem == 4.5
    assert ecmh.acceptance_rate == 0.375  # .5 on seed 0, .25 on seed 1
    assert ecmh.acceptance_by_block == [0.75, 0.25, 0.25]  # [1, .5, null] and [.5, 0, .25]
    assert summary.method("tiny-llama", "math500", "uniform_mh").acceptance_by_block == pytest.approx([0.5, 0.1])
    standard = summary.method("tiny-llama", "math500", "standard")
    assert (standard.acceptance_rate, standard.acceptance_by_block) == (None, [])


def test_clustered_mcnemar_on_the_fake_results(summary):
    # math500, ecmh vs standard, discordant (ecmh only, standard only) per problem:
    # p1 (1,0) seed 1; p2 (1,0) seed 0; p3 none; p4 (1,1) seed 0 one way, seed 1 the other.
    # B = 3, C = 1, sum (b - c)² = 1 + 1 + 0 + 0 = 2: statistic (3 - 1)² / 2 = 2, p = erfc(1)
    # (the unclustered McNemar would give (3 - 1)² / 4 = 1: p4's pairs cancel within the problem).
    versus_standard = summary.comparison("tiny-llama", "math500", "standard")
    assert (versus_standard.pairs, versus_standard.subject_only, versus_standard.other_only) == (8, 3, 1)
    assert versus_standard.statistic == 2.0
    assert versus_standard.p_value == pytest.approx(math.erfc(1.0))
    # humaneval, ecmh vs uniform_mh: (0,2), (0,1), (0,1): 4² / (4 + 1 + 1)
    versus_uniform = summary.comparison("tiny-llama", "humaneval", "uniform_mh")
    assert (versus_uniform.subject_only, versus_uniform.other_only) == (0, 4)
    assert versus_uniform.statistic == pytest.approx(16 / 6)
    # ecmh - standard: per-problem differences .5, .5, 0, 0 (p3 concordant, p4 balanced: both count), mean .25,
    # sample variance (4 * .25²) / 3, standard error sqrt(1 / 12) / 2; t on 3 degrees of freedom
    assert versus_standard.difference == 0.25
    half = T_975_3_DOF * math.sqrt(1 / 12) / 2
    assert (versus_standard.difference_low, versus_standard.difference_high) == (
        pytest.approx(0.25 - half), pytest.approx(0.25 + half))
    assert versus_uniform.difference == -0.5
    # no discordant pair at all, and discordant pairs that balance: p = 1
    for task, method in [("humaneval", "standard"), ("math500", "uniform_mh")]:
        comparison = summary.comparison("tiny-llama", task, method)
        assert (comparison.statistic, comparison.p_value) == (0.0, 1.0)
    assert len(summary.comparisons) == 4
    # exact: math500 b - c by problem 1, 1, 0, 0: p = P(|±1 ±1| >= 2) = 1/2; humaneval vs uniform_mh: -2, -1, -1:
    # |±2 ±1 ±1| >= 4 in 2 of 8 sign choices; Holm over each task's two comparisons
    assert versus_standard.exact_p == 0.5 and versus_uniform.exact_p == 0.25
    assert versus_standard.holm_p == 1.0 and versus_uniform.holm_p == 0.5


def test_a_pre_registered_family_limits_holm_to_its_methods(tmp_path):
    """A method added after the pre-registration is reported beside the family: its exact p unadjusted (Holm p
    None, "– (outside)"), and the family's Holm p as if it were not there (with both methods in the family, the
    fixture's Holm p are 1.0 and 0.5: the adjustment the file must change)."""
    shutil.copytree(FAKE_RESULTS, tmp_path / "results")
    (tmp_path / "results" / report_mcnemar.FAMILY_FILE).write_text('["standard"]')
    text = report.main_report(tmp_path / "results").read_text()
    summary = report.summarise(report.load_rows(tmp_path / "results"), report.read_family(tmp_path / "results"))
    for task in ("math500", "humaneval"):
        standard = summary.comparison("tiny-llama", task, "standard")
        assert standard.holm_p == standard.exact_p  # a family of one
        assert summary.comparison("tiny-llama", task, "uniform_mh").holm_p is None
    assert text.count("| – (outside) |") == 2


@given(st.lists(st.tuples(st.floats(0, 1), st.booleans()), min_size=1, max_size=8))
def test_holm_over_a_family_equals_a_fresh_holm_of_its_members(summary, p_and_member):
    template = summary.comparison("tiny-llama", "math500", "standard")
    comparisons = [dataclasses.replace(template, method=f"m{i}", exact_p=p) for i, (p, _) in enumerate(p_and_member)]
    family = {f"m{i}" for i, (_, member) in enumerate(p_and_member) if member}
    adjusted = report.with_holm(comparisons, family)
    members = [c for c in adjusted if c.method in family]
    assert [c.holm_p for c in members] == stats.holm([c.exact_p for c in members])
    assert all(c.holm_p is None for c in adjusted if c.method not in family)


@pytest.mark.parametrize("content", ["not json", "{}", "[]", '["standard", 3]'])
def test_a_malformed_family_file_is_refused_naming_it(tmp_path, content):
    shutil.copytree(FAKE_RESULTS, tmp_path / "results")
    (tmp_path / "results" / report_mcnemar.FAMILY_FILE).write_text(content)
    with pytest.raises(ValueError, match=f"{report_mcnemar.FAMILY_FILE}.*list of method names"):
        report.main_report(tmp_path / "results")
    assert not (tmp_path / "results" / "summary.md").exists()


@given(st.integers(0, 40), st.integers(0, 40))
def test_the_exact_test_with_one_pair_per_problem_is_the_binomial_mcnemar_test(only_first, only_second):
    from scipy.stats import binomtest

    differences = [1] * only_first + [-1] * only_second + [0] * 3  # concordant problems change nothing
    expected = 1.0 if only_first + only_second == 0 else binomtest(only_first, only_first + only_second).pvalue
    assert stats.sign_flip_p_value(differences) == pytest.approx(expected, rel=1e-9)


def test_the_exact_test_by_problem_hand_example():
    # b - c per problem 2, 1, -1: |sum| = 2; of the 8 sign choices the sums are ±4 (2), ±2 (4), 0 (2): p = 6/8,
    # where the asymptotic clustered statistic 2² / (4 + 1 + 1) says 0.41
    assert stats.sign_flip_p_value([2, 1, -1]) == 0.75
    assert stats.clustered_mcnemar([(2, 0), (1, 0), (0, 1)])[1] == pytest.approx(math.erfc(math.sqrt(4 / 12)))
    # ten problems all one way: p = 2 / 2^10 (all plus or all minus); the same ten pooled in one problem: 1
    assert stats.sign_flip_p_value([1] * 10) == 2 / 1024 and stats.sign_flip_p_value([10]) == 1.0


def test_holm_hand_example():
    # sorted .01, .03, .04, .5 times 4, 3, 2, 1: .04, .09, .08 -> .09 (monotone), .5
    assert stats.holm([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert stats.holm([0.9, 0.3]) == pytest.approx([0.9, 0.6]) and stats.holm([]) == []  # .3 * 2, then .9 * 1


def test_cost_figures_say_how_many_rows_they_rest_on():
    def row(method, problem, tokens, passes):
        return {"model": "m", "task": "gsm8k", "method": method, "problem_id": str(problem), "seed": 0,
                "correct": True, "tokens_decoded": tokens, "tokens_forwarded": tokens + 5, "sequential_passes": passes,
                "seconds": 1.0, "config": {}}

    rows = [row("low_temp", p, 10, 11) for p in range(4)]
    rows += [row("uniform_mh", p, 10 * (p + 1), 10 * (p + 1) if p < 2 else None) for p in range(4)]
    summary = report.summarise(rows)
    uniform = summary.method("m", "gsm8k", "uniform_mh")
    assert uniform.rows_with["sequential_passes"] == 2 and uniform.rows_with["tokens_decoded"] == 4
    # ratios 1, 2, 3, 4: median 2.5, inclusive deciles 1.3 and 3.7
    assert uniform.token_ratio_spread == pytest.approx((1.3, 2.5, 3.7, 4))
    text = report.markdown(summary, "report", len(rows))
    # tokens 25 / 10; forwarded 30 / 15; passes 15 (2 rows) / 11
    assert "| uniform_mh | 2.50 | 2.00 | 1.36 (2 of 4 rows) | 1.00 | 2.50 [1.30, 3.70] |" in text, text


def test_the_target_check_hand_example():
    def row(method, problem, log_p, tokens):
        return {"model": "m", "task": "gsm8k", "method": method, "problem_id": str(problem), "seed": 0,
                "correct": True, "log_p": log_p, "completion_tokens": tokens, "config": {}}

    # ecmh log p -1, -2, -3, -4 on problems 0-3; low_temp 1 lower on each, and problem 4 that ecmh lacks
    rows = [row("ecmh", p, -1.0 - p, 10) for p in range(4)]
    rows += [row("low_temp", p, -2.0 - p, 12 + p) for p in range(5)]
    summary = report.summarise(rows)
    low_temp = next(t for t in summary.targets if t.method == "low_temp")
    assert (low_temp.samples, low_temp.pairs) == (5, 4)
    assert low_temp.log_p[0] == pytest.approx(-4.0) and low_temp.length[0] == pytest.approx(14.0)
    assert low_temp.log_p_difference == pytest.approx((-1.0, -1.0, -1.0))  # the same on every pair: zero width
    assert low_temp.length_difference[0] == pytest.approx(3.5)  # 2, 3, 4, 5
    ecmh = next(t for t in summary.targets if t.method == "ecmh")
    assert ecmh.log_p_difference is None and ecmh.pairs == 0
    text = report.markdown(summary, "report", len(rows))
    assert "## Sampler or target?" in text and "| m | gsm8k | low_temp | 5 | -4.00 [too few] |" in text
    assert "| 4 | -1.00 [too few] | +3.5 [too few] |" in text  # five problems: no interval printed


def test_report_writes_markdown_json_and_plots(tmp_path):
    path = report.main_report(FAKE_RESULTS, tmp_path / "out")
    assert path == tmp_path / "out" / "summary.md"
    text = path.read_text()
    assert f"ecmh-benchmarks report {FAKE_RESULTS} --out {tmp_path / 'out'}" in text
    assert "| ecmh | 4 | 2 | 62.5 [too few] | 62.5 | 100.0 | 400 (63) | 12.5 | 4.50 | 37.5 |" in text
    # exact p of the sign flips of b - c = 1, 1, 0, 0 by problem: |sum| >= 2 in 2 of 4 sign choices
    assert "| tiny-llama | math500 | standard | 8 | 3 | 1 | 2.00 | 0.5 (0.16) | 1 |" in text
    assert "cluster-robust" in text
    for image in (report.ACCURACY_PLOT, report.ACCEPTANCE_PLOT):
        assert f"]({image})" in text
        assert (tmp_path / "out" / image).read_bytes().startswith(b"\x89PNG")
    numbers = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert len(numbers["methods"]) == 6 and len(numbers["comparisons"]) == 4


def test_report_goes_next_to_the_data_by_default(tmp_path):
    shutil.copytree(FAKE_RESULTS, tmp_path / "results")
    assert report.main_report(tmp_path / "results") == tmp_path / "results" / "summary.md"


def test_empty_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match=r"no \*\.jsonl result files under"):
        report.main_report(tmp_path)
    (tmp_path / "killed.jsonl").write_text('{"model": "m", "ta')
    with pytest.raises(ValueError, match="no graded samples"):
        report.load_rows(tmp_path)


def test_pass_at_k_matches_the_closed_form():
    assert stats.pass_at_k(5, 2, 2) == pytest.approx(1 - 3 / 10)  # 1 - C(3,2) / C(5,2)
    for n in range(1, 9):
        for c in range(n + 1):
            assert stats.pass_at_k(n, c, 1) == pytest.approx(c / n)
            for k in range(1, n + 1):
                # Chen et al.'s numerically stable form: 1 - prod_{i = n-c+1}^{n} (1 - k / i)
                stable = 1 - math.prod(1 - k / i for i in range(n - c + 1, n + 1)) if n - c >= k else 1.0
                assert stats.pass_at_k(n, c, k) == pytest.approx(stable)
    assert stats.pass_at_k_levels([4, 5, 8]) == [1, 2, 4]
    assert stats.pass_at_k_levels([3]) == [1, 2]


@given(st.integers(1, 4), st.lists(st.integers(-4, 4), min_size=2, max_size=30))
def test_the_paired_difference_interval_is_the_t_interval_of_the_per_problem_differences(seeds, differences):
    differences = [max(-seeds, min(seeds, d)) for d in differences]  # b - c of `seeds` pairs
    difference, low, high = stats.paired_difference([(seeds, d) for d in differences])
    means = [d / seeds for d in differences]
    assert difference == pytest.approx(statistics.fmean(means))
    half = stats.student_t_quantile(0.95, len(means) - 1) * statistics.stdev(means) / math.sqrt(len(means))
    assert (low, high) == (pytest.approx(max(-1.0, difference - half), abs=1e-12),
                           pytest.approx(min(1.0, difference + half), abs=1e-12))


def test_a_paired_difference_over_one_problem_has_no_interval():
    assert stats.paired_difference([(3, -2)]) == (pytest.approx(-2 / 3), None, None)


def test_clustered_mcnemar_hand_example():
    # clusters (b, c): (2,0) (1,1) (0,1) (3,0): B = 6, C = 2, sum (b - c)² = 4 + 0 + 1 + 9 = 14
    statistic, p_value = stats.clustered_mcnemar([(2, 0), (1, 1), (0, 1), (3, 0)])
    assert statistic == pytest.approx(16 / 14)
    assert p_value == pytest.approx(math.erfc(math.sqrt(8 / 14)))
    # one pair per cluster: the ordinary McNemar (B - C)² / (B + C)
    assert stats.clustered_mcnemar([(1, 0)] * 5 + [(0, 1)] * 2)[0] == pytest.approx(9 / 7)
    assert stats.clustered_mcnemar([]) == (0.0, 1.0)


def test_interval_helpers():
    for dof, quantile in [(1, 12.706205), (2, 4.302653), (3, T_975_3_DOF), (10, 2.228139), (30, 2.042272)]:
        assert stats.student_t_quantile(0.95, dof) == pytest.approx(quantile, rel=1e-6)
    z2 = stats.Z**2
    assert stats.wilson_interval(0, 10) == pytest.approx((0.0, z2 / (10 + z2)))  # 0 of n: [0, z² / (n + z²)]
    # one sample per problem: Wilson over the samples
    assert stats.accuracy_interval([(1, 0)] * 10)[2] == stats.WILSON_CI


def test_token_ratio_of_each_pair_and_accuracy_by_extraction_kind():
    def row(method, problem, seed, correct, tokens, extraction):
        return {"model": "m", "task": "gsm8k", "method": method, "problem_id": str(problem), "seed": seed,
                "correct": correct, "tokens_decoded": tokens, "extraction": extraction, "config": {}}

    rows = [row("ecmh", p, 0, p < 2, 300, "boxed" if p < 3 else "none") for p in range(4)]
    rows += [row("low_temp", p, 0, p == 0, 100, "phrase" if p else "boxed") for p in range(4)]
    summary = report.summarise(rows)
    [comparison] = summary.comparisons
    assert comparison.token_ratio == pytest.approx(3.0)
    assert summary.method("m", "gsm8k", "ecmh").by_extraction == {"boxed": (3, 2 / 3), "none": (1, 0.0)}
    assert summary.method("m", "gsm8k", "low_temp").by_extraction == {"boxed": (1, 1.0), "phrase": (3, 0.0)}
    text = report.markdown(summary, "report", len(rows))
    assert "| ecmh | 66.7 (3) | 0.0 (1) | – |" in text and "| 3.00 |" in text


def test_a_report_with_one_method_says_what_it_needs(tmp_path):
    folder = tmp_path / "run" / "gsm8k"
    folder.mkdir(parents=True)
    rows = [{"model": "m", "task": "gsm8k", "method": "low_temp", "problem_id": str(p), "seed": 0, "correct": p == 0,
             "tokens_decoded": 10, "config": {}} for p in range(3)]
    (folder / "low_temp.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    text = report.main_report(tmp_path / "run").read_text()
    assert "Needs two methods" in text and "No MH method here" in text
    assert not (tmp_path / "run" / report.ACCEPTANCE_PLOT).exists()


def test_best_of_n_accuracy_per_selector():
    def row(method, problem, picks):
        return {"model": "m", "task": "gsm8k", "method": method, "problem_id": str(problem), "seed": 0,
                "correct": picks.get("log_p", True), "tokens_decoded": 10, "config": {},
                "by_selector": {name: {"correct": ok, "draw": 0} for name, ok in picks.items()}}

    rows = [row("bon_std", p, {"log_p": p == 0, "hes": p < 2, "majority": False}) for p in range(4)]
    rows += [row("ecmh", p, {}) for p in range(4)]
    summary = report.summarise(rows)
    assert summary.method("m", "gsm8k", "bon_std").by_selector == {"hes": (4, 0.5), "log_p": (4, 0.25),
                                                                   "majority": (4, 0.0)}
    text = report.markdown(summary, "report", len(rows))
    assert "Best-of-N accuracy by the selector" in text and "| bon_std | 50.0 (4) | 25.0 (4) | 0.0 (4) |" in text
    assert "| ecmh | " not in text.split("Best-of-N accuracy")[1].split("##")[0]


def test_agreement_between_methods():
    rows = [{"model": "m", "task": "t", "method": method, "problem_id": str(p), "seed": 0, "correct": ok}
            for method, results in [("ecmh", [1, 1, 0, 0]), ("standard", [1, 0, 0, 1]), ("low_temp", [1])]
            for p, ok in enumerate(results)]
    names, matrix = report_mcnemar.agreement(rows, "m", "t")
    assert names == ["standard", "low_temp", "ecmh"]
    assert matrix[0] == [1.0, 1.0, 0.5] and matrix[1][2] == 1.0 and matrix[2][0] == 0.5


answer_at = st.tuples(st.booleans(), st.sampled_from([3, 7, 8]))  # (correct, completion tokens); the limit is 8


@given(st.lists(st.tuples(answer_at, answer_at), min_size=1, max_size=12), st.integers(1, 3))
def test_the_token_limit_bound_is_the_difference_had_every_cut_off_answer_gone_against_ecmh(pairs, seeds):
    def row(method, index, answer):
        correct, tokens = answer
        return {"model": "m", "task": "humaneval", "method": method, "problem_id": f"p{index // seeds}",
                "seed": index % seeds, "correct": correct, "completion_tokens": tokens,
                "config": {"max_new_tokens": 8}}

    def against_ecmh(method, index, answer):
        correct, tokens = answer
        cut_off = tokens >= 8
        return row(method, index, (correct and not cut_off if method == "ecmh" else correct or cut_off, tokens))

    rows = [row(m, i, pair[k]) for i, pair in enumerate(pairs) for k, m in enumerate(["ecmh", "low_temp"])]
    [comparison] = report.summarise(rows).comparisons
    flipped = [against_ecmh(m, i, pair[k]) for i, pair in enumerate(pairs) for k, m in enumerate(["ecmh", "low_temp"])]
    [recomputed] = report.summarise(flipped).comparisons
    if any(answer[1] >= 8 for pair in pairs for answer in pair):
        assert comparison.difference_if_cut_offs_went_against_subject == pytest.approx(recomputed.difference)
        assert comparison.difference_if_cut_offs_went_against_subject <= comparison.difference
    else:
        assert comparison.difference_if_cut_offs_went_against_subject is None


def test_the_token_limit_bound_in_the_markdown():
    def row(method, problem, correct, tokens):
        return {"model": "m", "task": "humaneval", "method": method, "problem_id": str(problem), "seed": 0,
                "correct": correct, "completion_tokens": tokens, "config": {"max_new_tokens": 8}}

    # ecmh right on 3 of 4, low_temp on 1; low_temp's wrong answer to p1 and ecmh's right one to p2 were cut off:
    # +50 points as graded, 0 had both gone against ecmh
    rows = [row("ecmh", p, p < 3, 8 if p == 2 else 5) for p in range(4)]
    rows += [row("low_temp", p, p == 0, 8 if p == 1 else 5) for p in range(4)]
    [comparison] = report.summarise(rows).comparisons
    assert (comparison.difference, comparison.difference_if_cut_offs_went_against_subject) == (0.5, 0.0)
    assert "| +50.0 [" in (text := report.markdown(report.summarise(rows), "report", len(rows)))
    assert "| +0.0 |" in text


def test_the_summary_is_the_same_whatever_the_order_python_hashes_strings_in(tmp_path):
    import random
    import subprocess
    import sys

    draw = random.Random(0)
    rows = [{"model": "m", "task": "humaneval", "method": method, "problem_id": f"HumanEval/{p}", "seed": seed,
             "correct": draw.random() < 0.5, "tokens_decoded": draw.randrange(1, 500), "config": {}}
            for method in ["ecmh", "low_temp"] for p in range(164) for seed in range(2)]
    (tmp_path / "humaneval").mkdir()
    (tmp_path / "humaneval" / "rows.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    program = ("import sys; from benchmarks import report\n"
               "print(report.summary_json(report.summarise(report.load_rows(sys.argv[1]))))")
    # the per-problem sums of the intervals once ran in the order of a set of (problem, seed) keys: digits changed
    outputs = {subprocess.run([sys.executable, "-c", program, str(tmp_path)], capture_output=True, text=True,
                              check=True, cwd=Path(__file__).resolve().parents[1],
                              env={**os.environ, "PYTHONHASHSEED": str(seed)}).stdout for seed in range(8)}
    assert len(outputs) == 1


def test_the_target_check_separates_an_exact_sampler_from_a_biased_one():
    """On a toy model small enough to enumerate, 25 two-token prompts, `CHAINS` answers each (seed = chain): the
    subject's rows are exact draws from p^alpha (enumerated), an exact sampler's rows are ECMH's with 100 MH steps on
    one block (exact in the limit, test_exactness.py), a biased one's the tempered proposal alone (0 MH steps, what
    `low_temp` samples). The check passes a method whose paired difference's 95% interval holds 0.

    Tolerance: the report's own 95% interval, clustered by the 25 prompts: a correct sampler falls outside it in
    about 5% of seeds (plus what residual burn-in adds). ECMH's |difference| measured 0.71, 0.10 and 1.04
    half-widths of the interval on model seeds 0, 1 and 2 (this test: seed 0; seed 2's is the 5% case or burn-in at
    100 steps). The negative control must fail: the proposal measured 2.6, 1.9 and 2.2 half-widths, its answers less
    likely under p than p^alpha's. (SMC at 2 particles, also biased, measured 0.9-1.5: too close to call here.)"""
    import torch

    import ecmh
    from ecmh.toy import exact

    from conftest import EOS, PAD, tiny_model

    alpha, length, chains = 4.0, 3, 300
    model = tiny_model(vocab_size=5, sharpness=3.0, seed=0, initializer_range=0.1)
    prompts = torch.tensor([[a, b] for a in range(5) for b in range(5)])

    def rows(method, log_p, lengths):
        return [{"model": "toy", "task": "t", "method": method, "problem_id": i // chains, "seed": i % chains,
                 "correct": True, "log_p": value, "completion_tokens": n}
                for i, (value, n) in enumerate(zip(log_p, lengths))]

    draw = torch.Generator().manual_seed(0)
    exact_log_p, exact_lengths = [], []
    for prompt in prompts.tolist():
        law = exact(model, prompt, length, alpha)
        picks = torch.multinomial(law.target, chains, replacement=True, generator=draw).tolist()
        exact_log_p += law.p.log()[picks].tolist()
        exact_lengths += [len(law.continuations[i]) for i in picks]
    table = rows(report.SUBJECT, exact_log_p, exact_lengths)
    for method, steps in [("exact_sampler", 100), ("biased_sampler", 0)]:
        out = ecmh.generate(model, prompts, attention_mask=torch.ones_like(prompts), alpha=alpha, mcmc_steps=steps,
                            block_size=length, max_new_tokens=length, num_return_sequences=chains, seed=1,
                            eos_token_id=EOS, pad_token_id=PAD, return_dict_in_generate=True)
        table += rows(method, out.stats.log_p.tolist(), out.trace.length.tolist())
    checks = {t.method: t for t in report.summarise(table).targets}

    def agrees(method):
        _, low, high = checks[method].log_p_difference
        return low <= 0 <= high

    assert agrees("exact_sampler") and not agrees("biased_sampler"), checks
