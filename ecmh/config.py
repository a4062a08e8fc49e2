"""ECMH's own options, their defaults and the block-size rule, in one place.

`ecmh.generate`, the `ecmh` command line and the benchmarks all take their defaults from
`DEFAULTS`; `SamplerConfig` checks the values with errors that name the argument.
"""

import math
from dataclasses import dataclass
from typing import Optional, Union

from .checks import check_int
from .cuts import CutDistribution, resolve_cut

BLOCKS_PER_ANSWER = 16  # the papers' block size: B = T / 16


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class SamplerConfig:
    """The options of one ECMH run.

    Args:
        alpha: the power of the target `p^alpha` (`>= 1`); proposals are drawn at temperature `1/alpha`.
        mcmc_steps: MH steps after each block (0: plain low-temperature sampling).
        block_size: tokens added per block; None means `max(1, max_new_tokens // 16)`.
        cut: "entropy", "uniform", "restart", or an object with `log_weights(entropy, length)`.
        cut_power: the exponent of the entropy-jump weights (`cut="entropy"`).

    Example:
        >>> SamplerConfig(alpha=4.0, mcmc_steps=2).block_size_for(max_new_tokens=128)
        8
        >>> SamplerConfig(alpha=0.5)
        Traceback (most recent call last):
        ...
        ValueError: `alpha` must be a finite number >= 1 (the power of p^alpha), got 0.5.
    """

    alpha: float = 4.0
    mcmc_steps: int = 10
    block_size: Optional[int] = None
    cut: Union[str, CutDistribution] = "entropy"
    cut_power: float = 4.0

    def __post_init__(self):
        if not _is_number(self.alpha) or not math.isfinite(self.alpha) or self.alpha < 1:
            raise ValueError(f"`alpha` must be a finite number >= 1 (the power of p^alpha), got {self.alpha!r}.")
        check_int("mcmc_steps", self.mcmc_steps, 0)
        if self.block_size is not None:
            check_int("block_size", self.block_size, 1, "or None (max_new_tokens // 16)")
        self.cut_distribution  # checks `cut` and `cut_power`

    @property
    def cut_distribution(self) -> CutDistribution:
        return resolve_cut(self.cut, self.cut_power)

    def block_size_for(self, max_new_tokens: int) -> int:
        """Tokens per block for answers of up to `max_new_tokens` tokens."""
        if self.block_size is None:
            return max(1, max_new_tokens // BLOCKS_PER_ANSWER)
        if self.block_size > max_new_tokens:
            raise ValueError(
                f"`block_size` must be an integer in [1, max_new_tokens={max_new_tokens}], got {self.block_size!r} "
                "(None means max_new_tokens // 16)."
            )
        return self.block_size


DEFAULTS = SamplerConfig()
