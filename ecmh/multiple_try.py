"""Multiple-try ECMH (`tries=K`): K candidate suffixes per MH step, decoded side by side, settled exactly.

From the state `y` the cut `m` is drawn once (`kernel.propose_cut`); the step's K candidates `y'^1 .. y'^K` keep
`y_<m` and are drawn independently from the tempered proposal, each from its own key (`candidate_keys`). Every
answer `z` that keeps `y_<m` has the weight

    log W(z) = sum_{t>=m} log Z_t(z) + log w_z(m)

(the two terms one answer contributes to the one-candidate ECMH ratio). Candidate `j` is selected with probability
`W(y'^j) / sum_k W(y'^k)` and accepted with

    A = min(1, sum_k W(y'^k) / (sum_k W(y'^k) - W(y'^j) + W(y)))

whose denominator is the candidates' weights with `W(y'^j)` replaced by `W(y)`, summed in log space (no
subtraction). Given `m` the candidates do not depend on the state's suffix, so this is multiple-try Metropolis with
independent proposals for `p^alpha(z) * w_z(m)`; summing over `m` gives detailed balance for `p^alpha`
(docs/sampler-math.md, 'Multiple-try ECMH'). With K = 1 it is the ECMH ratio; `ecmh.mh` then keeps the one-candidate
kernel (`ecmh.kernel.step`), which also has exact early rejection: no bound is proven for K > 1, so this step has none.

A step's K candidates are K rows of the backend's batch, `chain * K + k`, all holding the chain's answer; a block
extension is decoded by row `chain * K` alone. Tensor code only: no host synchronisation, no loop over candidates.
"""

import functools
from typing import NamedTuple

import torch

from . import keyed, kernel
from .cuts import CutDistribution
from .scoring import PowerProposal

SELECT, TRY = 3, 4  # what a proposal's key is folded with (`ecmh.keyed`), distinct from `kernel`'s counters


class Tries(NamedTuple):
    """A multiple-try step's candidates, per chain (`kernel.Info.tries`)."""

    log_weights: torch.Tensor  # [C, K] float32: log W of each candidate (-inf: not decoded, an extension's others)
    state_log_weight: torch.Tensor  # [C] float32: log W of the state's answer for the same cut
    selected: torch.Tensor  # [C] long: the candidate selected (0 for an extension)
    lengths: torch.Tensor  # [C, K] long: each candidate's decoded tokens (0: not decoded)


def candidate_keys(key: torch.Tensor, tries: int) -> torch.Tensor:
    """`[C, K]`: the key each of a proposal's K candidates is decoded from (K = 1: the proposal's own key)."""
    if tries == 1:
        return key[:, None]
    return keyed.fold(key[:, None], TRY, torch.arange(tries, device=key.device)[None, :])


def log_weight(answer: kernel.State, cut: torch.Tensor) -> torch.Tensor:
    """`[R]`: `log W(z) = sum_{t>=m} log Z_t(z) + log w_z(m)` of each row's answer for its cut `m`."""
    return kernel.suffix_sum(answer.log_z, cut, answer.length) + kernel.at_cut(answer.cut_log_prob, cut)


def select(key: torch.Tensor, log_weights: torch.Tensor) -> torch.Tensor:
    """`[C]`: a candidate per chain drawn in proportion to its weight (Gumbel-max at the key's uniforms)."""
    columns = torch.arange(log_weights.shape[1], device=key.device)[None, :]
    uniform = keyed.uniforms(key[:, None], SELECT, columns)
    gumbel = -torch.log(-torch.log(uniform.clamp_min(torch.finfo(uniform.dtype).tiny)))
    return torch.argmax(log_weights + gumbel, dim=1)


def log_ratio(log_weights: torch.Tensor, selected: torch.Tensor, state_log_weight: torch.Tensor) -> torch.Tensor:
    """`[C]`: `log sum_k W_k - log (sum_k W_k - W_j + W(y))`, the second sum taken with `W_j` replaced by `W(y)`."""
    references = log_weights.scatter(1, selected[:, None], state_log_weight[:, None])
    return torch.logsumexp(log_weights, dim=1) - torch.logsumexp(references, dim=1)


