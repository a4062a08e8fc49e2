"""`VLLMBackend`: ECMH's decoding on a `vllm.LLM` built by `load_vllm`, streamed through the engine.

A row whose proposal starts becomes one engine request: its prompt plus its kept prefix `y_<m` as token ids
(never re-decoded text), with prefix caching on so the engine reuses the KV blocks it already holds for them.
`step` runs engine steps (`LLMEngine.step`) until an eighth of the rows in flight (at least one) have
finished their proposal (at EOS or the block's cap) and returns those; the sampler settles them together and
their next proposals join the engine's running batch at its next step, while the other rows decode on. So
rows do not wait for the longest proposal of an MH step, as they would if each step were one `llm.generate`
call, and the host's work (cut, accept/reject) runs once per group of rows, not once per engine step; the
engine core (its own process) keeps decoding the other rows meanwhile. Each proposal's tokens are drawn at uniforms fixed by
its seed (from its key, `ecmh.keyed`) and position, so what a row decodes does not depend on when the
engine schedules it. The per-token numbers come from the engine's logits processor (`processor.py`,
`channel.py`).

Where an answer ends is `ecmh.terminal.Terminal`'s rule, as on every backend. EOS ids go to vLLM as
stop tokens. vLLM's own `stop` sees only the text a request generates, not the kept prefix it was
given as prompt, so it would miss a stop string that straddles the cut: the backend cuts each
returned proposal at its first terminal event with `Terminal.first_end` over the whole answer, and
passes the stop strings to vLLM's `stop` only to end requests early (when the engine has its tokenizer). Where vLLM stops at a stop string that the tokens do
not hold (its detokenizer's text can differ from the tokens' bytes), the proposal is decoded on by a
second request, without vLLM's `stop`.

Speculation (`speculate`). A row's MH proposals run one after another, so once rows finish and leave the
batch the engine runs part-empty while the busiest rows decode on. The proposal that follows a rejection is
known before the decision (a rejection leaves the answer as it is, and the next proposal's cut and seed come
from the row's key), so the sampler names it, and the backend decodes it in an engine slot that no row's own
proposal needs: at most two requests per row in the engine (its proposal and the one after its rejection), and
no more than the engine's `max_num_seqs`. On a GPU a small batch's decoding step is bound by reading the weights,
so the extra requests cost little; on vLLM's CPU build each costs its share of the step (docs/vllm.md, "Speed").
When the row's next proposal turns out to be that one (same start, cap, seed and kept prefix: after an
acceptance too, when the new cut keeps a prefix the two answers share) the backend adopts the request,
finished or not; otherwise it aborts it. Each request's tokens depend
only on its prompt, seed and length, so the answers and every per-row number are the same with speculation
or without (tested); the per-row `tokens_forwarded` counts adopted work only, and `speculation` counts what
was discarded.

Early rejection (`reject_early`, docs/sampler-math.md "Exact early rejection"). An MH proposal given a bound is sent
as a streamed request (`LLMEngine.add_request` with vLLM's default cumulative outputs; `LLM.enqueue`, which the other
requests go through, asks for final outputs only), so the backend reads its tokens' numbers at every engine step, as
they come. Once per engine step it evaluates the running bound of all such rows at once
(`EarlyRejection.first_crossing`, one `kernel.running_bound` call on host tensors). A row whose bound fell below its
threshold at its k-th token has its request aborted and is returned as finished with exactly its first k tokens (the first k at which
`EarlyRejection.rejected_now` holds). An output can hold tokens not checked yet (a guess adopted after it finished or
while it decoded: guesses are sent before their bound is known, so they are not streamed and are read when they
finish), so the first crossing is looked for among all the tokens read, and a request that finished is cut there too.
So every proposal is returned exactly as the transformers backend returns it, whatever the engine's timing, and the
kernel settles the decision it would settle for the whole proposal. The row's `tokens_decoded` and `tokens_forwarded`
count its first k tokens; the tokens the engine returned after the crossing are counted in `early_stops`, not in any
row's stats (an engine core that runs ahead of the backend may decode a few more for an aborted request, which no
output shows).
"""

