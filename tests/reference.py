"""A fresh recomputation of what the sampler stores per answer position, for invariant tests.

For every returned row, the prompt (its padding dropped) plus the continuation (up to and including
its first EOS or stop string, read plainly by `conftest.terminal_length`) is run through the model in one plain forward pass, no cache; the per-position
`log p`, `log Z = logsumexp(alpha * log p)` and entropy are taken from those logits in float32.
"""

from typing import NamedTuple, Optional

import torch

from conftest import terminal_length
from ecmh.scoring import PowerProposal


class Fresh(NamedTuple):
    log_p: torch.Tensor  # [R, L], 0 past the continuation's end
    log_z: torch.Tensor
    entropy: torch.Tensor
    length: torch.Tensor  # [R]


def continuation_lengths(continuations: torch.Tensor, eos_token_id: Optional[int], stop_strings=()) -> torch.Tensor:
    """Per row: the continuation's length up to and including its first EOS or stop string (all of it without)."""
    return torch.tensor([terminal_length(row, eos_token_id, stop_strings) or len(row) for row in continuations.tolist()],
                        dtype=torch.long)


@torch.no_grad()
def recompute(model, sequences: torch.Tensor, prompt_mask: torch.Tensor, alpha: float,
              eos_token_id: Optional[int], top_k=None, top_p=None, stop_strings=()) -> Fresh:
    """The per-position numbers of `sequences` (left-padded prompt + continuation), one row at a time."""
    width = prompt_mask.shape[1]
    sequences = sequences.cpu()
    continuations = sequences[:, width:]
    length = continuation_lengths(continuations, eos_token_id, stop_strings)
    proposal = PowerProposal(alpha, top_k, top_p)
    out = torch.zeros(3, *continuations.shape)
    for row in range(sequences.shape[0]):
        n = int(length[row])
        prompt = sequences[row, :width][prompt_mask[row].bool()]
        ids = torch.cat([prompt, continuations[row, :n]])[None]
        logits = model(ids.to(model.device)).logits[0, len(prompt) - 1 : len(prompt) - 1 + n].cpu()
        log_p = proposal.log_probs(logits)
        p = log_p.exp()
        out[0, row, :n] = log_p.gather(1, continuations[row, :n, None]).squeeze(1)
        out[1, row, :n] = torch.logsumexp(alpha * log_p, dim=-1)
        out[2, row, :n] = -torch.where(p > 0, p * log_p, torch.zeros_like(p)).sum(-1)
    return Fresh(*out, length)
