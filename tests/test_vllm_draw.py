"""The draw of ecmh's vLLM logits processors (`ecmh.backends.vllm.draw`), checked without vLLM.

Each statistical check is a chi-square statistic against its reference, with a fixed set of seeds (so it
is deterministic) and a threshold at the statistic's mean plus 6 standard deviations (`2 * dof`
variance): a correct sampler exceeds it with probability below 1e-6. Each has a negative control that
must exceed it.
"""

import math

import pytest
import torch

from ecmh.backends.vllm import channel, draw
from ecmh.scoring import PowerProposal

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


def pair_statistic(seeds: torch.Tensor, positions: torch.Tensor, bins: int = 16) -> float:
    """Chi-square of (u at position t, u at position t + 1) over a bins x bins grid: uniform and independent."""
    first = (draw.uniforms(seeds, positions) * bins).long()
    second = (draw.uniforms(seeds, positions + 1) * bins).long()
    counts = torch.bincount(first * bins + second, minlength=bins * bins).double()
    return chi_square(counts, torch.full_like(counts, len(seeds) / bins**2))


def test_uniforms_are_fixed_multiples_of_two_to_the_minus_24_in_the_unit_interval():
    seeds = torch.randint(0, 2**62, (DRAWS,), generator=torch.Generator().manual_seed(0))
    positions = torch.randint(0, 1 << 20, (DRAWS,), generator=torch.Generator().manual_seed(1))
    u = draw.uniforms(seeds, positions)
    assert u.dtype == torch.float32 and (u >= 0).all() and (u < 1).all()
    assert torch.equal(u * 2**24, (u * 2**24).floor())
    assert torch.equal(u, draw.uniforms(seeds.clone(), positions.clone()))  # a function of (seed, position)
    shuffled = torch.randperm(DRAWS, generator=torch.Generator().manual_seed(2))
    assert torch.equal(u[shuffled], draw.uniforms(seeds[shuffled], positions[shuffled]))  # whatever the batch order


@pytest.mark.parametrize("seeds", ["consecutive", "random"])
def test_uniforms_of_neighbouring_positions_are_uniform_and_independent(seeds):
    seed = (torch.arange(DRAWS) if seeds == "consecutive"
            else torch.randint(0, 2**62, (DRAWS,), generator=torch.Generator().manual_seed(3)))
    assert pair_statistic(seed, torch.arange(DRAWS) % 512) < threshold(16 * 16 - 1)
    # and across seeds at one position
    assert pair_statistic(torch.zeros(DRAWS, dtype=torch.long) + 7, torch.arange(DRAWS) * 2) < threshold(255)


def test_a_weak_mixer_fails_the_independence_check(monkeypatch):
    monkeypatch.setattr(draw, "_mix", lambda x: (x * 2654435761) & draw._MASK32)  # one multiplicative step
    assert pair_statistic(torch.arange(DRAWS), torch.arange(DRAWS) % 512) > threshold(255)


def token_statistic(proposal: PowerProposal, logits: torch.Tensor, reference: torch.Tensor) -> float:
    rows = torch.arange(DRAWS)
    processed = draw.draw(logits.expand(DRAWS, -1), proposal, seed=rows * 7919, position=rows % 97)
    tokens = processed.argmax(1)
    assert (processed.gather(1, tokens[:, None]) == float("inf")).all()
    counts = torch.bincount(tokens, minlength=logits.shape[1]).double()
    keep = reference > 0
    assert counts[~keep].sum() == 0  # never a token outside the truncated support
    return chi_square(counts[keep], DRAWS * reference[keep])


@pytest.mark.parametrize("alpha,top_k,top_p", [(4.0, None, None), (2.0, 5, None), (3.0, None, 0.9), (1.0, None, None)])
def test_the_drawn_tokens_follow_the_tempered_proposal_and_carry_its_numbers(alpha, top_k, top_p):
    logits = torch.randn(1, 12, generator=torch.Generator().manual_seed(4)) * 2
    proposal = PowerProposal(alpha, top_k, top_p)
    log_p = proposal.log_probs(logits)
    log_z, entropy = proposal.normaliser_and_entropy(log_p)
    q = torch.exp(alpha * log_p - log_z[:, None])[0].double()
    assert token_statistic(proposal, logits, q) < threshold(int((q * DRAWS >= 5).sum()))
    processed = draw.draw(logits, proposal, torch.tensor([5]), torch.tensor([9]))
    token = int(processed.argmax())
    numbers = processed[0, channel.slot_tokens(token)]
    assert torch.equal(numbers, torch.stack([log_p[0, token], log_z[0], entropy[0]]))


def test_drawing_from_p_instead_of_the_tempered_proposal_fails_the_check():
    logits = torch.randn(1, 12, generator=torch.Generator().manual_seed(4)) * 2
    proposal = PowerProposal(4.0)
    q = torch.exp(4.0 * proposal.log_probs(logits) - proposal.normaliser_and_entropy(proposal.log_probs(logits))[0])
    assert token_statistic(PowerProposal(1.0), logits, q[0].double()) > threshold(int((q * DRAWS >= 5).sum()))
