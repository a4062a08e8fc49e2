"""`ECMHLogitsProcessor`: runs inside the vLLM engine, in whichever process holds the sampler.

vLLM loads it by name (`engine.PROCESSOR_FQCN`) in each engine process. It is declared not
argmax-invariant, so vLLM applies it to the raw logits, converted to float32, before penalties
and temperature. For each ecmh request (tagged through `SamplingParams.extra_args`) it

1. computes `log p` with `ecmh.scoring.PowerProposal.log_probs` and `log Z`, `H` with
   `PowerProposal.normaliser_and_entropy`: the very code of the transformers backend;
2. draws the token from `q = p^alpha / Z` by inverting its CDF at a uniform that depends only on
   the request's seed and the position (the seed is drawn from ecmh's generator per request), so
   the draw does not depend on how vLLM batches, chunks or re-runs the step;
3. writes the draw and its numbers into the row's logits (`channel.encode`).
"""

import torch
from vllm.v1.sample.logits_processor import LogitsProcessor

from ...scoring import PowerProposal
from . import channel


class _Request:
    """One ecmh request in vLLM's persistent batch."""

    __slots__ = ("proposal", "uniforms", "output_ids")

    def __init__(self, spec, max_tokens: int, output_ids: list):
        alpha, top_k, top_p, seed = spec
        self.proposal = PowerProposal(float(alpha), int(top_k) or None, float(top_p))
        generator = torch.Generator().manual_seed(int(seed))
        self.uniforms = torch.rand(max_tokens, generator=generator, dtype=torch.float64)
        self.output_ids = output_ids  # vLLM's running list: its length is the position being sampled


class ECMHLogitsProcessor(LogitsProcessor):
    """Draws each ecmh request's token from `p^alpha / Z` and records `log p`, `log Z`, `H` (module docstring)."""

    def __init__(self, vllm_config, device: torch.device, is_pin_memory: bool):
        self.requests: dict[int, _Request] = {}

    @classmethod
    def validate_params(cls, sampling_params) -> None:
        spec = (sampling_params.extra_args or {}).get(channel.EXTRA_ARGS_KEY)
        if spec is None:
            return
        if not (isinstance(spec, (list, tuple)) and len(spec) == 4):
            raise ValueError(f"extra_args[{channel.EXTRA_ARGS_KEY!r}] must be [alpha, top_k, top_p, seed], got {spec!r}.")
        if sampling_params.temperature != 0.0 or (sampling_params.logprobs or 0) < channel.LOGPROBS:
            raise ValueError(f"ecmh requests are greedy (temperature=0) and ask for {channel.LOGPROBS} logprobs.")

    def is_argmax_invariant(self) -> bool:
        return False  # it picks the token: vLLM must apply it to the raw logits, before temperature

    def update_state(self, batch_update) -> None:
        if batch_update is None:
            return
        for index in batch_update.removed:
            self.requests.pop(index, None)
        for index, params, _, output_ids in batch_update.added:
            spec = (params.extra_args or {}).get(channel.EXTRA_ARGS_KEY)
            if spec is None:
                self.requests.pop(index, None)
            else:
                self.requests[index] = _Request(spec, params.max_tokens, output_ids)
        for a, b, direction in batch_update.moved:
            moving, replaced = self.requests.pop(a, None), self.requests.pop(b, None)
            if moving is not None:
                self.requests[b] = moving
            if replaced is not None and direction.name == "SWAP":
                self.requests[a] = replaced

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        if not self.requests:
            return logits
        groups: dict[tuple, list[int]] = {}
        for index, request in self.requests.items():
            if index < logits.shape[0]:
                p = request.proposal
                groups.setdefault((p.alpha, p.top_k, p.top_p), []).append(index)
        for indices in groups.values():
            self._draw(logits, indices)
        return logits

    def _draw(self, logits: torch.Tensor, indices: list[int]) -> None:
        requests = [self.requests[i] for i in indices]
        proposal = requests[0].proposal
        rows = torch.tensor(indices, device=logits.device)
        log_p = proposal.log_probs(logits[rows])  # float32, truncated as on the transformers backend
        log_z, entropy = proposal.normaliser_and_entropy(log_p)
        tempered = proposal.alpha * log_p
        cdf = torch.cumsum(torch.exp(tempered - log_z[:, None]), dim=-1)
        uniform = torch.tensor(
            [r.uniforms[min(len(r.output_ids), len(r.uniforms) - 1)].item() for r in requests],
            dtype=torch.float32, device=logits.device,
        )
        # first token whose cumulative mass exceeds u * total: never a token of probability 0
        token = torch.searchsorted(cdf, (uniform * cdf[:, -1])[:, None], right=True).squeeze(1)
        positions = torch.arange(cdf.shape[1], device=logits.device)
        last_possible = torch.where(tempered > float("-inf"), positions, 0).amax(dim=1)
        token = torch.minimum(token, last_possible)  # u * total rounded up to the total
        numbers = torch.stack([log_p.gather(1, token[:, None]).squeeze(1), log_z, entropy], dim=1)
        logits[rows] = channel.encode(token, numbers, logits.shape[1], logits.dtype)
