"""The benchmark's methods, by name, in report order: the one place that names them. The CLI's choices, the
runner's order and budgets, and the report's comparisons all read this table.

A new method is one `register` line: an instance of a kind in `methods.py` (or of a new `methods.Method`
subclass), as `smc_ecmh` (SMC with ECMH moves) is; a sampler registered in `ecmh.algorithms` is
`methods.SamplerMethod(name, summary, algorithm=..., options=...)` (tests/test_third_algorithm.py). What a method needs from another it says itself (`budget_from`: whose decoded tokens per problem are its budget);
which method the report tests against every other and divides costs by is said here (`SUBJECT`, `COST_REFERENCE`).
"""

from .methods import MH, SMC, BestOfN, Method, Plain

METHODS: dict[str, Method] = {}
SUBJECT = "ecmh"  # the method the report tests against every other one (the pre-registered family)
COST_REFERENCE = "low_temp"  # the method whose cost per answer the report divides every other's by


def register(method: Method) -> Method:
    """Add `method` to the benchmark (after the ones already there, in report order)."""
    if method.name in METHODS:
        raise ValueError(f"a benchmark method named {method.name!r} is already registered")
    METHODS[method.name] = method
    return method


def method_rank(method: str) -> tuple[int, str]:
    """Sort key: the registered methods in report order, then any other alphabetically."""
    names = list(METHODS)
    return (names.index(method) if method in names else len(names), method)


SMC_OPTIONS = dict(ess_threshold=0.5, resampling="systematic")
STANDARD = register(Plain("standard", "the base model at temperature 1"))
LOW_TEMP = register(Plain("low_temp", "the tempered model, temperature 1/α", tempered=True))
register(BestOfN("bon_std", "best of N draws at temperature 1 whose decoded tokens come closest to the same "
                 "problem's ECMH decoded tokens", budget_from="ecmh", draws_from=STANDARD))
register(BestOfN("bon_low_temp", "the same with draws at temperature 1/α", budget_from="ecmh", draws_from=LOW_TEMP))
# the entropy-cut paper's SMC baseline (arXiv 2605.30327): the textbook filter, the ESS checked every 16 tokens
register(SMC("smc", "`p^α` by Sequential Monte Carlo, 64 particles (the entropy-cut paper's baseline)",
             options=dict(SMC_OPTIONS, resample_every=16)))
# Power-SMC's settings (arXiv 2602.10273): the ESS checked every 64 tokens, the exponent raised from 1 to alpha over
# the first 400 of 2048 tokens
register(SMC("power_smc", "the same with Power-SMC's settings: exponent bridging, the ESS checked every 64 tokens",
             options=dict(SMC_OPTIONS, resample_every=64), bridge_fraction=400 / 2048))
# resample-move: the textbook filter, and at every check every running particle takes one ECMH step (entropy
# cuts, the run's cut power) aimed at the intermediate target (docs/sampler-math.md, 'Resample-move')
register(SMC("smc_ecmh", "`p^α` by SMC whose particles take an ECMH step at every check (resample-move)",
             options=dict(SMC_OPTIONS, resample_every=16, moves=1, cut="entropy")))
register(MH("uniform_mh", "`p^α` by block-wise MH with uniform cuts (Karan & Du, arXiv 2510.14901)", cut="uniform"))
register(MH("restart_mh", "`p^α` by block-wise MH whose every proposal restarts the answer", cut="restart"))
register(MH("ecmh", "`p^α` by block-wise MH with entropy-jump cuts (arXiv 2605.30327)", cut="entropy"))
# multiple-try ECMH at its pre-registered setting (evidence folder README, "Multiple-try ECMH"): 8 candidates side by
# side per MH step, 2 steps per block
register(MH("ecmh_mtm", "`p^α` by multiple-try ECMH: 8 candidates per MH step decoded side by side, 2 steps per block",
            cut="entropy", options=dict(tries=8, mcmc_steps=2)))