def step(key: torch.Tensor, state: kernel.State, proposals: kernel.Proposals, *, alpha: float,
         cut_distribution: CutDistribution, tries: int, diagnostics: bool = False) -> tuple[kernel.State, kernel.Info]:
    """Settle the chains whose candidates all finished (`proposals.finished`, `[C]`): an extension is kept, an MH
    step selects a candidate and accepts or rejects it. `proposals.suffix` has the `C * K` candidate rows; `key`
    `[C]` holds each chain's proposal key, whose uniforms select and decide."""
    finished, extension, start, suffix = proposals
    chains = state.length.shape[0]
    each = functools.partial(torch.repeat_interleave, repeats=tries, dim=0)
    candidates = kernel.candidate(kernel.State(*map(each, state)), suffix, each(start), cut_distribution)
    decoded = (torch.arange(tries, device=start.device)[None, :] == 0) | ~extension[:, None]  # [C, K]
    log_weights = log_weight(candidates, each(start)).view(chains, tries).masked_fill(~decoded, float("-inf"))
    state_log_weight = log_weight(state, start)
    selected = torch.where(extension, 0, select(key, log_weights))
    ratio = log_ratio(log_weights, selected, state_log_weight)
    chosen = kernel.State(*(x[torch.arange(chains, device=start.device) * tries + selected] for x in candidates))
    log_u = kernel.log_uniform(key)
    is_mh = finished & ~extension
    accepted = (log_u < ratio) | extension
    lengths = torch.where(decoded, suffix.length.view(chains, tries), 0)
    forwarded = torch.where(decoded, suffix.forwarded.view(chains, tries), 0)
    settled = kernel.where_rows(accepted, chosen, state)._replace(
        proposals=state.proposals + is_mh.long(),
        accepted=state.accepted + (is_mh & accepted).long(),
        tokens_decoded=state.tokens_decoded + lengths.sum(1),
        tokens_forwarded=state.tokens_forwarded + forwarded.sum(1),
        sequential_passes=state.sequential_passes + lengths.max(1).values,
    )
    new_state = kernel.where_rows(finished, settled, state)
    info = kernel.Info(
        finished=finished, extension=extension, cut=start, accepted=accepted, log_ratio=ratio,
        ratio_terms=kernel.log_ratio(alpha, state, chosen, start), log_uniform=log_u,
        proposal_length=lengths.gather(1, selected[:, None]).squeeze(1), rejected_early=torch.zeros_like(finished),
        tries=Tries(log_weights, state_log_weight, selected, lengths))
    if diagnostics:
        info = info._replace(diagnostics=kernel.diagnose(state, new_state, start))
    return new_state, info


def build(alpha: float, cut_distribution: CutDistribution, top_k=None, top_p=None, *, tries: int,
          diagnostics: bool = False) -> kernel.Kernel:
    """The multiple-try kernel for `p^alpha` with cuts from `cut_distribution` and `tries` candidates per step
    (`kernel.build`'s arguments otherwise; its `step` takes `kernel.Proposals` with `C * tries` suffix rows).

    Example:
        >>> from ecmh.cuts import EntropyCut
        >>> mtm = build(4.0, EntropyCut(), tries=4)
        >>> candidate_keys(torch.tensor([7, 8]), 4).shape
        torch.Size([2, 4])
    """
    proposal = PowerProposal(alpha, top_k, top_p)
    return kernel.Kernel(proposal, kernel.init, functools.partial(kernel.holding, cut_distribution=cut_distribution),
                         kernel.propose_cut, kernel.engine_seed, functools.partial(
        step, alpha=proposal.alpha, cut_distribution=cut_distribution, tries=tries, diagnostics=diagnostics))
