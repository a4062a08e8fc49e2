"""Plots of a run (matplotlib, in the `diagnostics` extra). Each function draws on `ax` (a new figure's
axes if None) and returns the axes."""

import torch

from .diagnostics import acceptance_by_block
from .outputs import Output
from .history import History


def _axes(ax):
    if ax is None:
        import matplotlib.pyplot as plt

        ax = plt.figure(figsize=(8, 3)).gca()
    return ax


def plot_entropy(output: Output, history: History, row: int, ax=None):
    """The entropy `H_t` along row `row`'s returned answer, a marker at each of its MH cuts (filled: accepted),
    and the spans accepted proposals rewrote shaded."""
    ax = _axes(ax)
    n = int(output.trace.length[row])
    ax.plot(range(n), output.trace.entropy[row, :n].cpu(), color="black", lw=1, label="entropy $H_t$")
    mine = (history.row == row) & history.is_mh
    for cut, length, accepted in zip(history.cut[mine].tolist(), history.proposal_length[mine].tolist(),
                                     history.accepted[mine].tolist()):
        if accepted:
            ax.axvspan(cut - 0.5, cut + length - 0.5, color="tab:green", alpha=0.08)
        ax.axvline(cut, color="tab:green" if accepted else "tab:red", lw=0.8, alpha=0.6, ls="-" if accepted else ":")
    ax.set(xlabel="answer position t", ylabel="nats", title=f"row {row}: cuts (green accepted, red rejected)")
    return ax


def plot_chains(history: History, num_return_sequences: int, prompt: int = 0, ax=None):
    """`log p` of each chain of prompt `prompt` after every settled proposal."""
    ax = _axes(ax)
    for chain in range(num_return_sequences):
        mine = history.row == prompt * num_return_sequences + chain
        ax.plot(history.log_p[mine].cpu(), lw=1, label=f"chain {chain}")
    ax.set(xlabel="settled proposal", ylabel="log p(answer)", title=f"prompt {prompt}")
    ax.legend(fontsize="small")
    return ax


def plot_acceptance_by_block(history: History, rows: int, ax=None):
    """MH acceptance per block: each row faint, the mean over rows bold."""
    ax = _axes(ax)
    rates = acceptance_by_block(history, rows).cpu()
    blocks = torch.arange(rates.shape[1])
    for rate in rates:
        ax.plot(blocks, rate, color="tab:blue", alpha=0.15, lw=1)
    ax.plot(blocks, rates.nanmean(0), color="tab:blue", lw=2, marker="o", label="mean over rows")
    ax.set(xlabel="block", ylabel="acceptance rate", ylim=(-0.02, 1.02))
    ax.legend(fontsize="small")
    return ax
