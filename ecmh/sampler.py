"""The block-wise schedule (Karan & Du, Algorithm 1) on top of the ECMH kernel.

For block k with cap `T_k = min(k * B, T)`: extend each row by up to B proposal tokens, then run
N MH steps over answers of length `<= T_k`. A row whose answer ends in EOS after a block is
finished; it leaves the batch so the remaining rows run without it.
"""

from typing import Callable, Optional

import torch

from . import kernel
from .cuts import CutDistribution

StepCallback = Callable[[int, int, Optional[kernel.Info]], None]


def ends_in(state: kernel.State, token_ids: torch.Tensor) -> torch.Tensor:
    """Rows whose answer is non-empty and ends in one of `token_ids`."""
    last = state.tokens.gather(1, (state.length - 1).clamp_min(0)[:, None]).squeeze(1)
    return (state.length > 0) & torch.isin(last, token_ids)


def block_caps(max_new_tokens: int, block_size: int) -> list[int]:
    return [min(cap, max_new_tokens) for cap in range(block_size, max_new_tokens + block_size, block_size)]


def run(
    rng: torch.Generator,
    state: kernel.State,
    backend: kernel.Backend,
    cut: CutDistribution,
    *,
    block_size: int,
    mcmc_steps: int,
    eos_token_ids: torch.Tensor,
    on_step: Optional[StepCallback] = None,
) -> kernel.State:
    """Run the whole schedule from empty answers; returns the final state of every row.

    `on_step(block, step, info)` is called after each block extension (`step == 0`, `info None`)
    and each MH step (`step >= 1`); the rows in `info` are those still running.
    """
    result = state
    rows = torch.arange(state.length.shape[0], device=state.length.device)
    caps = block_caps(state.tokens.shape[1], block_size)
    for block, cap in enumerate(caps):
        state = kernel.extend(rng, state, backend, cut, cap)
        if on_step is not None:
            on_step(block, 0, None)
        for step in range(1, mcmc_steps + 1):
            state, info = kernel.mh_step(rng, state, backend, cut, cap)
            if on_step is not None:
                on_step(block, step, info)
        running = ~ends_in(state, eos_token_ids) if cap < caps[-1] else torch.zeros_like(rows, dtype=torch.bool)
        finished = (~running).nonzero().squeeze(1)
        result = kernel.State(*(r.index_copy(0, rows[finished], s[finished]) for r, s in zip(result, state)))
        keep = running.nonzero().squeeze(1)
        if keep.numel() == 0:
            break
        if keep.numel() < rows.numel():
            state = kernel.State(*(s[keep] for s in state))
            backend.select_rows(keep)
            rows = rows[keep]
    return result
