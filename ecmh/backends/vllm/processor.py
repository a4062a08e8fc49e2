"""`ECMHLogitsProcessor`: ecmh's draw inside a vLLM engine that runs the V1 model runner.

vLLM loads it by name (`engine.PROCESSOR_FQCN`) in each engine process. It is declared not
argmax-invariant, so vLLM applies it to the raw logits, converted to float32, before penalties
and temperature. For each ecmh request (tagged through `SamplingParams.extra_args`) it writes
`draw.draw` of the row's logits (the token and its numbers, `draw.py`) over the row. Model Runner V2
has its own interface and its own class, `processor_v2.ECMHLogitsProcessorV2`, with the same draw.
"""

import torch
from vllm.v1.sample.logits_processor import LogitsProcessor

from ...scoring import PowerProposal
from . import channel, draw


class _Request:
    """One ecmh request in vLLM's persistent batch."""

    __slots__ = ("proposal", "seed", "prompt_length", "output_ids")

    def __init__(self, spec, prompt_length: int, output_ids: list):
        alpha, top_k, top_p, seed = spec
        self.proposal = PowerProposal(float(alpha), int(top_k) or None, float(top_p))
        self.seed, self.prompt_length = int(seed), prompt_length
        self.output_ids = output_ids  # vLLM's running list of the request's tokens so far

    @property
    def position(self) -> int:
        """The sequence position of the token being sampled."""
        return self.prompt_length + len(self.output_ids)


class ECMHLogitsProcessor(LogitsProcessor):
    """Draws each ecmh request's token from `p^alpha / Z` and records `log p`, `log Z`, `H` (module docstring)."""

    def __init__(self, vllm_config, device: torch.device, is_pin_memory: bool):
        self.requests: dict[int, _Request] = {}

    @classmethod
    def validate_params(cls, sampling_params) -> None:
        channel.request_spec_of(sampling_params)

    def is_argmax_invariant(self) -> bool:
        return False  # it picks the token: vLLM must apply it to the raw logits, before temperature

    def update_state(self, batch_update) -> None:
        if batch_update is None:
            return
        for index in batch_update.removed:
            self.requests.pop(index, None)
        for index, params, prompt_ids, output_ids in batch_update.added:
            spec = channel.request_spec_of(params)
            if spec is None:
                self.requests.pop(index, None)
            else:
                self.requests[index] = _Request(spec, len(prompt_ids or ()), output_ids)
        for a, b, direction in batch_update.moved:
            moving, replaced = self.requests.pop(a, None), self.requests.pop(b, None)
            if moving is not None:
                self.requests[b] = moving
            if replaced is not None and direction.name == "SWAP":
                self.requests[a] = replaced

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        groups: dict[tuple, list[int]] = {}
        for index, request in self.requests.items():
            if index < logits.shape[0]:
                p = request.proposal
                groups.setdefault((p.alpha, p.top_k, p.top_p), []).append(index)
        for indices in groups.values():
            requests = [self.requests[i] for i in indices]
            seed = torch.tensor([r.seed for r in requests], dtype=torch.long)
            position = torch.tensor([r.position for r in requests], dtype=torch.long)
            rows = torch.tensor(indices, device=logits.device)
            logits[rows] = draw.draw(logits[rows], requests[0].proposal, seed, position)
        return logits
