"""ECMH as an algorithm of `ecmh.generate`: its options (`SamplerConfig`) and the block-wise schedule (Karan & Du,
Algorithm 1) that drives a backend and the MH kernel (`ecmh.kernel`) row by row.

Each row follows its own schedule: for block k with cap `T_k = min(k * B, T)`, extend the
answer by up to B proposal tokens, then make N MH proposals over answers of length `<= T_k`;
after a block whose MH steps leave the answer ending in a terminal event (`ecmh.terminal`; or after the
last block) the row is done. Rows do not wait for each other: when a row's proposal finishes it is settled and the
row's next proposal starts at the next decoding step, so rows with short proposals never sit
in the batch as padding while others decode long ones; finished rows leave the batch. Each row's cuts,
decisions and engine seeds come from its own key (`ecmh.keyed`), so what a row draws does not depend on
which rows finish together.

A backend that can decode ahead (`Backend.speculate`, e.g. vLLM's) is told, whenever an MH proposal starts, the
proposal that would follow its rejection: a rejection leaves the state as it is, so that proposal is known
before the decision.
"""

import dataclasses
import sys
from typing import Callable, NamedTuple, Optional

import torch
from tqdm.auto import tqdm

from . import keyed, kernel, multiple_try, rows
from .backends.base import Backend
from .checks import check_int
from .history import HistoryRecorder
from .options import CutChoice, option
from .outputs import ChainStats, MHOutput, continuations
from .terminal import Terminal

BLOCKS_PER_ANSWER = 16  # the papers' block size: B = T / 16 ...
MIN_DEFAULT_BLOCK = 16  # ... but not below 16 tokens (or the whole answer): short tries stay quick


