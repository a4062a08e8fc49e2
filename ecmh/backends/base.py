"""The contract between the sampler and a model runtime (a backend); `factory.for_model` picks one.

`ecmh.generate` drives a backend through one generation:

    backend = backends.for_model(model)          # once per call (or the caller's own Backend)
    forwarded = backend.prepare(ids, mask, ...)  # the prompts; positions forwarded per row
    backend.start(starting, start, cap, answer, seed)  # rows whose next proposal begins
    decoded = backend.step(rng)                  # one decoding step; None until some proposal finishes
    backend.commit(accepted, start)              # accepted proposals become their rows' answers
    backend.select_rows(keep)                    # rows whose schedule is over leave the batch
    backend.close()                              # always, also after an error

`start` .. `select_rows` repeat until every row is done (an `ecmh.algorithm.Algorithm` says what to start, commit
and keep). Optional capabilities have a default on the contract, which a backend subclasses: `adopt(rows, source)`
(multiple-try ECMH: rows take another row's finished proposal before `commit`; by default through `select_rows`, a
backend overrides it to copy less), `speculate(rows,
start, cap, answer, seed)` (arguments as for `start`) names the proposal each of these rows starts next if the one
in flight is rejected, which a backend may decode ahead where it has room, as long as what every row decodes
stays the same (`ecmh.backends.vllm.backend`); by default it does nothing. The answer itself
lives in the sampler's `State` (`ecmh.kernel`) and nowhere else: a backend reads the prefix a
proposal keeps from the `answer` passed to `start`, and keeps only what it derives from it for its
own cache (e.g. which cache column holds each answer position), updated in `commit`.

Per-position numbers. For every token it decodes, a backend returns, computed in float32 from the
logits of the step that drew it, `log p(token)`, `log Z` and the entropy `H` of `p`, as
`ecmh.scoring.PowerProposal` defines them (`log_probs`, `scores`): one formula for every backend.

A new backend (llama.cpp, SGLang, ...) is one module with a subclass of `Backend`, plus one `(accepts, build)`
entry in `factory.RUNTIMES`. Nothing here imports a model framework (`tests/test_architecture.py` imports this
module with transformers and vLLM blocked).
"""

from typing import Optional, Protocol, runtime_checkable

import torch

from ..suffix import Suffix
from ..scoring import PowerProposal
from ..model_defaults import ModelDefaults
from ..terminal import Terminal

NAN_LOGITS = "The model produced NaN logits; check its weights and dtype (try float32)."


@runtime_checkable
class Backend(Protocol):
    """A model runtime that decodes one proposal per row, rows finishing at different times.

    Attributes:
        device: where the sampler keeps its state (and where `prepare`'s inputs are moved).
        context_length: the model's context in positions (None: unknown, not checked).
        defaults: what the model's own generation settings fill in where the caller sets nothing
            (`ecmh.model_defaults.ModelDefaults`: EOS ids, pad id, default length, plain fields).
        vocab_size: the width of the model's logits.
        tokenizer: the engine's own tokenizer, for `stop_strings` (None: the caller passes one).
    """

    device: torch.device
    context_length: Optional[int]
    defaults: ModelDefaults
    vocab_size: int
    tokenizer: object

    def prepare(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, *, proposal: PowerProposal,
                terminal: Terminal) -> torch.Tensor:
        """Take the left-padded prompts `[R, P]` for one generation, whose answers end by `terminal`'s rule
        (at most `terminal.max_new_tokens` tokens); returns the positions run through the model per row so
        far (the prompt's tokens if it was encoded now, else 0)."""

    def start(self, starting: torch.Tensor, start: torch.Tensor, cap: torch.Tensor, answer: torch.Tensor,
              seed: torch.Tensor) -> None:
        """Rows where `starting` (`[R]` bool) is True begin a proposal at answer position `start` that runs
        until the first token that ends the answer (`prepare`'s `terminal`, the kept prefix included) or
        answer length `cap`, keeping `answer[r, :start[r]]` (`[R, T]`, the sampler's tokens). `seed` (`[R]`
        int64 in [0, 2**62)) is each proposal's own seed: a backend whose rows do not step in lockstep draws
        the proposal's tokens from it (`ecmh.keyed`), so they do not depend on when the row runs; a backend
        that steps all rows together may draw from `step`'s generator instead."""

    def step(self, rng: torch.Generator) -> Optional[tuple[torch.Tensor, Suffix]]:
        """Decode; when some proposals have finished, return `(finished [R] bool, the proposals of all rows)`,
        else None. Column `j` of a row's `Suffix` is answer position `start + j`. Which rows finish together
        may depend on timing (an engine that runs on its own); what each row decodes may not."""

    def commit(self, accepted: torch.Tensor, start: torch.Tensor) -> None:
        """The finished proposals of rows where `accepted` is True are now their answers from `start` on."""

    def select_rows(self, keep: torch.Tensor) -> None:
        """Keep only these rows (a 1-D index tensor), in this order. An index may repeat: the row is then
        copied into several rows, each with its own copy of everything the backend holds for it (its
        cache included), which go on independently."""

    def close(self) -> None:
        """Release what the generation held (hooks, caches); the backend may be prepared again."""

    def adopt(self, rows: torch.Tensor, source: torch.Tensor) -> None:
        """Rows where `rows` (`[R]` bool) is True take row `source[r]`'s finished proposal, with everything the backend
        holds for it, in place of their own (which is dropped); `commit` follows. Each source shares the kept prefix
        with the rows that take its proposal. The default copies the whole row through `select_rows`."""
        index = torch.arange(len(rows), device=rows.device)
        self.select_rows(torch.where(rows, source, index))

    def speculate(self, rows: torch.Tensor, start: torch.Tensor, cap: torch.Tensor, answer: torch.Tensor,
                  seed: torch.Tensor) -> None:
        """Optional: the proposal each row where `rows` is True starts next if the one in flight is rejected (arguments
        as for `start`), to decode ahead where there is room. The default does not."""

    def reject_early(self, rows: torch.Tensor, bound, rule) -> None:
        """Optional: the proposals just started where `rows` is True (`[R]` bool) may end as soon as
        `rule.rejected_now(bound, start, suffix)` holds for them after a token (an `ecmh.kernel.EarlyRejection` and
        `ecmh.kernel.Bound`: the proposal can no longer be accepted); they are then returned as finished, and the
        sampler rejects them exactly as if they had been decoded to the end. Rows not named here, and every row of a
        backend that keeps the default (which stops nothing), decode to their end."""
