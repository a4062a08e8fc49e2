"""The transformers backend: batched decoding with every row's kept prefix served from its KV cache.

Cache layout, per row: `[prompt (left-padded to P) | answer positions 0..cap-1]`. A proposal
from cut `m` masks the answer's positions `>= m` and appends its tokens after the answer
region, with position ids continuing from `m`; `commit` then gathers each row's new answer
back into place. Nothing already in the cache is run through the model again.

The first proposal token at a cut `m` needs `p(. | prompt, y_<m)`, whose logits were made long
ago: the backend keeps the final hidden state of every answer position (the input of the
model's output embedding) and re-applies the output embedding to it, one small matmul.
"""

import torch

from .. import compat
from ..kernel import Suffix, splice
from ..scoring import PowerProposal

_NAN_LOGITS = "The model produced NaN logits; check its weights and dtype (try float32)."


class TransformersBackend:
    """Runs ECMH's decoding on a transformers causal LM.

    Args:
        model: a transformers causal language model with full attention in every layer.
        proposal: the tempered proposal that samples and scores each token.
        eos_token_ids: tokens that end an answer (empty: answers run to the cap).
        pad_token_id: token fed for rows that have finished their proposal.
        reencode_prefix: benchmark baseline only: run prompt and kept prefix through the model
            again for every proposal, as the reference implementations do (same samples, slower).
    """

    def __init__(self, model, proposal: PowerProposal, eos_token_ids: tuple, pad_token_id: int,
                 reencode_prefix: bool = False):
        self.model = model
        self.reencode_prefix = reencode_prefix
        self.proposal = proposal
        self.pad_token_id = pad_token_id
        self.device = model.device
        self.eos_token_ids = torch.tensor(eos_token_ids, dtype=torch.long, device=self.device)
        self.head = model.get_output_embeddings()
        if self.head is None:
            raise ValueError(f"{type(model).__name__} has no output embedding: ecmh needs a causal LM head.")
        self.cache = compat.new_kv_cache(model)
        self._extra_forward_kwargs = {"logits_to_keep": 1} if compat.accepts_logits_to_keep(model) else {}
        self._head_input = None
        self._hook = self.head.register_forward_hook(self._capture_head_input)

    def _capture_head_input(self, module, args, output):
        self._head_input = args[0]

    def close(self) -> None:
        """Release the hook on the model's output embedding and the cache."""
        self._hook.remove()
        self.cache = None

    def _forward(self, input_ids, attention_mask, position_ids):
        out = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=self.cache,
            use_cache=True,
            **self._extra_forward_kwargs,
        )
        return out.logits[:, -1], self._head_input[:, -1]

    def prefill(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
        """Encode the left-padded prompts once; returns the positions forwarded per row."""
        rows, width = input_ids.shape
        self.prompt_ids = input_ids
        self.tokens = input_ids.new_zeros(rows, max_new_tokens)
        self.prompt_mask = attention_mask.long()
        self.prompt_length = self.prompt_mask.sum(1)
        positions = (self.prompt_mask.cumsum(1) - 1).clamp_min(0)
        logits, hidden = self._forward(input_ids, self.prompt_mask, positions)
        if torch.isnan(logits).any():
            raise ValueError(_NAN_LOGITS)
        recomputed = self.head(hidden).float()
        if not torch.allclose(recomputed, logits.float(), rtol=1e-3, atol=1e-3):
            raise ValueError(
                f"{type(self.model).__name__} post-processes the output embedding's logits (e.g. soft-capping or "
                "scaling), so ecmh cannot rebuild a cut position's distribution from its hidden state."
            )
        # hidden[:, t] gives p(. | prompt, y_<t) for answer position t.
        self.hidden = hidden.new_zeros(rows, max_new_tokens + 1, hidden.shape[-1])
        self.hidden[:, 0] = hidden
        self.answer_width = 0
        return torch.full((rows,), width, dtype=torch.long, device=self.device)

    def _kept_prefix_from_cache(self, start: torch.Tensor):
        """Attention mask over the cache (kept answer positions only) and the first token's logits."""
        rows = start.shape[0]
        kept = torch.arange(self.answer_width, device=self.device)[None, :] < start[:, None]
        start_hidden = self.hidden.gather(1, start.view(rows, 1, 1).expand(-1, 1, self.hidden.shape[2]))[:, 0]
        return torch.cat([self.prompt_mask, kept.long()], dim=1), self.head(start_hidden), start_hidden

    def _kept_prefix_reencoded(self, start: torch.Tensor):
        """The baseline: a fresh cache from prompt + kept prefix, left-padded together."""
        sequence = torch.cat([self.prompt_ids, self.tokens], dim=1)
        answer = torch.arange(self.tokens.shape[1], device=self.device)[None, :] < start[:, None]
        valid = torch.cat([self.prompt_mask.bool(), answer], dim=1)
        order = torch.sort(valid.long(), dim=1, stable=True).indices  # valid tokens to the right, in order
        width = self.prompt_ids.shape[1] + int(start.max())
        ids, mask = sequence.gather(1, order)[:, -width:], valid.gather(1, order)[:, -width:].long()
        self.cache = compat.new_kv_cache(self.model)
        logits, hidden = self._forward(ids, mask, (mask.cumsum(1) - 1).clamp_min(0))
        return mask, logits, hidden

    def decode(self, start: torch.Tensor, cap: int, generator: torch.Generator) -> Suffix:
        rows = start.shape[0]
        reencode = self._kept_prefix_reencoded if self.reencode_prefix else self._kept_prefix_from_cache
        mask, logits, start_hidden = reencode(start)
        width = mask.shape[1]
        mask = torch.cat([mask, torch.ones(rows, cap, dtype=torch.long, device=self.device)], dim=1)
        forwarded = width if self.reencode_prefix else 0
        first_position = self.prompt_length + start
        self._proposal_hidden = [start_hidden]
        draws, done = [], torch.zeros(rows, dtype=torch.bool, device=self.device)
        length = torch.zeros(rows, dtype=torch.long, device=self.device)
        for step in range(cap):
            draw = self.proposal(logits, generator)
            live = ~done
            draws.append(tuple(torch.where(live, x, torch.zeros_like(x)) for x in draw))
            length += live.long()
            done = done | torch.isin(draw.token, self.eos_token_ids) | (start + step + 1 >= cap)
            token = torch.where(live, draw.token, self.pad_token_id)
            logits, hidden = self._forward(token[:, None], mask[:, : width + step + 1], (first_position + step)[:, None])
            self._proposal_hidden.append(hidden)
            all_done, bad_logits = torch.stack([done.all(), torch.isnan(logits).any()]).tolist()
            if bad_logits:
                raise ValueError(_NAN_LOGITS)
            if all_done:
                break
        token, log_p, log_z, entropy = (torch.stack(column, dim=1) for column in zip(*draws))
        self._proposal_tokens = token
        return Suffix(token, log_p, log_z, entropy, length, torch.full_like(length, forwarded + len(draws)))

    def commit(self, accepted: torch.Tensor, start: torch.Tensor, cap: int) -> None:
        prompt_width, answer_width = self.prompt_mask.shape[1], self.answer_width
        taken_from = torch.where(accepted, start, cap)  # rows that reject take nothing new

        def place(x):
            answer = splice(x[:, :, prompt_width : prompt_width + answer_width], x[:, :, prompt_width + answer_width :],
                            taken_from, cap, dim=2)
            return torch.cat([x[:, :, :prompt_width], answer], dim=2)

        if not self.reencode_prefix:
            compat.map_kv_(self.cache, place)
        self.tokens = splice(self.tokens, self._proposal_tokens, taken_from, self.tokens.shape[1])
        size = self.hidden.shape[1]
        proposal_hidden = torch.stack(self._proposal_hidden, dim=1)
        self.hidden = splice(self.hidden, proposal_hidden, torch.where(accepted, start, size), size)
        self.answer_width = cap

    def select_rows(self, rows: torch.Tensor) -> None:
        compat.map_kv_(self.cache, lambda x: x[rows])
        for name in ("prompt_ids", "prompt_mask", "prompt_length", "hidden", "tokens"):
            setattr(self, name, getattr(self, name)[rows])
