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
    """

    def __init__(self, model, proposal: PowerProposal, eos_token_ids: tuple, pad_token_id: int):
        self.model = model
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

    def decode(self, start: torch.Tensor, cap: int, generator: torch.Generator) -> Suffix:
        rows = start.shape[0]
        prompt_width = self.prompt_mask.shape[1]
        kept = torch.arange(self.answer_width, device=self.device)[None, :] < start[:, None]
        mask = torch.cat(
            [self.prompt_mask, kept.long(), torch.ones(rows, cap, dtype=torch.long, device=self.device)], dim=1
        )
        width = prompt_width + self.answer_width
        first_position = self.prompt_length + start
        start_hidden = self.hidden.gather(1, start.view(rows, 1, 1).expand(-1, 1, self.hidden.shape[2]))[:, 0]
        logits = self.head(start_hidden)
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
        return Suffix(token, log_p, log_z, entropy, length, torch.full_like(length, len(draws)))

    def commit(self, accepted: torch.Tensor, start: torch.Tensor, cap: int) -> None:
        prompt_width, answer_width = self.prompt_mask.shape[1], self.answer_width
        taken_from = torch.where(accepted, start, cap)  # rows that reject take nothing new

        def place(x):
            answer = splice(x[:, :, prompt_width : prompt_width + answer_width], x[:, :, prompt_width + answer_width :],
                            taken_from, cap, dim=2)
            return torch.cat([x[:, :, :prompt_width], answer], dim=2)

        compat.map_kv_(self.cache, place)
        size = self.hidden.shape[1]
        proposal_hidden = torch.stack(self._proposal_hidden, dim=1)
        self.hidden = splice(self.hidden, proposal_hidden, torch.where(accepted, start, size), size)
        self.answer_width = cap

    def select_rows(self, rows: torch.Tensor) -> None:
        compat.map_kv_(self.cache, lambda x: x[rows])
        self.prompt_mask, self.prompt_length, self.hidden = self.prompt_mask[rows], self.prompt_length[rows], self.hidden[rows]