from collections import Counter
from typing import Optional

import torch

from ...kernel import Bound, Suffix, where_rows
from ...scoring import PowerProposal
from ...model_defaults import ModelDefaults
from ...terminal import Terminal
from ..base import NAN_LOGITS, Backend
from . import channel, engine
from .requests import EarlyStopCounts, Guess, SpeculationCounts, forwarded

SETTLE_GROUPS = 8  # `step` returns once 1/8 of the rows in flight (at least one) have finished


class VLLMBackend(Backend):
    """Runs ECMH's decoding on a `vllm.LLM` built by `ecmh.load_vllm` (see `ecmh.backends.base.Backend`).

    `tokens_forwarded` counts per request the prompt tokens the engine actually computed (prompt +
    kept prefix, less its prefix-cache hits) plus the tokens decoded.

    Args:
        llm: a `vllm.LLM` built by `ecmh.load_vllm`.
        speculative: decode, in engine slots no row needs, the proposal that follows a rejection (module
            docstring); the answers are the same either way. `speculation` counts what it did.

    Example:
        >>> llm = ecmh.load_vllm("smollm2-135m-instruct", dtype="float32")  # doctest: +SKIP
        >>> out = ecmh.generate(VLLMBackend(llm, speculative=False), [[1, 2, 3]], seed=0)  # doctest: +SKIP
    """

    def __init__(self, llm, *, speculative: bool = True):
        if not isinstance(speculative, bool):
            raise ValueError(f"VLLMBackend: `speculative` must be True or False, got {speculative!r}.")
        self.speculative = speculative
        if not engine.is_ready(llm):
            raise ValueError(engine.NOT_LOADED)
        self.llm = llm
        model_config = llm.llm_engine.model_config
        if model_config.get_vocab_size() < channel.LOGPROBS:
            raise ValueError(f"ecmh's vLLM backend needs a vocabulary of at least {channel.LOGPROBS} tokens.")
        self.device = torch.device("cpu")  # where ecmh's own state lives; the engine keeps its tensors
        self.context_length = model_config.max_model_len
        generation = model_config.try_get_generation_config()  # the model's generation_config.json, a dict
        self.defaults = ModelDefaults.read(
            lambda name: generation.get(name) if generation.get(name) is not None
            else getattr(model_config.hf_text_config, name, None) if name in ("eos_token_id", "pad_token_id") else None)
        self.vocab_size = model_config.get_vocab_size()
        self.tokenizer = None if model_config.skip_tokenizer_init else llm.get_tokenizer()
        self.max_num_seqs = llm.llm_engine.vllm_config.scheduler_config.max_num_seqs

    def close(self) -> None:
        """Abort what is still in the engine (guesses no row needed; everything after an error or ctrl-C), so the
        next call starts clean."""
        for guess in getattr(self, "guesses", {}).values():  # e.g. a last row's, named before it was done
            self._discard(guess)
        in_flight = list(getattr(self, "in_flight", {}))
        if in_flight:
            self.llm.llm_engine.abort_request(in_flight)
        self.in_flight, self.waiting, self.guesses, self.guessing, self.adopted = {}, [], {}, {}, []
        self.bounded = set()

    def prepare(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, *, proposal: PowerProposal,
                terminal: Terminal) -> torch.Tensor:
        """Keep the prompts without their padding; the engine encodes them with the first proposals (0 forwarded)."""
        rows, max_new_tokens = input_ids.shape[0], terminal.max_new_tokens
        self.proposal, self.terminal = proposal, terminal
        self._engine_stops = terminal.stop_strings is not None and self.tokenizer is not None  # needs its detokenizer
        self.prompts = [row[keep].tolist() for row, keep in zip(input_ids.cpu(), attention_mask.bool().cpu())]
        self.kept: list[list[int]] = [[] for _ in range(rows)]  # per row: the answer prefix its proposal keeps
        self.decoded: list[tuple[list, list]] = [([], []) for _ in range(rows)]  # per row: token ids, [log p, log Z, H]
        self.waiting: list[tuple[int, bool]] = []  # (row, use vLLM's stop strings): requests to send at the next step
        self.in_flight: dict[str, int] = {}  # engine request id -> row
        self.guesses: dict[int, Guess] = {}  # row -> the proposal decoded ahead for it (`speculate`)
        self.guessing: dict[str, int] = {}  # engine request id of a guess still decoding -> row
        self.adopted: list[tuple[int, object]] = []  # (row, finished RequestOutput): guesses adopted after they finished
        self.slots = min(2 * rows, self.max_num_seqs)  # requests in the engine at most, guesses included
        self.speculation = SpeculationCounts()
        self.buffer = Suffix.empty(rows, max_new_tokens, self.device)
        self.start_at, self.cap = torch.zeros(rows, dtype=torch.long), torch.zeros(rows, dtype=torch.long)
        self.seed = torch.zeros(rows, dtype=torch.long)
        self.offset = [0] * rows  # per row: its proposal's tokens read from requests before the one in flight
        # early rejection: per row the bound of its proposal (threshold -inf: none), its tokens read so far as tensors
        self.bound = Bound(torch.full((rows,), float("-inf")), torch.zeros(rows, max_new_tokens))
        self.bounded: set[int] = set()  # rows whose proposal was given a bound
        self.rule = None  # `reject_early`'s rule, once given
        self.live = Suffix.empty(rows, max_new_tokens, self.device)
        self.written = [0] * rows  # per row: the columns of `live` written
        self.early_stops = EarlyStopCounts()
        return torch.zeros(rows, dtype=torch.long, device=input_ids.device)

    def start(self, starting: torch.Tensor, start: torch.Tensor, cap: torch.Tensor, answer: torch.Tensor,
              seed: torch.Tensor) -> None:
        starting = starting.cpu()
        self.start_at = torch.where(starting, start.cpu(), self.start_at)
        self.cap = torch.where(starting, cap.cpu(), self.cap)
        self.seed = torch.where(starting, seed.cpu(), self.seed)
        self.buffer = self.buffer._replace(forwarded=torch.where(starting, 0, self.buffer.forwarded))
        self.bound = self.bound._replace(threshold=self.bound.threshold.masked_fill(starting, float("-inf")))
        answer = answer.cpu()
        for row in starting.nonzero().squeeze(1).tolist():
            self.kept[row] = answer[row, : self.start_at[row]].tolist()
            self.decoded[row] = ([], [])
            self.offset[row] = self.written[row] = 0
            self.bounded.discard(row)
            guess = self.guesses.pop(row, None)
            if guess is not None and guess.request is not None and (guess.start, guess.cap, guess.seed, guess.kept) == (
                    int(self.start_at[row]), int(self.cap[row]), int(self.seed[row]), self.kept[row]):
                self._adopt(row, guess)
            else:
                self._discard(guess)
                self.waiting.append((row, self._engine_stops))

    def reject_early(self, rows: torch.Tensor, bound: Bound, rule) -> None:
        """(`Backend.reject_early`.) The proposals just started in these rows (a guess adopted by `start` included)
        end at the first token at which their running bound falls below the threshold (module docstring)."""
        rows = rows.cpu()
        self.bound = where_rows(rows, Bound(bound.threshold.cpu().float(), bound.entropy.cpu().float()), self.bound)
        self.bounded.update(rows.nonzero().squeeze(1).tolist())
        self.rule = rule

    def speculate(self, rows: torch.Tensor, start: torch.Tensor, cap: torch.Tensor, answer: torch.Tensor,
                  seed: torch.Tensor) -> None:
        """Rows where `rows` is True name the proposal that follows a rejection of the one in flight (`start` ..
        `seed` as for `start`); it is decoded ahead when the engine has a slot to spare (module docstring)."""
        if not self.speculative:
            return
        answer = answer.cpu()
        for row in rows.cpu().nonzero().squeeze(1).tolist():
            self._discard(self.guesses.pop(row, None))
            self.guesses[row] = Guess(int(start[row]), int(cap[row]), int(seed[row]), answer[row, : start[row]].tolist())

    def _adopt(self, row: int, guess: Guess) -> None:
        self.speculation.adopted += 1
        if self.guessing.pop(guess.request, None) is not None:
            self.in_flight[guess.request] = row
        else:
            self.adopted.append((row, guess.output))

    def _discard(self, guess: Optional[Guess]) -> None:
        if guess is None or guess.request is None:
            return
        if self.guessing.pop(guess.request, None) is not None:
            self.llm.llm_engine.abort_request([guess.request])
        self.speculation.discarded += 1
        self.speculation.discarded_forwarded += guess.forwarded()

    def _request(self, prompt: list, max_tokens: int, seed: int, engine_stops: bool):
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        p = self.proposal
        params = SamplingParams(
            n=1, temperature=0.0, max_tokens=max_tokens, ignore_eos=True,
            stop_token_ids=list(self.terminal.eos_token_ids), logprobs=channel.LOGPROBS, skip_special_tokens=False,
            stop=list(self.terminal.stop_strings.stop_strings) if engine_stops else None, detokenize=engine_stops,
            extra_args={channel.EXTRA_ARGS_KEY: channel.request_spec(p.alpha, p.top_k, p.top_p, seed)},
        )
        return TokensPrompt(prompt_token_ids=prompt), params

    def _proposal_request(self, row: int, engine_stops: bool):
        decoded = self.decoded[row][0]
        return self._request(self.prompts[row] + self.kept[row] + decoded,
                             int(self.cap[row] - self.start_at[row]) - len(decoded), int(self.seed[row]), engine_stops)

    def _guess_request(self, row: int):
        guess = self.guesses[row]
        return self._request(self.prompts[row] + guess.kept, guess.cap - guess.start, guess.seed, self._engine_stops)

    def step(self, rng: torch.Generator) -> Optional[tuple[torch.Tensor, Suffix]]:
        finished, read = [], {}
        for row, output in self.adopted:
            if self._take(row, output):
                finished.append(row)
            if row in self.bounded:
                read[row] = output
        self.adopted = []
        finished += self._stop_at_crossings(read, finished)
        self._submit()
        if finished:  # guesses that had finished before their rows needed them
            return self._finished(finished)
        if not self.in_flight:
            raise RuntimeError("VLLMBackend.step: no proposal is in flight (start one first).")
        enough = -(-len(self.in_flight) // SETTLE_GROUPS)  # rows to settle together: amortises the host's work
        while self.in_flight and len(finished) < enough:
            if not self.llm.llm_engine.has_unfinished_requests():  # LLMEngine.step would wait forever
                raise RuntimeError(f"VLLMBackend.step: the engine holds none of the requests {sorted(self.in_flight)} "
                                   "that ecmh waits for (were they aborted from outside?).")
            read = {}  # rows with a bound -> their request's output of this engine step
            for output in self.llm.llm_engine.step():
                if output.request_id in self.guessing:
                    row = self.guessing[output.request_id]
                    self.guesses[row].output = output
                    if output.finished:
                        del self.guessing[output.request_id]
                elif output.request_id in self.in_flight:
                    row = self.in_flight[output.request_id]
                    if output.finished:
                        del self.in_flight[output.request_id]
                        if self._take(row, output):
                            finished.append(row)
                    elif row in self.bounded:
                        self._read(row, output)
                    if row in self.bounded:
                        read[row] = output
            finished += self._stop_at_crossings(read, finished)
            self._submit()  # proposals that decode on, and guesses in the slots that rows left
        return self._finished(finished) if finished else None

    def _submit(self) -> None:
        """Send the waiting rows' requests, then guesses while the engine has slots to spare; they join its
        running batch at its next step."""
        requests = [(row, self._proposal_request(row, engine_stops), self.in_flight) for row, engine_stops in self.waiting]
        for row, _ in self.waiting:
            self.offset[row] = len(self.decoded[row][0])  # what the request decodes comes after these
        self.waiting = []
        spare = self.slots - len(self.in_flight) - len(requests) - len(self.guessing)
        unsent = [row for row, guess in self.guesses.items() if guess.request is None][: max(spare, 0)]
        requests += [(row, self._guess_request(row), self.guessing) for row in unsent]
        if not requests:
            return
        # a proposal with a bound is streamed (an output at every engine step, to stop it at its crossing), the
        # others are sent as `LLM.enqueue` sends them (their final output only)
        streamed = [registry is self.in_flight and row in self.bounded for row, _, registry in requests]
        enqueued = [request for request, stream in zip(requests, streamed) if not stream]
        ids = iter(())
        if enqueued:
            ids = map(engine.request_id, self.llm.enqueue([prompt for _, (prompt, _), _ in enqueued],
                                                          [params for _, (_, params), _ in enqueued], use_tqdm=False))
        for (row, (prompt, params), registry), stream in zip(requests, streamed):
            if stream:
                request = str(next(self.llm.request_counter))  # an id from the LLM's own counter, as `enqueue` takes
                self.llm.llm_engine.add_request(request, prompt, params)  # `params.output_kind`: cumulative outputs
            else:
                request = next(ids)
            registry[request] = row
            if registry is self.guessing:
                self.guesses[row].request = request
                self.speculation.sent += 1

    def _take(self, row: int, output) -> bool:
        """Add a finished request's tokens to its row's proposal; False if the proposal must decode on."""
        completion, (ids, numbers) = output.outputs[0], self.decoded[row]
        self._read(row, output)  # (the tokens a row with a bound read as they came are not read again)
        self.buffer.forwarded[row] += forwarded(output)
        if self.terminal.stop_strings is not None and not self._cut_at_terminal_event(row, ids, numbers):
            if isinstance(completion.stop_reason, str) and len(ids) < self.cap[row] - self.start_at[row]:
                # vLLM's detokenizer saw a stop string the tokens do not hold (after a kept prefix that ends
                # inside a character it can emit prompt text again): decode on, without vLLM's `stop`
                self.waiting.append((row, False))
                return False
        return True

    def _read(self, row: int, output) -> None:
        """Add the tokens of a request's (cumulative) output that its row has not read yet, with their numbers."""
        completion, (ids, numbers) = output.outputs[0], self.decoded[row]
        seen = len(ids) - self.offset[row]
        new = list(completion.token_ids[seen:])
        numbers += [channel.decode(t, lp) for t, lp in zip(new, completion.logprobs[seen:])]
        ids += new

    def _stop_at_crossings(self, read: dict, finished: list) -> list[int]:
        """Cut the proposals of the rows in `read` (rows with a bound whose request gave an output now) at the first
        token at which their running bound is below the threshold; returns the rows this ends (their requests
        aborted), the others that cross having finished already. One evaluation of the bound for all rows."""
        if not read:
            return []
        rows = list(read)
        self._write_live(rows)
        index = torch.tensor(rows)
        suffix = Suffix(*(x[index] for x in self.live))
        first = self.rule.first_crossing(Bound(*(x[index] for x in self.bound)), self.start_at[index], suffix)
        crossed = first > 0
        if not crossed.any():
            return []
        ended, done, abort = [], set(finished), []
        request_of = {row: request for request, row in self.in_flight.items()}
        for row, k in zip(index[crossed].tolist(), first[crossed].tolist()):
            output, (ids, numbers) = read[row], self.decoded[row]
            if row not in done and self.terminal.stop_strings is not None:
                self._cut_at_terminal_event(row, ids, numbers)  # an answer that ended before the crossing ends there
            k = min(k, len(ids))
            del ids[k:], numbers[k:]
            past = len(output.outputs[0].token_ids) - (k - self.offset[row])  # returned after the crossing
            self.early_stops.past_crossing += past
            self.buffer.forwarded[row] += (0 if output.finished else forwarded(output)) - past
            if row in request_of:
                abort.append(request_of[row])
                del self.in_flight[request_of[row]]
                self.early_stops.aborted += 1
            if row not in done:
                ended.append(row)
        if abort:
            self.llm.llm_engine.abort_request(abort)
        self.waiting = [(row, stops) for row, stops in self.waiting if row not in ended]  # no decoding on
        return ended

    def _write_live(self, rows: list[int]) -> None:
        """Copy the rows' tokens read since their last check into `live` (one tensor write for all)."""
        where, columns, tokens, numbers = [], [], [], []
        for row in rows:
            ids, values = self.decoded[row]
            written = min(self.written[row], len(ids))
            where += [row] * (len(ids) - written)
            columns += range(written, len(ids))
            tokens += ids[written:]
            numbers += values[written:]
            self.written[row] = len(ids)
        if where:
            at = (torch.tensor(where), torch.tensor(columns))
            self.live.tokens[at] = torch.tensor(tokens, dtype=torch.long)
            for target, value in zip(self.live[1:4], torch.tensor(numbers, dtype=torch.float32).unbind(1)):
                target[at] = value
        self.live.length[rows] = torch.tensor([len(self.decoded[row][0]) for row in rows])

    def _finished(self, rows: list[int]) -> tuple[torch.Tensor, Suffix]:
        tokens, log_p, log_z, entropy, length, forwarded = (x.clone() for x in self.buffer)
        for row in rows:
            ids, numbers = self.decoded[row]
            values = torch.tensor(numbers, dtype=torch.float32).reshape(len(ids), channel.SLOTS)
            if torch.isnan(values).any():
                raise ValueError(NAN_LOGITS)
            tokens[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            log_p[row, : len(ids)], log_z[row, : len(ids)], entropy[row, : len(ids)] = values.unbind(1)
            length[row] = len(ids)
        self.buffer = Suffix(tokens, log_p, log_z, entropy, length, forwarded)
        finished = torch.zeros(len(self.prompts), dtype=torch.bool)
        finished[rows] = True
        return finished, self.buffer

    def _cut_at_terminal_event(self, row: int, ids: list[int], numbers: list) -> bool:
        """Cut the proposal after the token that ends its answer (`Terminal.first_end`); False if none does."""
        kept = self.kept[row]
        end = self.terminal.first_end(kept + ids, start=len(kept))
        if end is None:
            return False
        del ids[end - len(kept) + 1 :], numbers[end - len(kept) + 1 :]
        return True

    def commit(self, accepted: torch.Tensor, start: torch.Tensor) -> None:
        """Nothing to do: the engine's prefix cache follows the prompts it is sent (`start` reads the answer)."""

    def adopt(self, rows: torch.Tensor, source: torch.Tensor) -> None:
        """Nothing to copy: a row's next request is its prompt and the kept prefix read from the answer (`start`),
        whose KV blocks the engine's prefix cache shares between the rows that send it."""

    def select_rows(self, keep: torch.Tensor) -> None:
        """Keep these rows; a row in flight keeps its request (rows repeat only when none is in flight), a row
        kept once keeps its guess."""
        keep = keep.cpu().tolist()
        new_row = {old: new for new, old in enumerate(keep)}
        leaving = [request for request, row in self.in_flight.items() if row not in new_row]
        if leaving:
            self.llm.llm_engine.abort_request(leaving)
        self.in_flight = {request: new_row[row] for request, row in self.in_flight.items() if row in new_row}
        self.waiting = [(new_row[row], stops) for row, stops in self.waiting if row in new_row]
        self.adopted = [(new_row[row], output) for row, output in self.adopted if row in new_row]
        once = {row for row, times in Counter(keep).items() if times == 1}
        for row in set(self.guesses) - once:
            self._discard(self.guesses.pop(row))
        self.guesses = {new_row[row]: guess for row, guess in self.guesses.items()}
        self.guessing = {request: new_row[row] for request, row in self.guessing.items()}
        self.prompts, self.kept = [self.prompts[row] for row in keep], [self.kept[row] for row in keep]
        self.decoded = [(list(self.decoded[row][0]), list(self.decoded[row][1])) for row in keep]
        self.start_at, self.cap, self.seed = self.start_at[keep], self.cap[keep], self.seed[keep]
        self.buffer = Suffix(*(x[keep] for x in self.buffer))
        self.offset, self.written = [self.offset[row] for row in keep], [self.written[row] for row in keep]
        self.bound, self.live = Bound(*(x[keep] for x in self.bound)), Suffix(*(x[keep] for x in self.live))
        self.bounded = {new for new, old in enumerate(keep) if old in self.bounded}
