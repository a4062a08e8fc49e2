"""Counter-based random numbers (`ecmh.keyed`): fixed functions of (key, counters), uniform and independent.

Each statistical check is a chi-square statistic against its reference, with a fixed set of keys (so it
is deterministic) and a threshold at the statistic's mean plus 6 standard deviations (`2 * dof`
variance): a correct generator exceeds it with probability below 1e-6. Each has a negative control that
must exceed it.
"""

import math

import pytest
import torch

from ecmh import keyed

DRAWS = 1 << 16


def chi_square(counts: torch.Tensor, expected: torch.Tensor) -> float:
    """Pearson's statistic, the cells expected to hold fewer than 5 merged into one (dof: cells - 1 after merging)."""
    small = expected < 5
    if small.any():
        counts = torch.cat([counts[~small], counts[small].sum()[None]])
        expected = torch.cat([expected[~small], expected[small].sum()[None]])
    return float(((counts - expected) ** 2 / expected).sum())


def threshold(dof: int) -> float:
    return dof + 6 * math.sqrt(2 * dof)


def pair_statistic(first: torch.Tensor, second: torch.Tensor, bins: int = 16) -> float:
    """Chi-square of pairs of uniforms over a bins x bins grid: uniform and independent."""
    counts = torch.bincount((first * bins).long() * bins + (second * bins).long(), minlength=bins * bins).double()
    return chi_square(counts, torch.full_like(counts, len(first) / bins**2))


def random_keys(seed: int) -> torch.Tensor:
    return torch.randint(0, 2**62, (DRAWS,), generator=torch.Generator().manual_seed(seed))


def test_uniforms_are_fixed_multiples_of_two_to_the_minus_24_in_the_unit_interval():
    keys, positions = random_keys(0), torch.randint(0, 1 << 20, (DRAWS,), generator=torch.Generator().manual_seed(1))
    u = keyed.uniforms(keys, positions)
    assert u.dtype == torch.float32 and (u >= 0).all() and (u < 1).all()
    assert torch.equal(u * 2**24, (u * 2**24).floor())
    assert torch.equal(u, keyed.uniforms(keys.clone(), positions.clone()))  # a function of (key, counter)
    shuffled = torch.randperm(DRAWS, generator=torch.Generator().manual_seed(2))
    assert torch.equal(u[shuffled], keyed.uniforms(keys[shuffled], positions[shuffled]))  # whatever the batch order
    nonzero = keyed.nonzero_uniforms(keys, positions)
    assert (nonzero > 0).all() and (nonzero <= 1).all() and torch.equal(nonzero * 2**24, u * 2**24 + 1)


def test_counters_broadcast_and_fold_gives_62_bit_keys():
    keys = random_keys(4)[:8]
    grid = keyed.uniforms(keys[:, None], 3, torch.arange(5)[None, :])
    assert grid.shape == (8, 5)
    assert torch.equal(grid[2, 4], keyed.uniforms(keys[2], 3, 4))
    folded = keyed.fold(random_keys(5), 1)
    assert (folded >= 0).all() and (folded < 2**62).all() and folded.unique().numel() == DRAWS
    assert folded.max() >= 2**61  # the high bits are used


@pytest.mark.parametrize("keys", ["consecutive", "random"])
def test_neighbouring_counters_keys_and_folds_are_uniform_and_independent(keys):
    key = torch.arange(DRAWS) if keys == "consecutive" else random_keys(3)
    positions = torch.arange(DRAWS) % 512
    assert pair_statistic(keyed.uniforms(key, positions), keyed.uniforms(key, positions + 1)) < threshold(255)
    seven = torch.full((DRAWS,), 7)  # across counters at one key
    assert pair_statistic(keyed.uniforms(seven, torch.arange(DRAWS) * 2),
                          keyed.uniforms(seven, torch.arange(DRAWS) * 2 + 1)) < threshold(255)
    # a proposal key and the next one's, and two purposes of one proposal key
    assert pair_statistic(keyed.uniforms(keyed.fold(key, 0), 1), keyed.uniforms(keyed.fold(key, 1), 1)) < threshold(255)
    assert pair_statistic(keyed.uniforms(key, 1, 0), keyed.uniforms(key, 2, 0)) < threshold(255)


def test_a_weak_mixer_fails_the_independence_check(monkeypatch):
    monkeypatch.setattr(keyed, "_mix", lambda x: (x * 2654435761) & keyed.MASK32)  # one multiplicative step
    key, positions = torch.arange(DRAWS), torch.arange(DRAWS) % 512
    assert pair_statistic(keyed.uniforms(key, positions), keyed.uniforms(key, positions + 1)) > threshold(255)
