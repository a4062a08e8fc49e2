"""The draw of ecmh's vLLM logits processors (`ecmh.backends.vllm.draw`), checked without vLLM.

Each statistical check is a chi-square statistic against its reference, with a fixed set of seeds (so it
is deterministic) and a threshold at the statistic's mean plus 6 standard deviations (`2 * dof`
variance): a correct sampler exceeds it with probability below 1e-6. Each has a negative control that
must exceed it.
"""

import pytest
import torch

from ecmh.backends.vllm import channel, draw
from ecmh.scoring import PowerProposal
from test_keyed import DRAWS, chi_square, threshold


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
    log_z, entropy, _ = proposal.scores(log_p)
    q = torch.exp(alpha * log_p - log_z[:, None])[0].double()
    assert token_statistic(proposal, logits, q) < threshold(int((q * DRAWS >= 5).sum()))
    processed = draw.draw(logits, proposal, torch.tensor([5]), torch.tensor([9]))
    token = int(processed.argmax())
    numbers = processed[0, channel.slot_tokens(token)]
    assert torch.equal(numbers, torch.stack([log_p[0, token], log_z[0], entropy[0]]))


def test_drawing_from_p_instead_of_the_tempered_proposal_fails_the_check():
    logits = torch.randn(1, 12, generator=torch.Generator().manual_seed(4)) * 2
    proposal = PowerProposal(4.0)
    q = torch.exp(4.0 * proposal.log_probs(logits) - proposal.scores(proposal.log_probs(logits)).log_z)
    assert token_statistic(PowerProposal(1.0), logits, q[0].double()) > threshold(int((q * DRAWS >= 5).sum()))
