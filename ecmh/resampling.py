"""Resampling for Sequential Monte Carlo: the effective sample size and three unbiased schemes, batched over groups.

Each scheme turns normalised weights `[G, N]` (one group of N particles per prompt) into ancestor indices
`[G, N]` within each group, such that the expected number of copies of particle i is `N * w_i`:

- `multinomial`: N independent draws from the weights (the most variance);
- `systematic`: one uniform per group, N evenly spaced points through the weights' cumulative sum (the
  least variance in practice, the usual default);
- `residual`: `floor(N * w_i)` copies of each particle, the rest drawn multinomially from what is left.

All of them build per-particle copy counts, then the ancestors from the counts, in tensor code on the
weights' device: no per-group Python loop.

Example:
    >>> import torch
    >>> weights = torch.tensor([[0.5, 0.5, 0.0, 0.0]])
    >>> resample("residual", weights, torch.Generator().manual_seed(0)).tolist()
    [[0, 0, 1, 1]]
"""

import torch

SCHEMES = ("systematic", "residual", "multinomial")


def check_scheme(name) -> str:
    if name not in SCHEMES:
        raise ValueError(f"`resampling` must be one of {', '.join(map(repr, SCHEMES))}, got {name!r}.")
    return name


def effective_sample_size(log_weights: torch.Tensor) -> torch.Tensor:
    """`(sum w)^2 / sum w^2` per group of `log_weights` `[G, N]` (between 1 and N)."""
    return torch.exp(2 * torch.logsumexp(log_weights, dim=1) - torch.logsumexp(2 * log_weights, dim=1))


def normalised(log_weights: torch.Tensor) -> torch.Tensor:
    """Weights `[G, N]` summing to 1 per group, in float64 (resampling counts are exact in it)."""
    return torch.softmax(log_weights.double(), dim=1)


def _ancestors(counts: torch.Tensor) -> torch.Tensor:
    """Ancestor indices `[G, N]` from copy counts `[G, N]` that sum to N per group: particle i repeated counts[i] times."""
    slots = torch.arange(counts.shape[1], device=counts.device).expand_as(counts).contiguous()
    return torch.searchsorted(counts.cumsum(1), slots, right=True)


def _multinomial_counts(weights: torch.Tensor, draws: int, rng: torch.Generator) -> torch.Tensor:
    picks = torch.multinomial(weights.float(), draws, replacement=True, generator=rng)
    return torch.zeros_like(picks).scatter_add_(1, picks, torch.ones_like(picks))


def _systematic_counts(weights: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    groups, n = weights.shape
    points = (torch.rand(groups, 1, generator=rng, device=weights.device, dtype=weights.dtype)
              + torch.arange(n, device=weights.device, dtype=weights.dtype)[None, :]) / n
    edges = weights.cumsum(1)
    edges[:, -1] = 1.0  # rounding must not leave the last point beyond the sum
    picks = torch.searchsorted(edges, points, right=True).clamp_max(n - 1)
    return torch.zeros_like(picks).scatter_add_(1, picks, torch.ones_like(picks))


def _residual_counts(weights: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    n = weights.shape[1]
    expected = n * weights
    counts = expected.floor().long()
    left = n - counts.sum(1, keepdim=True)  # [G, 1]: draws still to make, 0 <= left < N
    remainder = (expected - counts).clamp_min(0)
    remainder = torch.where(remainder.sum(1, keepdim=True) > 0, remainder, weights)
    picks = torch.multinomial(remainder.float(), n, replacement=True, generator=rng)
    used = torch.arange(n, device=weights.device)[None, :] < left  # the first `left` draws of each group
    return counts.scatter_add(1, picks, used.long())


def resample(scheme: str, weights: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """Ancestor indices `[G, N]` within each group for normalised `weights` `[G, N]`."""
    if scheme == "multinomial":
        counts = _multinomial_counts(weights, weights.shape[1], rng)
    elif scheme == "systematic":
        counts = _systematic_counts(weights, rng)
    else:
        counts = _residual_counts(weights, rng)
    return _ancestors(counts)
