"""`ECMHLogitsProcessorV2`: ecmh's draw inside a vLLM engine that runs Model Runner V2.

vLLM >= 0.32 runs Model Runner V2 on GPUs by default; it loads only subclasses of its own
`LogitsProcessor` (`vllm.v1.worker.gpu.sample.logits_processor`). Its processors keep per-request
state by persistent request slot (`add_request`, slots are recycled) and see each step's rows
through a `LogitsContext`: `idx_mapping_np` maps a row to its slot on the host, `pos` holds each
row's input position on the device. `apply` runs on float32 logits before temperature, so an ecmh
row gets `draw.draw` of its raw logits, exactly as under the V1 runner (`processor.py`).

Per step the host work is numpy over the batch (which rows are ecmh's, grouped by proposal
settings), the draw is tensor code, and nothing waits on the device. Speculative decoding (more
than one logits row per request) is refused: ecmh's requests pick their token themselves.
"""

import numpy as np
import torch
from vllm.v1.worker.gpu.sample.logits_processor import LogitsProcessor

from ...scoring import PowerProposal
from . import channel, draw

NOT_ECMH = -1
SPECULATIVE_DECODING = (
    "ecmh's requests draw their own tokens, one logits row per request and step: run the engine without "
    "speculative decoding."
)


class ECMHLogitsProcessorV2(LogitsProcessor):
    """Draws each ecmh request's token from `p^alpha / Z` and records `log p`, `log Z`, `H` (module docstring)."""

    def __init__(self, vllm_config, req_states):
        self.kind = np.full(req_states.max_num_reqs, NOT_ECMH, dtype=np.int64)  # per slot: index into proposals
        self.seed = np.zeros(req_states.max_num_reqs, dtype=np.int64)
        self.proposals: list[PowerProposal] = []
        self._kinds: dict[tuple, int] = {}

    @classmethod
    def validate_params(cls, sampling_params) -> None:
        channel.request_spec_of(sampling_params)

    def add_request(self, req_idx: int, sampling_params) -> bool:
        spec = channel.request_spec_of(sampling_params)
        if spec is None:
            self.kind[req_idx] = NOT_ECMH
            return False
        alpha, top_k, top_p, seed = spec
        key = (float(alpha), int(top_k) or None, float(top_p))
        if key not in self._kinds:
            self._kinds[key] = len(self.proposals)
            self.proposals.append(PowerProposal(*key))
        self.kind[req_idx], self.seed[req_idx] = self._kinds[key], int(seed)
        return True

    def apply(self, logits: torch.Tensor, ctx) -> torch.Tensor:
        slots = ctx.idx_mapping_np
        kinds = self.kind[slots]
        if not (kinds != NOT_ECMH).any():
            return logits
        if logits.shape[0] != len(slots):
            raise RuntimeError(SPECULATIVE_DECODING)
        for kind in np.unique(kinds[kinds != NOT_ECMH]).tolist():
            rows = np.flatnonzero(kinds == kind)
            seed = torch.from_numpy(self.seed[slots[rows]])
            index = torch.from_numpy(rows).to(logits.device)
            logits[index] = draw.draw(logits[index], self.proposals[kind], seed, ctx.pos[index] + 1)
        return logits
