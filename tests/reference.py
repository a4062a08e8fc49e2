"""A fresh recomputation of what the sampler stores per answer position, for invariant tests.

For every returned row, the prompt (its padding dropped) plus the continuation (up to and including
its first EOS) is run through the model in one plain forward pass, no cache; the per-position
`log p`, `log Z = logsumexp(alpha * log p)` and entropy are taken from those logits in float32.
"""

from typing import NamedTuple, Optional

import torch

from ecmh.scoring import PowerProposal


class Fresh(NamedTuple):
    log_p: torch.Tensor  # [R, L], 0 past the continuation's end
    log_z: torch.Tensor
    entropy: torch.Tensor
    length: torch.Tensor  # [R]


def continuation_lengths(continuations: torch.Tensor, eos_token_id: Optional[int]) -> torch.Tensor:
    """Per row: the continuation's length up to and including its first EOS (all of it without one)."""
    if eos_token_id is None:
        return torch.full((continuations.shape[0],), continuations.shape[1], dtype=torch.long)
    is_eos = continuations == eos_token_id
    first = torch.where(is_eos.any(1), is_eos.long().argmax(1) + 1, continuations.shape[1])
    return first


@torch.no_grad()
def recompute(model, sequences: torch.Tensor, prompt_mask: torch.Tensor, alpha: float,
              eos_token_id: Optional[int], top_k=None, top_p=None) -> Fresh:
    """The per-position numbers of `sequences` (left-padded prompt + continuation), one row at a time."""
    width = prompt_mask.shape[1]
    continuations = sequences[:, width:]
    length = continuation_lengths(continuations, eos_token_id)
    proposal = PowerProposal(alpha, top_k, top_p)
    out = torch.zeros(3, *continuations.shape)
    for row in range(sequences.shape[0]):
        n = int(length[row])
        prompt = sequences[row, :width][prompt_mask[row].bool()]
        ids = torch.cat([prompt, continuations[row, :n]])[None]
        logits = model(ids).logits[0, len(prompt) - 1 : len(prompt) - 1 + n]
        log_p = proposal.log_probs(logits)
        p = log_p.exp()
        out[0, row, :n] = log_p.gather(1, continuations[row, :n, None]).squeeze(1)
        out[1, row, :n] = torch.logsumexp(alpha * log_p, dim=-1)
        out[2, row, :n] = -torch.where(p > 0, p * log_p, torch.zeros_like(p)).sum(-1)
    return Fresh(*out, length)
