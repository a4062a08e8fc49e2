"""The sampler's stationary distribution is p^alpha, checked against exact enumeration.

Each case runs `CHAINS` independent chains with one block (`block_size == max_new_tokens`), so
`mcmc_steps` MH steps target p^alpha exactly, and compares the empirical distribution of the
returned continuations with p^alpha by total variation (TV). The yardstick is the noise floor:
the mean TV of `CHAINS` exact i.i.d. draws from p^alpha (simulated here). A correct sampler
measured 0.7x-1.25x the floor; the 99th percentile of the i.i.d. TV is under 1.4x the floor,
so `TOLERANCE = 2` leaves room for residual burn-in while still catching a sampler that drops
the cut correction (measured 4.3x-13x in the EOS case) or does no MH at all (7x-36x).
"""

import pytest
import torch

import ecmh

from conftest import EOS, PAD, continuations, exact_log_probs, read_continuation, tiny_model

CHAINS = 8000
STEPS = 40
TOLERANCE = 2.0
ALPHA = 2.0
PROMPT = [0, 1]
# (sharpness, seed, eos, max_new_tokens): models whose p^alpha differs clearly from the
# token-wise tempered proposal (TV 0.31 and 0.16) and is not concentrated on one answer.
CASES = {"with_eos": (20.0, 6, EOS, 4), "without_eos": (20.0, 5, None, 3)}


def _distributions(case):
    sharpness, seed, eos, length = CASES[case]
    model = tiny_model(sharpness=sharpness, seed=seed)
    seqs = continuations([0, 1, 2, 3], length, eos)
    log_p, log_q = exact_log_probs(model, PROMPT, seqs, ALPHA)
    return model, seqs, torch.softmax(ALPHA * log_p, 0), log_q.exp()


def _noise_floor(target: torch.Tensor) -> float:
    generator = torch.Generator().manual_seed(1234)
    draws = torch.multinomial(target.expand(200, -1), CHAINS, replacement=True, generator=generator)
    counts = torch.stack([torch.bincount(row, minlength=target.numel()) for row in draws]).double()
    return (0.5 * (counts / CHAINS - target).abs().sum(1)).mean().item()


def _empirical(model, seqs, case, **kwargs) -> torch.Tensor:
    _, _, eos, length = CASES[case]
    out = ecmh.generate(
        model, torch.tensor([PROMPT]), alpha=ALPHA, block_size=length, max_new_tokens=length, seed=0,
        eos_token_id=eos, pad_token_id=PAD, num_return_sequences=CHAINS, **kwargs,
    )
    index = {seq: i for i, seq in enumerate(seqs)}
    rows = [index[read_continuation(row, eos)] for row in out[:, len(PROMPT):].tolist()]
    return torch.bincount(torch.tensor(rows), minlength=len(seqs)).double() / CHAINS


def _tv_ratio(label: str, empirical: torch.Tensor, reference: torch.Tensor) -> float:
    """TV between the empirical and reference distributions, in units of the i.i.d. noise floor."""
    tv, floor = 0.5 * (empirical - reference).abs().sum().item(), _noise_floor(reference)
    print(f"{label}: TV {tv:.4f}, noise floor {floor:.4f}, ratio {tv / floor:.2f}")
    return tv / floor


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("cut,cut_power", [("entropy", 0.5), ("uniform", 4.0)])
def test_chains_reach_the_power_distribution(case, cut, cut_power):
    # cut_power 0.5 spreads entropy cuts over the positions (with 4 nearly every cut is a restart here).
    model, seqs, target, _ = _distributions(case)
    empirical = _empirical(model, seqs, case, mcmc_steps=STEPS, cut=cut, cut_power=cut_power)
    assert _tv_ratio(f"{case} {cut}", empirical, target) <= TOLERANCE


@pytest.mark.parametrize("case", sorted(CASES))
def test_without_mh_steps_the_test_fails(case):
    model, seqs, target, _ = _distributions(case)
    assert _tv_ratio(f"{case} mcmc_steps=0", _empirical(model, seqs, case, mcmc_steps=0), target) > 3 * TOLERANCE


@pytest.mark.parametrize("case", sorted(CASES))
def test_zero_steps_sample_the_tempered_proposal(case):
    model, seqs, _, proposal = _distributions(case)
    assert _tv_ratio(f"{case} proposal", _empirical(model, seqs, case, mcmc_steps=0), proposal) <= TOLERANCE
