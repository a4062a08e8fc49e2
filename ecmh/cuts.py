"""Cut distributions: where an MH step cuts the current answer before resampling the rest.

A cut distribution is any object with a method

    log_weights(entropy: Tensor[R, T], length: Tensor[R]) -> Tensor[R, T]

returning unnormalised log-weights of cutting at each position `t` of each row (`-inf` for "never").
`entropy[r, t]` is the entropy of `p(. | prompt, y_<t)`; positions `t >= length[r]` hold junk and
are ignored. The sampler masks those positions, normalises, falls back to uniform cuts when a
row has no positive weight, and puts the exact cut probabilities of both states into the MH
ratio, so any weight function keeps the sampler exact; weights that depend only on `y_<t`
(as all built-in ones do) give the cheapest and best-mixing correction.

A cut distribution may declare `normaliser_only_grows = True`: the weight of position t depends on the entropies at
positions `<= t` only (so it is fixed once the position exists, and the normaliser only grows as an answer does).
Exact early rejection (`ecmh.kernel`, docs/sampler-math.md) is used only for cuts that declare it, as the three
built-in ones do; any other cut runs every proposal to its end.
"""

from typing import Callable, NamedTuple, Protocol, Union

import torch

from .checks import check_number
from .plugins import Registry

DEFAULT_POWER = 4.0  # the entropy-jump exponent when none is given (`cut_power`)


def entropy_jumps(entropy: torch.Tensor) -> torch.Tensor:
    """`H_t - H_{t-1}` per position, `H_{-1} = 0` (position 0's jump is `H_0`), for `[R, T]` entropies."""
    return entropy - torch.nn.functional.pad(entropy[:, :-1], (1, 0))


class CutDistribution(Protocol):
    def log_weights(self, entropy: torch.Tensor, length: torch.Tensor) -> torch.Tensor: ...


class EntropyCut:
    """Cut where the next-token entropy jumps: `w(t) ∝ max(H_t - H_{t-1}, 0) ** power`, `H_{-1} = 0`.

    Example:
        >>> import torch
        >>> EntropyCut(power=1.0).log_weights(torch.tensor([[1.0, 0.5, 2.0]]), torch.tensor([3])).exp()
        tensor([[1.0000, 0.0000, 1.5000]])
    """

    normaliser_only_grows = True

    def __init__(self, power: float = DEFAULT_POWER):
        self.power = check_number("cut_power", power, minimum=0, above=True)

    def log_weights(self, entropy: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
        jump = entropy_jumps(entropy)
        return torch.where(jump > 0, self.power * torch.log(jump.clamp_min(1e-30)), float("-inf"))

    def __repr__(self) -> str:
        return f"EntropyCut(power={self.power})"


class UniformCut:
    """Cut at a uniformly random position (Karan & Du, arXiv 2510.14901)."""

    normaliser_only_grows = True

    def log_weights(self, entropy: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(entropy)

    def __repr__(self) -> str:
        return "UniformCut()"


class RestartCut:
    """Always cut at position 0: each proposal is a fresh draw from the tempered model."""

    normaliser_only_grows = True

    def log_weights(self, entropy: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
        weights = torch.full_like(entropy, float("-inf"))
        weights[:, 0] = 0.0
        return weights

    def __repr__(self) -> str:
        return "RestartCut()"


class Cut(NamedTuple):
    """A registered cut: how to build it from `cut_power`, and what it does in a few words (the command line's help)."""

    build: Callable[[float], CutDistribution]
    summary: str


CUTS = Registry("ecmh.cuts", Cut)  # `cut=` names, in the order the command line lists them; packages add theirs
register = CUTS.register
register("entropy", Cut(EntropyCut, "where the next-token entropy jumps, weights max(H_t - H_{t-1}, 0)^cut_power"))
register("uniform", Cut(lambda power: UniformCut(), "at a uniformly random position (Karan & Du)"))
register("restart", Cut(lambda power: RestartCut(), "always at position 0: every proposal a fresh answer"))


def cut_help() -> str:
    """The registered cuts, each with what it does: the `cut` option's help."""
    return "; ".join(f"{name}: {cut.summary}" for name, cut in CUTS.items())


def resolve_cut(cut: Union[str, CutDistribution], cut_power: float = DEFAULT_POWER) -> CutDistribution:
    """Turn the `cut` argument of `ecmh.generate` into a cut distribution."""
    if isinstance(cut, str):
        if cut not in CUTS:
            raise ValueError(f"Unknown `cut` {cut!r}: use one of {tuple(CUTS)} or an object with a `log_weights` method.")
        return CUTS[cut].build(cut_power)
    if not callable(getattr(cut, "log_weights", None)):
        raise TypeError(
            f"`cut` must be one of {tuple(CUTS)} or an object with a method "
            f"`log_weights(entropy, length) -> Tensor`; got {type(cut).__name__}."
        )
    return cut
