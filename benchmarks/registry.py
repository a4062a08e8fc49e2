"""The benchmark's names, in one place: its methods (in report order) and its best-of-N selectors. The CLI's
choices, the runner, the report's order and `methods.sample` all read these tables."""

MH_CUTS = {"uniform_mh": "uniform", "ecmh": "entropy", "restart_mh": "restart"}  # MH method -> its cut
BEST_OF_N = {"bon_std": "standard", "bon_low_temp": "low_temp"}  # best-of-N method -> the method of its draws
METHODS = ("standard", "low_temp", "bon_std", "bon_low_temp", "uniform_mh", "restart_mh", "ecmh")  # report order
SELECTORS = ("log_p", "hes", "majority")  # ecmh.select's rules that need no second model


def method_rank(method: str) -> tuple[int, str]:
    """Sort key: the known methods in `METHODS` order, then any other alphabetically."""
    return (METHODS.index(method) if method in METHODS else len(METHODS), method)
