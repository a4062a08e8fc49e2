"""The draw that ecmh's logits processors make inside the vLLM engine, for either model-runner generation.

vLLM has two model runners with two logits-processor interfaces (`processor.py` for the V1 runner,
`processor_v2.py` for Model Runner V2, the default on GPUs since vLLM 0.32). Both hand this module
the logits rows of ecmh's requests with each row's request seed and the sequence position of the
token being sampled, and write back what `draw` returns, so the math cannot drift between them:

1. `log p` with `ecmh.scoring.PowerProposal.log_probs` and `log Z`, `H` with
   `PowerProposal.normaliser_and_entropy`: the very code of the transformers backend;
2. the token from `q = p^alpha / Z`, by inverting its CDF at `uniforms(seed, position)`: a fixed
   function of the request's seed (drawn from ecmh's generator per request) and the position, so
   the draw does not depend on how vLLM batches, chunks, reorders or re-runs the step;
3. the draw and its numbers encoded as processed logits (`channel.encode`).
"""

import torch

from ...scoring import PowerProposal
from . import channel

_MASK32 = (1 << 32) - 1
UNIFORM_BITS = 24  # float32 holds every multiple of 2**-24 in [0, 1) exactly


def _times(x: torch.Tensor, constant: int) -> torch.Tensor:
    """`x * constant mod 2**32` for `x` in [0, 2**32), in int64 without overflow (16-bit halves)."""
    low, high = x & 0xFFFF, x >> 16
    return (low * constant + (((high * constant) & 0xFFFF) << 16)) & _MASK32


def _mix(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash with full avalanche (Wellons' "lowbias32")."""
    x = x ^ (x >> 16)
    x = _times(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _times(x, 0x846CA68B)
    return x ^ (x >> 16)


def uniforms(seed: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
    """One uniform in [0, 1) per row (float32, a multiple of `2**-UNIFORM_BITS`), a fixed function of
    the row's int64 `seed` (any value in [0, 2**62)) and `position`: tensor code, no host sync."""
    seed, position = seed.long(), position.long()
    hashed = _mix((seed & _MASK32) ^ 0x9E3779B9)  # the constants keep (0, 0) off the hash's fixed point 0
    hashed = _mix(hashed ^ ((seed >> 32) & _MASK32) ^ 0x85EBCA6B)
    hashed = _mix(hashed ^ (position & _MASK32))
    return (hashed >> (32 - UNIFORM_BITS)).float() * 2.0**-UNIFORM_BITS


def draw(logits: torch.Tensor, proposal: PowerProposal, seed: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
    """Processed logits `[R, V]` for raw logits `[R, V]`: each row's token drawn from `p^alpha / Z` at
    `uniforms(seed, position)`, with its `log p`, `log Z` and `H` (`channel.encode`)."""
    log_p = proposal.log_probs(logits)  # float32, truncated as on the transformers backend
    log_z, entropy = proposal.normaliser_and_entropy(log_p)
    tempered = proposal.alpha * log_p
    cdf = torch.cumsum(torch.exp(tempered - log_z[:, None]), dim=-1)
    uniform = uniforms(seed.to(cdf.device), position.to(cdf.device))
    # the first token whose cumulative mass exceeds u * total: never a token of probability 0
    token = torch.searchsorted(cdf, (uniform * cdf[:, -1])[:, None], right=True).squeeze(1)
    positions = torch.arange(cdf.shape[1], device=cdf.device)
    last_possible = torch.where(tempered > float("-inf"), positions, 0).amax(dim=1)
    token = torch.minimum(token, last_possible)  # u * total rounded up to the total
    numbers = torch.stack([log_p.gather(1, token[:, None]).squeeze(1), log_z, entropy], dim=1)
    return channel.encode(token, numbers, logits.shape[1], logits.dtype)
