"""The transformers backend: one forward per decoding step for all rows, each row's kept prefix
served from its KV cache, rows starting new proposals whenever their last one finishes.

Cache columns, per row: the prompt (left-padded to P), then one column per decoding step,
appended for all rows at once. A row's current answer is scattered over these columns:
`answer_column[r, t]` says where answer position t lives (derived from the answer, updated in
`commit`). A proposal from cut m attends to the prompt, to the columns of answer positions `< m`
and to every column from its own first one on (masked attention, position ids continuing from
m); when it is accepted, the answer map points at its columns. Nothing in the cache is ever run
through the model again. When the cache reaches `capacity` columns it is compacted: each row's
live columns are gathered to the front.

The first token after a cut m needs `p(. | prompt, y_<m)`, whose logits were made long ago: the
backend keeps the final hidden state of every column (the input of the model's output
embedding) and re-applies the output embedding to it, one small matmul per new proposal.
"""

from typing import Optional

import torch

from .. import compat, keyed
from ..kernel import Bound, Suffix, where_rows
from ..scoring import PowerProposal
from ..model_defaults import ModelDefaults
from ..terminal import Terminal
from .base import NAN_LOGITS, Backend


class TransformersBackend(Backend):
    """Runs ECMH's decoding on a transformers causal LM (see `ecmh.backends.base.Backend`).

    Args:
        model: a transformers causal language model with full attention in every layer.

    Example:
        >>> import ecmh
        >>> model, tokenizer = ecmh.load_model("smollm2-135m-instruct")  # doctest: +SKIP
        >>> ecmh.generate(TransformersBackend(model), tokenizer("2 + 2 =", return_tensors="pt").input_ids)  # doctest: +SKIP
    """

    def __init__(self, model):
        self.model = model
        self.device = model.device
        self.context_length = getattr(model.config.get_text_config(), "max_position_embeddings", None)
        self.defaults = ModelDefaults.read(lambda name: getattr(model.generation_config, name, None))
        self.head = model.get_output_embeddings()
        if self.head is None:
            raise ValueError(f"{type(model).__name__} has no output embedding: ecmh needs a causal LM head.")
        self.vocab_size = self.head.weight.shape[0]
        self.tokenizer = None
        self._extra_forward_kwargs = {"logits_to_keep": 1} if compat.accepts_logits_to_keep(model) else {}
        self._cache_keyword = compat.cache_keyword(model)
        self._hook = None

    def _capture_head_input(self, module, args, output):
        self._head_input = args[0]

    def close(self) -> None:
        """Release the hook on the model's output embedding and the cache."""
        if self._hook is not None:
            self._hook.remove()
        self._hook = self.cache = None

    def _forward(self, input_ids, attention_mask, position_ids, cache):
        out = self.model(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
            use_cache=True, **{self._cache_keyword: cache}, **self._extra_forward_kwargs,
        )
        return out.logits[:, -1], self._head_input[:, -1]

    def prepare(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, *, proposal: PowerProposal,
                terminal: Terminal) -> torch.Tensor:
        """Encode the left-padded prompts once, padding left out; returns the positions forwarded per row."""
        rows, width = input_ids.shape
        max_new_tokens = terminal.max_new_tokens
        self.proposal, self.terminal = proposal, terminal
        self.window = terminal.window(torch.zeros(rows, 1, dtype=torch.long, device=self.device),
                                      torch.zeros(rows, dtype=torch.long, device=self.device))
        self.cache = compat.new_kv_cache(self.model)
        self._hook = self.head.register_forward_hook(self._capture_head_input)
        self.prompt_ids, self.prompt_mask = input_ids, attention_mask.long()
        self.prompt_length = self.prompt_mask.sum(1)
        logits, hidden = self._encode_prompts(input_ids)
        if torch.isnan(logits).any():
            raise ValueError(NAN_LOGITS)
        if not torch.allclose(self.head(hidden).float(), logits.float(), rtol=1e-3, atol=1e-3):
            raise ValueError(
                f"{type(self.model).__name__} post-processes the output embedding's logits (e.g. soft-capping or "
                "scaling), so ecmh cannot rebuild a cut position's distribution from its hidden state."
            )
        # Between compactions each step appends one column, and a compaction keeps at most
        # P + 2T (prompt, answer map, widest proposal in flight): T + 1 more steps always fit.
        self.capacity = width + 3 * max_new_tokens + 1
        self.column_hidden = hidden.new_zeros(rows, self.capacity, hidden.shape[-1])
        self.column_hidden[:, width - 1] = hidden
        self.width = width  # columns in the cache
        self.answer_column = torch.zeros(rows, max_new_tokens, dtype=torch.long, device=self.device)
        self.buffer = Suffix.empty(rows, max_new_tokens, self.device)
        self.start_at, self.cap, self.first_column, self.proposal_column, self.seed = (
            torch.zeros(rows, dtype=torch.long, device=self.device) for _ in range(5))
        self.starting = torch.zeros(rows, dtype=torch.bool, device=self.device)
        self.in_flight = torch.zeros(rows, dtype=torch.bool, device=self.device)  # rows with a proposal decoding
        self.bound = Bound(torch.full((rows,), float("-inf"), device=self.device), self.buffer.entropy.clone())
        self.early_rejection = None  # `reject_early`'s rule, once given
        self.logits = logits
        return self.prompt_length.clone()

    def _encode_prompts(self, input_ids: torch.Tensor):
        """Rows grouped by prompt length, each group forwarded without padding; their keys and values
        are placed right-aligned in the one cache (the padding columns stay masked)."""
        rows, width = input_ids.shape
        lengths = self.prompt_length.tolist()
        logits = hidden = layers = None
        for length in sorted(set(lengths)):
            group = torch.tensor([row for row, n in enumerate(lengths) if n == length], device=self.device)
            cache, ids = compat.new_kv_cache(self.model), input_ids[group, width - length :]
            positions = torch.arange(length, device=self.device).expand(len(group), -1)
            group_logits, group_hidden = self._forward(ids, torch.ones_like(ids), positions, cache)
            group_layers = compat.kv_tensors(cache)
            if logits is None:
                logits = group_logits.new_zeros(rows, group_logits.shape[-1])
                hidden = group_hidden.new_zeros(rows, group_hidden.shape[-1])
                layers = [tuple(x.new_zeros(rows, x.shape[1], width, x.shape[3]) for x in kv) for kv in group_layers]
            logits[group], hidden[group] = group_logits, group_hidden
            for full, part in zip(layers, group_layers):
                for full_x, part_x in zip(full, part):
                    full_x[group, :, width - length :] = part_x
        compat.fill_kv_cache(self.cache, layers)
        return logits, hidden

    def start(self, starting: torch.Tensor, start: torch.Tensor, cap: torch.Tensor, answer: torch.Tensor,
              seed: torch.Tensor) -> None:
        """(`Backend.start`.) Each token is drawn at `ecmh.keyed.uniforms(seed, position)`, its proposal's seed and
        its position in the sequence (prompt included), as vLLM's in-engine draw does: what a row draws does not
        depend on which rows share the step nor on when other rows' proposals end."""
        self.seed = torch.where(starting, seed, self.seed)
        self.start_at = torch.where(starting, start, self.start_at)
        self.cap = torch.where(starting, cap, self.cap)
        self.first_column = torch.where(starting, self.width, self.first_column)
        self.proposal_column = torch.where(starting, self.width, self.proposal_column)  # kept after it finishes
        self.buffer = self.buffer._replace(length=torch.where(starting, 0, self.buffer.length),
                                           forwarded=torch.where(starting, 0, self.buffer.forwarded))
        self.window = where_rows(starting, self.terminal.window(answer, start), self.window)
        self.bound = self.bound._replace(threshold=self.bound.threshold.masked_fill(starting, float("-inf")))
        self.starting = self.starting | starting
        self.in_flight = self.in_flight | starting
        self._may_be_starting = True  # lets `step` skip looking for starting rows after steps that started none

    def reject_early(self, rows: torch.Tensor, bound: Bound, rule) -> None:
        """(`Backend.reject_early`: checked after every token, in the step's one host synchronisation.)"""
        self.bound = where_rows(rows, bound, self.bound)
        self.early_rejection = rule

    def _first_token_logits(self, rows: torch.Tensor) -> torch.Tensor:
        """Logits at the cut of each starting row, from the hidden state stored for the position before it."""
        start = self.start_at[rows]
        previous = self.answer_column[rows].gather(1, (start - 1).clamp_min(0)[:, None]).squeeze(1)
        column = torch.where(start > 0, previous, self.prompt_mask.shape[1] - 1)
        return self.head(self.column_hidden[rows, column])

    def _attention_mask(self) -> torch.Tensor:
        """Per row: prompt, the columns of answer positions before the cut, the proposal's own columns."""
        rows, answer_width = self.answer_column.shape
        mask = torch.zeros(rows, self.width + 1, dtype=torch.long, device=self.device)
        mask[:, : self.prompt_mask.shape[1]] = self.prompt_mask
        kept = torch.arange(answer_width, device=self.device)[None, :] < self.start_at[:, None]
        mask.scatter_reduce_(1, self.answer_column, kept.long(), reduce="amax")
        return mask | (torch.arange(self.width + 1, device=self.device)[None, :] >= self.first_column[:, None]).long()

    def step(self, rng: torch.Generator) -> Optional[tuple[torch.Tensor, Suffix]]:
        rows = self.starting.nonzero().squeeze(1) if self._may_be_starting else ()
        if len(rows):
            first = self._first_token_logits(rows)
            self.logits = self.logits.index_put((rows,), first.to(self.logits.dtype))
            self.starting = torch.zeros_like(self.starting)
        self._may_be_starting = False
        # a row whose proposal ended and was not started again idles: it is forwarded with the others (one batch),
        # but what it draws is kept nowhere and the column it adds is attended to by nothing that stays
        self.first_column = torch.where(self.in_flight, self.first_column, self.width)
        position = self.prompt_length + self.start_at + self.buffer.length
        draw = self.proposal.draw(self.logits, keyed.uniforms(self.seed, position))
        self.buffer = where_rows(self.in_flight, self.buffer.append(draw), self.buffer)
        self.window, ended = self.terminal.step(self.window, draw.token)
        finished = ended | (self.start_at + self.buffer.length >= self.cap)
        if self.early_rejection is not None:
            finished = finished | self.early_rejection.rejected_now(self.bound, self.start_at, self.buffer)
        finished = finished & self.in_flight
        self.in_flight = self.in_flight & ~finished
        self.logits, hidden = self._forward(draw.token[:, None], self._attention_mask(), position[:, None], self.cache)
        self.column_hidden[:, self.width] = hidden
        self.width += 1
        any_finished, bad_logits = torch.stack([finished.any(), torch.isnan(self.logits).any()]).tolist()
        if bad_logits:
            raise ValueError(NAN_LOGITS)
        if self.width == self.capacity:
            self._compact()
        return (finished, self.buffer) if any_finished else None

    def commit(self, accepted: torch.Tensor, start: torch.Tensor) -> None:
        position = torch.arange(self.answer_column.shape[1], device=self.device)[None, :]
        offset = position - start[:, None]
        from_proposal = accepted[:, None] & (offset >= 0) & (offset < self.buffer.length[:, None])
        self.answer_column = torch.where(from_proposal, self.proposal_column[:, None] + offset, self.answer_column)

    def adopt(self, rows: torch.Tensor, source: torch.Tensor) -> None:
        """(`Backend.adopt`.) Copies only the columns written since the sources' proposals began: the kept prefix's
        are the same in a row and its source (both hold the chain's answer), and nothing later is attended to by the
        row once its own proposal is dropped. Host synchronisations: which rows take, and from which column."""
        taking = rows.nonzero().squeeze(1)
        if taking.numel() == 0:
            return
        giving = source[taking]
        first = int(self.proposal_column[giving].min())

        def copy_columns(x: torch.Tensor) -> torch.Tensor:  # keys or values, [rows, heads, columns, dim]
            x[taking, :, first:] = x[giving, :, first:]
            return x

        compat.map_kv_(self.cache, copy_columns)
        self.column_hidden[taking, first:] = self.column_hidden[giving, first:]
        self.buffer = Suffix(*(x.index_copy(0, taking, x[giving]) for x in self.buffer))
        self.proposal_column[taking] = self.proposal_column[giving]

    def _compact(self) -> None:
        """Gather each row's live columns (prompt, answer, proposal in flight) to the front of the cache."""
        prompt_width, answer_width = self.prompt_mask.shape[1], self.answer_column.shape[1]
        rows = self.answer_column.shape[0]
        # A proposal in flight owns every column from its first to the last, and attends to all of them:
        # the last `widest` columns are kept as they are, so each row's proposal stays contiguous and
        # ends at the new width (a shorter one starts later; the columns before it are never attended).
        in_flight = self.width - self.first_column
        widest = int(in_flight.max())
        columns = torch.cat([
            torch.arange(prompt_width, device=self.device).expand(rows, -1),
            self.answer_column,
            torch.arange(self.width - widest, self.width, device=self.device).expand(rows, -1),
        ], dim=1)
        compat.map_kv_(self.cache, lambda x: x.gather(2, columns[:, None, :, None].expand(-1, x.shape[1], -1, x.shape[3])))
        gathered = self.column_hidden.gather(1, columns[:, :, None].expand(-1, -1, self.column_hidden.shape[2]))
        self.column_hidden[:, : columns.shape[1]] = gathered
        self.answer_column = prompt_width + torch.arange(answer_width, device=self.device).expand(rows, -1).clone()
        self.proposal_column -= self.width - columns.shape[1]  # the last columns moved as one block
        self.width = columns.shape[1]
        self.first_column = self.width - in_flight

    def select_rows(self, keep: torch.Tensor) -> None:
        compat.map_kv_(self.cache, lambda x: x[keep])
        for name in ("prompt_ids", "prompt_mask", "prompt_length", "column_hidden", "answer_column", "start_at", "cap",
                     "first_column", "proposal_column", "seed", "starting", "in_flight", "logits"):
            setattr(self, name, getattr(self, name)[keep])
        self.window = type(self.window)(*(x[keep] for x in self.window))
        self.buffer = Suffix(*(x[keep] for x in self.buffer))
        self.bound = Bound(*(x[keep] for x in self.bound))
