"""The draw that ecmh's logits processors make inside the vLLM engine, for either model-runner generation.

vLLM has two model runners with two logits-processor interfaces (`processor.py` for the V1 runner,
`processor_v2.py` for Model Runner V2, the default on GPUs since vLLM 0.32). Both hand this module
the logits rows of ecmh's requests with each row's request seed and the sequence position of the
token being sampled, and write back what `draw` returns, so the math cannot drift between them:

1. `log p` with `ecmh.scoring.PowerProposal.log_probs` and `log Z`, `H` with
   `PowerProposal.normaliser_and_entropy`: the very code of the transformers backend;
2. the token from `q = p^alpha / Z`, by inverting its CDF at `ecmh.keyed.uniforms(seed, position)`: a
   fixed function of the request's seed (its proposal's key, `ecmh.keyed`) and the position, so
   the draw does not depend on how vLLM batches, chunks, reorders or re-runs the step;
3. the draw and its numbers encoded as processed logits (`channel.encode`).
"""

import torch

from ... import keyed
from ...scoring import PowerProposal
from . import channel


def draw(logits: torch.Tensor, proposal: PowerProposal, seed: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
    """Processed logits `[R, V]` for raw logits `[R, V]`: each row's token drawn from `p^alpha / Z` at
    `keyed.uniforms(seed, position)`, with its `log p`, `log Z` and `H` (`channel.encode`)."""
    log_p = proposal.log_probs(logits)  # float32, truncated as on the transformers backend
    log_z, entropy = proposal.normaliser_and_entropy(log_p)
    tempered = proposal.alpha * log_p
    cdf = torch.cumsum(torch.exp(tempered - log_z[:, None]), dim=-1)
    uniform = keyed.uniforms(seed.to(cdf.device), position.to(cdf.device))
    # the first token whose cumulative mass exceeds u * total: never a token of probability 0
    token = torch.searchsorted(cdf, (uniform * cdf[:, -1])[:, None], right=True).squeeze(1)
    positions = torch.arange(cdf.shape[1], device=cdf.device)
    last_possible = torch.where(tempered > float("-inf"), positions, 0).amax(dim=1)
    token = torch.minimum(token, last_possible)  # u * total rounded up to the total
    numbers = torch.stack([log_p.gather(1, token[:, None]).squeeze(1), log_z, entropy], dim=1)
    return channel.encode(token, numbers, logits.shape[1], logits.dtype)
