"""The re-encoding baseline of the speed benchmark's KV-reuse speed-up (`benchmarks/speed.py`): ECMH with each
proposal's prompt and kept prefix run through the model again, as the reference implementations make a proposal."""

import torch

from ecmh import compat
from ecmh.backends.transformers import TransformersBackend


class ReencodingBackend(TransformersBackend):
    """The re-encoding baseline (how the reference implementations make a proposal), for the KV-reuse speed-up:
    each new proposal's prompt and kept prefix go through the model again and the first token's logits come
    from that. The same chain up to float rounding, and slower; a baseline, not a way to sample."""

    def prepare(self, input_ids, attention_mask, **kwargs):
        forwarded = super().prepare(input_ids, attention_mask, **kwargs)
        self.kept_tokens = torch.zeros_like(self.answer_column)
        return forwarded

    def start(self, starting, start, cap, answer, seed):
        super().start(starting, start, cap, answer, seed)
        self.kept_tokens = torch.where(starting[:, None], answer, self.kept_tokens)

    def _first_token_logits(self, rows: torch.Tensor) -> torch.Tensor:
        """Prompt + kept prefix of each starting row, through the model from scratch."""
        start = self.start_at[rows]
        sequence = torch.cat([self.prompt_ids[rows], self.kept_tokens[rows]], dim=1)
        kept = torch.arange(self.kept_tokens.shape[1], device=self.device)[None, :] < start[:, None]
        valid = torch.cat([self.prompt_mask[rows].bool(), kept], dim=1)
        order = torch.sort(valid.long(), dim=1, stable=True).indices  # valid tokens to the right, in order
        width = self.prompt_ids.shape[1] + int(start.max())
        ids, mask = sequence.gather(1, order)[:, -width:], valid.gather(1, order)[:, -width:].long()
        self.buffer.forwarded[rows] += width
        return self._forward(ids, mask, (mask.cumsum(1) - 1).clamp_min(0), compat.new_kv_cache(self.model))[0]

    def select_rows(self, keep):
        super().select_rows(keep)
        self.kept_tokens = self.kept_tokens[keep]
