"""The block-wise schedule (Karan & Du, Algorithm 1), run row by row on top of the ECMH kernel.

Each row follows its own schedule: for block k with cap `T_k = min(k * B, T)`, extend the
answer by up to B proposal tokens, then make N MH proposals over answers of length `<= T_k`;
after a block whose MH steps leave the answer ending in a terminal event (`ecmh.terminal`; or after the
last block) the row is done. Rows do not wait for each other: when a row's proposal finishes it is settled and the
row's next proposal starts at the next decoding step, so rows with short proposals never sit
in the batch as padding while others decode long ones; finished rows leave the batch. Each row's cuts,
decisions and engine seeds come from its own key (`ecmh.keyed`), so what a row draws does not depend on
which rows finish together.

A backend that can decode ahead (`speculate`, e.g. vLLM's) is told, whenever an MH proposal starts, the
proposal that would follow its rejection: a rejection leaves the state as it is, so that proposal is known
before the decision.
"""

from typing import Callable, NamedTuple, Optional

import torch

from . import keyed, kernel
from .backends.base import Backend
from .terminal import Terminal

StepCallback = Callable[[kernel.Info], None]


class Schedule(NamedTuple):
    """Where each row is in its schedule."""

    block: torch.Tensor  # [R] long: 0-based block index
    mh_index: torch.Tensor  # [R] long: 0 while the block's extension decodes, i while its i-th MH proposal does
    start: torch.Tensor  # [R] long: where the proposal in flight starts
    cap: torch.Tensor  # [R] long: the block's length cap
    chain_key: torch.Tensor  # [R] long: the row's key (`ecmh.keyed`), drawn once
    key: torch.Tensor  # [R] long: the key of the proposal in flight (`proposal_key`)


def proposal_key(chain_key: torch.Tensor, block: torch.Tensor, mh_index: torch.Tensor, mcmc_steps: int) -> torch.Tensor:
    """The key of a row's proposal: its chain's key folded with the proposal's number."""
    return keyed.fold(chain_key, block * (mcmc_steps + 1) + mh_index)


def advance(
    schedule: Schedule, state: kernel.State, finished: torch.Tensor,
    *, block_size: int, mcmc_steps: int, terminal: Terminal,
) -> tuple[Schedule, torch.Tensor]:
    """The next proposal of each row whose proposal finished, and which rows are done."""
    max_new_tokens = state.tokens.shape[1]
    mh_index = schedule.mh_index + finished.long()
    block_over = finished & (mh_index > mcmc_steps)
    done = block_over & (terminal.ends(state.tokens, state.length) | (schedule.cap >= max_new_tokens))
    block = schedule.block + block_over.long()
    mh_index = torch.where(block_over, 0, mh_index)
    cap = torch.clamp((block + 1) * block_size, max=max_new_tokens)
    key = proposal_key(schedule.chain_key, block, mh_index, mcmc_steps)
    next_start = torch.where(mh_index == 0, state.length, kernel.propose_cut(key, state))
    return Schedule(block, mh_index, torch.where(finished, next_start, schedule.start), cap, schedule.chain_key, key), done


def run(
    rng: torch.Generator,
    algorithm: kernel.Algorithm,
    backend: Backend,
    forwarded: torch.Tensor,
    *,
    block_size: int,
    mcmc_steps: int,
    terminal: Terminal,
    on_step: Optional[StepCallback] = None,
) -> kernel.State:
    """Run every row's schedule from an empty answer (`forwarded`: what each row's prompt cost); returns the final
    state of every row.

    `on_step(info)` is called whenever proposals finish; `info` covers the rows still running, and
    `info.row` says which row of the batch each entry is.
    """
    state = algorithm.init(forwarded.shape[0], terminal.max_new_tokens, forwarded)
    batch_row = torch.arange(state.length.shape[0], device=state.length.device)  # running row -> batch row
    zeros = torch.zeros_like(batch_row)
    chain_key = keyed.keys(rng, len(batch_row)).to(batch_row.device)
    schedule = Schedule(zeros, zeros, zeros, torch.full_like(batch_row, min(block_size, state.tokens.shape[1])),
                        chain_key, proposal_key(chain_key, zeros, zeros, mcmc_steps))
    backend.start(torch.ones_like(batch_row, dtype=torch.bool), schedule.start, schedule.cap, state.tokens,
                  kernel.engine_seed(schedule.key))
    speculate = getattr(backend, "speculate", None)
    result = state
    while True:
        decoded = backend.step(rng)
        if decoded is None:
            continue
        finished, suffix = decoded
        proposals = kernel.Proposals(finished, schedule.mh_index == 0, schedule.start, suffix)
        state, info = algorithm.step(schedule.key, state, proposals)
        backend.commit(finished & info.accepted, schedule.start)
        if on_step is not None:
            on_step(info._replace(row=batch_row, block=schedule.block))
        schedule, done = advance(schedule, state, finished, block_size=block_size, mcmc_steps=mcmc_steps,
                                 terminal=terminal)
        starting = finished & ~done
        backend.start(starting, schedule.start, schedule.cap, state.tokens, kernel.engine_seed(schedule.key))
        if speculate is not None:
            mh = starting & (schedule.mh_index > 0)
            if_rejected, ends = advance(schedule, state, mh, block_size=block_size, mcmc_steps=mcmc_steps,
                                        terminal=terminal)
            speculate(mh & ~ends, if_rejected.start, if_rejected.cap, state.tokens, kernel.engine_seed(if_rejected.key))
        if not done.any():
            continue
        leaving = done.nonzero().squeeze(1)
        result = kernel.State(*(r.index_copy(0, batch_row[leaving], s[leaving]) for r, s in zip(result, state)))
        staying = (~done).nonzero().squeeze(1)
        if staying.numel() == 0:
            return result
        state, schedule = kernel.State(*(s[staying] for s in state)), Schedule(*(s[staying] for s in schedule))
        batch_row = batch_row[staying]
        backend.select_rows(staying)
