"""MCMC diagnostics from a step history (`ecmh.History`): acceptance per block, where cuts land, and
multi-chain convergence through ArviZ (the `diagnostics` extra: `pip install 'ecmh[diagnostics]'`).

Convergence is read on each chain's last block, where it targets `p^alpha` over its final length
cap: the draws of a chain are its answer's `log p` and length after each of that block's MH steps
(`mcmc_steps` draws per chain; rows are chains, `num_return_sequences` of them per prompt).
ArviZ computes split R-hat and bulk/tail ESS (Vehtari et al. 2021) from the exported data; ecmh
computes none of them itself.
"""

import warnings
from typing import NamedTuple, Optional

import torch

from .checks import check_int
from .history import History


def acceptance_by_block(history: History, rows: int, blocks: Optional[int] = None) -> torch.Tensor:
    """Accepted / proposed MH steps per (row, block), `[rows, blocks]` float; NaN where none was proposed."""
    blocks = int(history.block.max()) + 1 if blocks is None else blocks
    mh = history.is_mh.float()
    proposed = torch.zeros(rows, blocks, device=mh.device).index_put_((history.row, history.block), mh, accumulate=True)
    accepted = torch.zeros_like(proposed).index_put_((history.row, history.block), mh * history.accepted.float(),
                                                     accumulate=True)
    return accepted / proposed


class DecisionPointAudit(NamedTuple):
    """How often MH cuts land on the `top` largest entropy jumps of the answer they cut."""

    top: int
    proposals: int  # MH steps audited
    on_top_jumps: float  # share of them cut at one of the answer's `top` largest jumps
    uniform_expectation: float  # the share uniform cuts would give on the same answers: mean of min(top, n) / n


def decision_point_audit(history: History, top: int = 1) -> DecisionPointAudit:
    """The share of MH cuts on the answer's `top` largest entropy jumps, against uniform cuts' share."""
    check_int("top", top, 1)
    mh = history.is_mh & (history.previous_length > 0)
    n = history.previous_length[mh].float()
    return DecisionPointAudit(
        top=top, proposals=int(mh.sum()),
        on_top_jumps=float((history.cut_jump_rank[mh] < top).float().mean()),
        uniform_expectation=float((n.clamp_max(top) / n).mean()),
    )


def last_block_draws(history: History, num_return_sequences: int) -> dict:
    """Per variable (`log_p`, `length`), `[chains, draws, prompts]` numpy arrays: each chain's state after each
    MH step of its last block (chains whose last block had fewer MH steps are cut to the shortest)."""
    import numpy as np

    rows = int(history.row.max()) + 1
    if rows % num_return_sequences:
        raise ValueError(f"The history has {rows} rows, not a multiple of num_return_sequences={num_return_sequences}.")
    last_block = torch.zeros(rows, dtype=torch.long, device=history.block.device).scatter_reduce(
        0, history.row, history.block, reduce="amax")
    keep = history.is_mh & (history.block == last_block[history.row])
    per_row = [keep & (history.row == r) for r in range(rows)]
    draws = min(int(mask.sum()) for mask in per_row)
    if draws < 2:
        raise ValueError("Convergence needs at least 2 MH steps in each chain's last block: raise `mcmc_steps`.")
    out = {}
    for name in ("log_p", "length"):
        values = np.stack([getattr(history, name)[mask][-draws:].double().cpu().numpy() for mask in per_row])
        out[name] = values.reshape(rows // num_return_sequences, num_return_sequences, draws).transpose(1, 2, 0)
    return out


def to_inference_data(history: History, num_return_sequences: int):
    """The chains as an ArviZ `InferenceData` (posterior `log_p` and `length`, dims chain, draw, prompt), so
    `arviz.rhat`, `arviz.ess`, `arviz.summary` and ArviZ's plots work on it."""
    return _inference_data(last_block_draws(history, num_return_sequences))


def _inference_data(draws: dict):
    return _arviz().from_dict(posterior=draws, dims={name: ["prompt"] for name in draws})


def convergence(history: History, num_return_sequences: int):
    """ArviZ's `summary(kind="diagnostics")` of the chains: per variable and prompt, `ess_bulk`, `ess_tail`,
    `r_hat` (and MCSE), as a pandas DataFrame. Needs at least 4 chains per prompt to mean much. Where ArviZ
    returns NaN, a warning says why (too few draws, or a variable that no chain ever changed)."""
    draws = last_block_draws(history, num_return_sequences)
    summary = _arviz().summary(_inference_data(draws), kind="diagnostics")
    if summary.isna().to_numpy().any():
        chains, steps = next(iter(draws.values())).shape[:2]
        constant = [name for name, values in draws.items() if (values == values[:, :1]).all(axis=(0, 1)).any()]
        reasons = ([f"each chain has {steps} draws (its last block's MH steps), and R-hat and ESS need at least 4: "
                    "raise `mcmc_steps`"] if steps < 4 else []) + \
                  ([f"{chains} chain(s) per prompt: R-hat compares chains, use num_return_sequences >= 4"]
                   if chains < 2 else []) + \
                  ([f"{', '.join(constant)} never changed over the draws of a prompt (no spread to measure)"]
                   if constant else [])
        warnings.warn("Some convergence diagnostics are NaN: " + ("; ".join(reasons) or "see ArviZ's summary") + ".",
                      stacklevel=2)
    return summary


def _arviz():
    try:
        import arviz
    except ImportError as error:
        raise ImportError("MCMC convergence diagnostics use ArviZ: `pip install 'ecmh[diagnostics]'`.") from error
    return arviz
