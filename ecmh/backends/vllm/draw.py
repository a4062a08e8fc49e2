"""The draw that ecmh's logits processors make inside the vLLM engine, for either model-runner generation.

vLLM has two model runners with two logits-processor interfaces (`processor.py` for the V1 runner,
`processor_v2.py` for Model Runner V2, the default on GPUs since vLLM 0.32). Both hand this module
the logits rows of ecmh's requests with each row's request seed and the sequence position of the
token being sampled, and write back what `draw` returns, so the math cannot drift between them:

1. `log p`, `log Z`, `H` and the token from `q = p^alpha / Z` with `ecmh.scoring.PowerProposal.draw`, the
   very code of the transformers backend;
2. the token's uniform is `ecmh.keyed.uniforms(seed, position)`: a fixed function of the request's seed (its
   proposal's key, `ecmh.keyed`) and the position, so the draw does not depend on how vLLM batches, chunks,
   reorders or re-runs the step;
3. the draw and its numbers encoded as processed logits (`channel.encode`).
"""

import torch

from ... import keyed
from ...scoring import PowerProposal
from . import channel


def draw(logits: torch.Tensor, proposal: PowerProposal, seed: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
    """Processed logits `[R, V]` for raw logits `[R, V]`: each row's token drawn from `p^alpha / Z` at
    `keyed.uniforms(seed, position)`, with its `log p`, `log Z` and `H` (`channel.encode`)."""
    drawn = proposal.draw(logits, keyed.uniforms(seed.to(logits.device), position.to(logits.device)))
    numbers = torch.stack([drawn.log_p, drawn.log_z, drawn.entropy], dim=1)
    return channel.encode(drawn.token, numbers, logits.shape[1], logits.dtype)