@dataclasses.dataclass(frozen=True, kw_only=True)
class SamplerConfig(CutChoice):
    """The options of ECMH (`ecmh.generate(..., algorithm="mh")`, the default).

    Example:
        >>> SamplerConfig(alpha=4.0, mcmc_steps=2).block_size_for(max_new_tokens=128)
        16
        >>> SamplerConfig().block_size_for(max_new_tokens=3072)
        192
        >>> SamplerConfig(alpha=0.5)
        Traceback (most recent call last):
        ...
        ValueError: `alpha` must be a finite number >= 1 (the power of p^alpha), got 0.5.
    """

    mcmc_steps: int = option(10, "MH steps after each block (0: plain low-temperature sampling)")
    block_size: Optional[int] = option(None, "tokens added per block (None: max_new_tokens // 16, at least 16, "
                                             "or all of max_new_tokens)")
    early_rejection: bool = option(True, "stop decoding an MH proposal once it can no longer be accepted (exact: the "
                                         "same chain; docs/sampler-math.md, 'Exact early rejection'; tries=1 only)")
    tries: int = option(1, "candidate suffixes decoded side by side per MH step, one selected by weight and accepted "
                           "with the multiple-try ratio (exact; 1: ECMH; docs/sampler-math.md, 'Multiple-try ECMH')")
    on_step: Optional[Callable] = option(None, "on_step(info) whenever proposals finish decoding (`ecmh.Info`)", cli=False)
    record_history: bool = option(False, "return every settled proposal as out.history (needs "
                                          "return_dict_in_generate=True)", cli=False)
    progress: bool = option(False, "a progress bar on stderr counting the MH proposals settled", cli=False)

    def __post_init__(self):
        super().__post_init__()
        check_int("mcmc_steps", self.mcmc_steps, 0)
        check_int("tries", self.tries, 1, "(1: one candidate per MH step, plain ECMH)")
        if self.block_size is not None:
            check_int("block_size", self.block_size, 1, "or None (max_new_tokens // 16, at least 16)")

    def block_size_for(self, max_new_tokens: int) -> int:
        """Tokens per block for answers of up to `max_new_tokens` tokens."""
        if self.block_size is None:
            return min(max_new_tokens, max(MIN_DEFAULT_BLOCK, max_new_tokens // BLOCKS_PER_ANSWER))
        if self.block_size > max_new_tokens:
            raise ValueError(
                f"`block_size` must be an integer in [1, max_new_tokens={max_new_tokens}], got {self.block_size!r} "
                "(None means max_new_tokens // 16, at least 16)."
            )
        return self.block_size


DEFAULTS = SamplerConfig()


class Info(NamedTuple):
    """What `on_step` receives whenever proposals finish: the kernel's settlement and where each entry is."""

    step: kernel.Info  # per running row: finished, extension, cut, accepted, log_ratio (and its terms), ...
    row: torch.Tensor  # [R] long: each entry's row in the returned batch (rows whose schedule is over leave)
    block: torch.Tensor  # [R] long: each row's 0-based block


class Schedule(NamedTuple):
    """Where each row is in its schedule."""

    block: torch.Tensor  # [R] long: 0-based block index
    mh_index: torch.Tensor  # [R] long: 0 while the block's extension decodes, i while its i-th MH proposal does
    start: torch.Tensor  # [R] long: where the proposal in flight starts
    cap: torch.Tensor  # [R] long: the block's length cap
    chain_key: torch.Tensor  # [R] long: the row's key (`ecmh.keyed`), drawn once
    key: torch.Tensor  # [R] long: the key of the proposal in flight (`proposal_key`)


class Run(NamedTuple):
    """The running chains' answers and schedules, and every chain's answer as it stood when the chain left."""

    state: kernel.State
    schedule: Schedule
    batch_row: torch.Tensor  # [C] long: running chain -> row of the returned batch
    result: kernel.State
    decoding: torch.Tensor  # [C * K] bool: backend rows whose candidate is still decoding (K = `tries`)


def proposal_key(chain_key: torch.Tensor, block: torch.Tensor, mh_index: torch.Tensor, mcmc_steps: int) -> torch.Tensor:
    """The key of a row's proposal: its chain's key folded with the proposal's number."""
    return keyed.fold(chain_key, block * (mcmc_steps + 1) + mh_index)


class BlockSchedule:
    """ECMH built from its options for one call (`build`): the kernel and the schedule with their parameters closed
    over, driven by `ecmh.generate` through `init`, `step` and `output`.

    With `tries=K` each chain is K rows of the backend's batch, `chain * K + k`, all holding the chain's answer: an
    MH step decodes a candidate in each (`ecmh.multiple_try`), a block extension in the first only; the chain settles
    once all its candidates finished, and every row takes the answer it settled on (`Backend.adopt`)."""

    def __init__(self, options: SamplerConfig, generation):
        self.options = options
        self.tries = options.tries
        self.block_size = options.block_size_for(generation.max_new_tokens)
        diagnostics = options.record_history or isinstance(options.on_step, HistoryRecorder)
        arguments = (options.alpha, options.cut_distribution, generation.top_k, generation.top_p)
        if self.tries == 1:  # the one-candidate kernel: ECMH as it was, with exact early rejection
            self.kernel = kernel.build(*arguments, diagnostics=diagnostics)
        else:
            self.kernel = multiple_try.build(*arguments, tries=self.tries, diagnostics=diagnostics)
        stops_early = options.early_rejection and kernel.grows(options.cut_distribution) and self.tries == 1
        self.early_rejection = kernel.EarlyRejection(options.cut_distribution) if stops_early else None
        self.proposal = self.kernel.proposal
        self.recorder = HistoryRecorder() if options.record_history else None
        if options.record_history and not generation.return_dict_in_generate:
            raise ValueError("`record_history=True` returns the history in the output object: pass "
                             "`return_dict_in_generate=True` too.")
        self.callbacks = [c for c in (options.on_step, self.recorder) if c is not None]
        self.bar = None

    def prompt_rows(self, num_return_sequences: int) -> int:
        """Rows each prompt starts with: one chain per returned answer."""
        return num_return_sequences

    def advance(self, schedule: Schedule, state: kernel.State, finished: torch.Tensor,
                 terminal: Terminal) -> tuple[Schedule, torch.Tensor]:
        """The next proposal of each row whose proposal finished (its cut drawn by the kernel), and which rows are
        done."""
        mcmc_steps, max_new_tokens = self.options.mcmc_steps, state.tokens.shape[1]
        mh_index = schedule.mh_index + finished.long()
        block_over = finished & (mh_index > mcmc_steps)
        done = block_over & (terminal.ends(state.tokens, state.length) | (schedule.cap >= max_new_tokens))
        block = schedule.block + block_over.long()
        mh_index = torch.where(block_over, 0, mh_index)
        cap = torch.clamp((block + 1) * self.block_size, max=max_new_tokens)
        key = proposal_key(schedule.chain_key, block, mh_index, mcmc_steps)
        next_start = torch.where(mh_index == 0, state.length, self.kernel.propose_cut(key, state))
        return Schedule(block, mh_index, torch.where(finished, next_start, schedule.start), cap, schedule.chain_key,
                        key), done

    def _rows(self, x: torch.Tensor) -> torch.Tensor:
        """A per-chain tensor for each of the chain's K backend rows."""
        return rows.spread(x, self.tries)

    def _start(self, backend: Backend, chains: torch.Tensor, schedule: Schedule, state: kernel.State,
               announce: str = "start") -> torch.Tensor:
        """Start (or, with `announce="speculate"`, name) the next proposal of these chains: an MH step's K
        candidates, an extension in the chain's first row. Returns the backend rows it concerns."""
        first = torch.arange(len(chains) * self.tries, device=chains.device) % self.tries == 0
        starting = self._rows(chains) & (first | self._rows(schedule.mh_index > 0))
        seeds = self.kernel.engine_seed(multiple_try.candidate_keys(schedule.key, self.tries)).view(-1)
        getattr(backend, announce)(starting, self._rows(schedule.start), self._rows(schedule.cap),
                                   self._rows(state.tokens), seeds)
        return starting

    def init(self, rng: torch.Generator, backend: Backend, forwarded: torch.Tensor, terminal: Terminal) -> Run:
        """An empty answer for every chain (`forwarded`: what each prompt row cost), its first block started; with
        `tries=K` each prompt row is copied into K backend rows first."""
        if self.options.progress:
            self.bar = tqdm(desc="ECMH proposals", unit="proposal", file=sys.stderr, leave=False)
        state = self.kernel.init(forwarded.shape[0], terminal.max_new_tokens, forwarded)
        batch_row = torch.arange(state.length.shape[0], device=state.length.device)
        if self.tries > 1:
            rows.keep(backend, self._rows(batch_row))
        zeros = torch.zeros_like(batch_row)
        chain_key = keyed.keys(rng, len(batch_row)).to(batch_row.device)
        schedule = Schedule(zeros, zeros, zeros, torch.full_like(batch_row, min(self.block_size, state.tokens.shape[1])),
                            chain_key, proposal_key(chain_key, zeros, zeros, self.options.mcmc_steps))
        decoding = self._start(backend, torch.ones_like(batch_row, dtype=torch.bool), schedule, state)
        return Run(state, schedule, batch_row, state, decoding)

    def _take(self, backend: Backend, accepted: torch.Tensor, start: torch.Tensor, info: kernel.Info) -> None:
        """The accepted proposals become their chains' answers in every row of the chain."""
        if info.tries is not None:
            chains = len(accepted)
            source = self._rows(torch.arange(chains, device=accepted.device) * self.tries + info.tries.selected)
            taking = self._rows(accepted) & (source != torch.arange(chains * self.tries, device=accepted.device))
            backend.adopt(taking, source)
        backend.commit(self._rows(accepted), self._rows(start))

    def step(self, rng: torch.Generator, run: Run, backend: Backend, terminal: Terminal, decoded: tuple) -> tuple[Run, bool]:
        """Settle the proposals that finished, start the rows' next ones; rows whose schedule is over leave.
        Returns the run and whether every row is done."""
        state, schedule, batch_row, result, decoding = run
        finished_rows, suffix = decoded
        decoding = decoding & ~finished_rows
        finished = rows.all_in(finished_rows, decoding, self.tries)
        proposals = kernel.Proposals(finished, schedule.mh_index == 0, schedule.start, suffix)
        state, info = self.kernel.step(schedule.key, state, proposals)
        self._take(backend, finished & info.accepted, schedule.start, info)
        self._report(Info(info, batch_row, schedule.block))
        schedule, done = self.advance(schedule, state, finished, terminal)
        starting = finished & ~done
        decoding = decoding | self._start(backend, starting, schedule, state)
        mh = starting & (schedule.mh_index > 0)
        if self.early_rejection is not None:
            backend.reject_early(mh, kernel.bound(schedule.key, state, schedule.start, mh), self.early_rejection)
        if_rejected, ends = self.advance(schedule, state, mh, terminal)
        self._start(backend, mh & ~ends, if_rejected, state, announce="speculate")
        if not done.any():
            return Run(state, schedule, batch_row, result, decoding), False
        leaving = done.nonzero().squeeze(1)
        result = rows.put(result, batch_row[leaving], rows.take(state, leaving))
        staying = (~done).nonzero().squeeze(1)
        if staying.numel() == 0:
            return Run(state, schedule, batch_row, result, decoding), True
        kept = rows.keep(backend, staying, self.tries)
        return Run(rows.take(state, staying), rows.take(schedule, staying), batch_row[staying], result,
                   decoding[kept]), False

    def _report(self, info: Info) -> None:
        for callback in self.callbacks:
            callback(info)
        if self.bar is not None:
            self.bar.update(int((info.step.finished & ~info.step.extension).sum()))  # MH proposals, as stats count

    def output(self, rng: torch.Generator, run: Run, prompts: torch.Tensor, generation):
        """Every row's answer (`MHOutput` with `return_dict_in_generate`, else the sequences)."""
        if self.bar is not None:
            self.bar.close()
        state = run.result
        sequences, trace = continuations(state, prompts, generation.pad_token_id)
        if not generation.return_dict_in_generate:
            return sequences
        stats = ChainStats(
            log_p=trace.log_p.sum(1),
            tokens_decoded=state.tokens_decoded,
            tokens_forwarded=state.tokens_forwarded,
            sequential_passes=state.sequential_passes + 1,  # the prompt in one pass
            acceptance_rate=state.accepted.float() / state.proposals.float(),
            proposals=state.proposals,
            accepted=state.accepted,
            early_rejections=state.early_rejections,
            tries=torch.full_like(state.proposals, self.tries),
        )
        return MHOutput(sequences, stats, trace, self.recorder.history() if self.recorder is not None else None)


def build(options: SamplerConfig, generation) -> BlockSchedule:
    """ECMH for one call of `ecmh.generate` (`generation`: its resolved `ecmh.settings.GenerationSettings`)."""
    return BlockSchedule(options, generation)
