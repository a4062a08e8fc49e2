"""The benchmark's names, in one place: its methods (in report order) and its best-of-N selectors. The CLI's
choices, the runner, the report's order and `methods.sample` all read these tables."""

MH_CUTS = {"uniform_mh": "uniform", "ecmh": "entropy", "restart_mh": "restart"}  # MH method -> its cut
BEST_OF_N = {"bon_std": "standard", "bon_low_temp": "low_temp"}  # best-of-N method -> the method of its draws
# SMC method -> its options besides `particles` (`ecmh.settings.SMCConfig`); `bridge_fraction` * max_new_tokens is
# the exponent-bridging length. `smc`: the entropy-cut paper's SMC baseline (64 particles, arXiv 2605.30327), the
# textbook filter with the ESS checked every 16 tokens; `power_smc`: Power-SMC's settings (arXiv 2602.10273: ESS
# checked every 64 tokens, the exponent raised from 1 to alpha over the first 400 of 2048 tokens).
SMC_METHODS = {
    "smc": dict(ess_threshold=0.5, resampling="systematic", resample_every=16, bridge_fraction=0.0),
    "power_smc": dict(ess_threshold=0.5, resampling="systematic", resample_every=64, bridge_fraction=400 / 2048),
}
SMC_PARTICLES = 64  # both methods' particles per prompt unless `--particles` says otherwise
METHODS = ("standard", "low_temp", "bon_std", "bon_low_temp", "smc", "power_smc", "uniform_mh", "restart_mh",
           "ecmh")  # report order
SELECTORS = ("log_p", "hes", "majority")  # ecmh.select's rules that need no second model


def method_rank(method: str) -> tuple[int, str]:
    """Sort key: the known methods in `METHODS` order, then any other alphabetically."""
    return (METHODS.index(method) if method in METHODS else len(METHODS), method)
