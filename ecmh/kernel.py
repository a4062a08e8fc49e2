"""The ECMH transition kernel: pure tensor code, no model, no host synchronisation.

As blackjax shapes a kernel: `build(alpha, cut_distribution, ...)` closes over the parameters once and
returns a `Kernel` with `init(...) -> State`, `propose_cut(key, state)` and `step(key, state, proposals) -> (State,
Info)`, and the proposal its backend draws from (`alpha` is given once, for the proposal and the ratio alike). `key`
holds one key per row, that of the proposal being settled (`ecmh.keyed`): a row's randomness depends
on its own key only, never on which rows share the step.
A `State` holds each row's (prompt x chain) current answer with the numbers the MH ratio needs
per position; a backend (`ecmh.backends`) decodes `Suffix`es, rows finishing at different times.
With the tempered proposal every token's `alpha * log p - log q` equals `log Z_t`, so the
auxiliary-variable MH ratio for a cut at `m` is

    log A = sum_{t>=m} log Z_t(y') - sum_{t>=m} log Z_t(y) + log w_{y'}(m) - log w_y(m)

with both sums over each sequence's whole suffix (docs/sampler-math.md, 'Acceptance ratio'). An extension (a new
block) goes through the same code with its decision overridden: it is kept whatever the ratio.

Exact early rejection (docs/sampler-math.md, 'Exact early rejection'). For a cut distribution whose normaliser
only grows (`normaliser_only_grows = True`: a position's weight is fixed once the position exists), the same
quantity over the first k tokens of the proposal, with each `log Z_t(y')` clamped at 0 (`running_bound`), is an
upper bound on `log A` that never rises with k. A proposal is rejected when that bound falls below `log u` at any
k (`rejected`); mathematically that is the MH decision itself, and a backend that stops decoding there (`Backend.
reject_early`) settles the same decision as one that decodes to the end: the kernel takes the minimum over the
prefixes it was given, and a prefix's bound does not depend on what was decoded after it.
"""

import functools
from typing import Callable, NamedTuple, Optional

import torch

from . import keyed
from .cuts import CutDistribution, entropy_jumps
from .scoring import PowerProposal
from .suffix import Suffix

# what a proposal's key is folded with for each of its random numbers (`ecmh.keyed`): distinct first counters
ENGINE_SEED, CUT, ACCEPT = 0, 1, 2


class State(NamedTuple):
    """Current answers of all rows. Positions `t >= length` are padding."""

    tokens: torch.Tensor  # [R, T] long
    log_p: torch.Tensor  # [R, T] float32: log p(y_t | prompt, y_<t)
    log_z: torch.Tensor  # [R, T] float32: log sum_v p(v | prompt, y_<t)^alpha
    entropy: torch.Tensor  # [R, T] float32: entropy of p(. | prompt, y_<t)
    length: torch.Tensor  # [R] long
    cut_log_prob: torch.Tensor  # [R, T] float32: log-probability of cutting at t (cached)
    proposals: torch.Tensor  # [R] long: MH proposals made
    accepted: torch.Tensor  # [R] long: MH proposals accepted
    tokens_decoded: torch.Tensor  # [R] long: tokens sampled, rejected proposals included
    tokens_forwarded: torch.Tensor  # [R] long: positions run through the model
    early_rejections: torch.Tensor  # [R] long: MH proposals rejected by the running bound (`rejected`)
    sequential_passes: torch.Tensor  # [R] long: decoding passes waited for (a multiple-try step: its longest candidate)


class Proposals(NamedTuple):
    """The proposals a backend finished decoding at one step, with what the kernel needs to settle them."""

    finished: torch.Tensor  # [R] bool: rows whose proposal finished now (the others are still decoding)
    extension: torch.Tensor  # [R] bool: the proposal extends the answer by a block, kept without MH
    start: torch.Tensor  # [R] long: the position it starts at (the cut; the answer's length for an extension)
    suffix: Suffix  # what was decoded from `start` on


class Diagnostics(NamedTuple):
    """History-only numbers of a step (`build(..., diagnostics=True)`: `record_history` asks for them)."""

    cut_log_prob: torch.Tensor  # [R] float32: MH steps: log w_y(cut), the cut's log-probability under the state before
    cut_jump: torch.Tensor  # [R] float32: MH steps: the entropy jump H_m - H_{m-1} there (H_{-1} = 0)
    cut_jump_rank: torch.Tensor  # [R] long: MH steps: positions of the state before with a larger jump (0: the top)
    previous_length: torch.Tensor  # [R] long: the row's answer's length before the step
    log_p: torch.Tensor  # [R] float32: the row's answer's log p after the step
    length: torch.Tensor  # [R] long: ... and its length


class Info(NamedTuple):
    """What happened to the rows whose proposal finished decoding at this step."""

    finished: torch.Tensor  # [R] bool: rows whose proposal (extension or MH) finished now
    extension: torch.Tensor  # [R] bool: ... and it was a block extension, kept without MH
    cut: torch.Tensor  # [R] long: where the proposal started (for an extension, the answer's length)
    accepted: torch.Tensor  # [R] bool: the MH proposal was accepted (extensions count as accepted)
    log_ratio: torch.Tensor  # [R] float32: log acceptance ratio (before min(0, .))
    ratio_terms: "LogRatio"  # log_ratio term by term
    log_uniform: torch.Tensor  # [R] float32: log u of the decision, accepted iff log u < log_ratio
    proposal_length: torch.Tensor  # [R] long
    rejected_early: torch.Tensor  # [R] bool: the running bound fell below log u (a backend may have stopped there)
    diagnostics: Optional[Diagnostics] = None  # history-only numbers, when the kernel was built to keep them
    tries: Optional[NamedTuple] = None  # a multiple-try step's candidates (`ecmh.multiple_try.Tries`)


def where_rows(mask: torch.Tensor, a, b):
    """Row-wise choice between two states (or tensors with rows on dim 0)."""
    if isinstance(a, tuple):
        return type(a)(*(where_rows(mask, x, y) for x, y in zip(a, b)))
    return torch.where(mask.view(-1, *[1] * (a.dim() - 1)), a, b)


def init(num_rows: int, max_new_tokens: int, tokens_forwarded: torch.Tensor) -> State:
    """An empty answer for every row; `tokens_forwarded` is what the prompt prefill cost."""
    device = tokens_forwarded.device
    floats = torch.zeros(num_rows, max_new_tokens, device=device)
    counter = torch.zeros(num_rows, dtype=torch.long, device=device)
    tokens = torch.zeros(num_rows, max_new_tokens, dtype=torch.long, device=device)
    return State(tokens, floats, floats, floats, counter, floats, counter, counter, counter, tokens_forwarded, counter,
                 counter)


def holding(answers, cut_distribution: CutDistribution) -> State:
    """Chains whose answers are `answers` (any tuple with `tokens`, `log_p`, `log_z`, `entropy` `[R, T]` and `length`
    `[R]`, e.g. SMC's particles), nothing counted yet."""
    chains = init(answers.length.shape[0], answers.tokens.shape[1], torch.zeros_like(answers.length))
    return chains._replace(tokens=answers.tokens, log_p=answers.log_p, log_z=answers.log_z, entropy=answers.entropy,
                           length=answers.length,
                           cut_log_prob=cut_log_probs(cut_distribution, answers.entropy, answers.length))


def cut_log_probs(cut_distribution: CutDistribution, entropy: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
    """Normalised log-probabilities of cutting at each position in `[0, length)`; uniform if all weights are 0."""
    valid = torch.arange(entropy.shape[1], device=entropy.device)[None, :] < length[:, None]
    log_w = cut_distribution.log_weights(entropy, length).float().masked_fill(~valid, float("-inf"))
    no_weight = torch.isneginf(log_w).all(dim=1, keepdim=True)
    log_w = torch.where(no_weight & valid, torch.zeros_like(log_w), log_w)
    return log_w - torch.logsumexp(log_w, dim=1, keepdim=True)


def engine_seed(key: torch.Tensor) -> torch.Tensor:
    """The seed a backend draws a proposal's tokens with, from the proposal's key (`ecmh.keyed`)."""
    return keyed.fold(key, ENGINE_SEED)


def propose_cut(key: torch.Tensor, state: State) -> torch.Tensor:
    """Draw a cut position per row from the cached cut distribution (Gumbel-max, on the device); `key` `[R]`
    holds each row's proposal key."""
    positions = torch.arange(state.cut_log_prob.shape[1], device=key.device)
    uniform = keyed.uniforms(key[:, None], CUT, positions[None, :])
    gumbel = -torch.log(-torch.log(uniform.clamp_min(torch.finfo(uniform.dtype).tiny)))
    return torch.argmax(state.cut_log_prob + gumbel, dim=1)


def splice(kept: torch.Tensor, new: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
    """Per row: positions `< start[r]` from `kept` `[R, T]`, then `new` `[R, L]` (its column 0 at `start[r]`)."""
    offset = torch.arange(kept.shape[1], device=kept.device)[None, :] - start[:, None]
    from_new = (offset >= 0) & (offset < new.shape[1])
    return torch.where(from_new, new.gather(1, offset.clamp(0, new.shape[1] - 1)), kept)


def candidate(state: State, suffix: Suffix, start: torch.Tensor, cut_distribution: CutDistribution) -> State:
    """The state with its answer replaced from `start` on by `suffix`; counters updated for the decode."""
    length = start + suffix.length
    entropy = splice(state.entropy, suffix.entropy, start)
    return state._replace(
        tokens=splice(state.tokens, suffix.tokens, start),
        log_p=splice(state.log_p, suffix.log_p, start),
        log_z=splice(state.log_z, suffix.log_z, start),
        entropy=entropy,
        length=length,
        cut_log_prob=cut_log_probs(cut_distribution, entropy, length),
        tokens_decoded=state.tokens_decoded + suffix.length,
        tokens_forwarded=state.tokens_forwarded + suffix.forwarded,
        sequential_passes=state.sequential_passes + suffix.length,
    )


def suffix_sum(values: torch.Tensor, start: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
    position = torch.arange(values.shape[1], device=values.device)[None, :]
    inside = (position >= start[:, None]) & (position < length[:, None])
    return torch.where(inside, values, torch.zeros_like(values)).sum(1)


class LogRatio(NamedTuple):
    """The MH log acceptance ratio of a proposal cut at `m`, term by term (each `[R]` float32)."""

    target: torch.Tensor  # alpha * (log p(y'_{>=m}) - log p(y_{>=m}))
    proposal: torch.Tensor  # log q(y_{>=m} | y_<m) - log q(y'_{>=m} | y_<m): reverse over forward
    cut: torch.Tensor  # log w_{y'}(m) - log w_y(m): the state-dependent cut choice, reverse over forward

    def total(self) -> torch.Tensor:
        return self.target + self.proposal + self.cut


def log_ratio(alpha: float, state: State, proposed: State, cut: torch.Tensor, target_exponent=None) -> LogRatio:
    """The terms of `log A` for `proposed`, which shares `y_<cut` with `state`.

    Each sum runs over its own sequence's whole suffix. With the tempered proposal
    `log q_t = alpha * log p_t - log Z_t`, so target + proposal = sum log Z_t(y') - sum log Z_t(y).
    `target_exponent` (`[R]`; default `alpha`): the power `a` of a target `p^a` other than the proposal's
    (SMC's bridged intermediate targets, `ecmh.smc`), for answers both of which it applies to.
    """
    def suffix(values, of):
        return suffix_sum(values, cut, of.length)

    log_p = suffix(proposed.log_p, proposed) - suffix(state.log_p, state)
    log_z = suffix(proposed.log_z, proposed) - suffix(state.log_z, state)
    return LogRatio(
        target=(alpha if target_exponent is None else target_exponent) * log_p,
        proposal=log_z - alpha * log_p,
        cut=proposed.cut_log_prob.gather(1, cut[:, None]).squeeze(1) - state.cut_log_prob.gather(1, cut[:, None]).squeeze(1),
    )


def log_uniform(key: torch.Tensor) -> torch.Tensor:
    """`log u` of each proposal's accept/reject decision, from its key."""
    return torch.log(keyed.nonzero_uniforms(key, ACCEPT))


def grows(cut_distribution: CutDistribution) -> bool:
    """Whether early rejection may be used with this cut distribution (its declaration; absent: no)."""
    return getattr(cut_distribution, "normaliser_only_grows", False) is True


class Bound(NamedTuple):
    """Per row, what the running bound of an MH proposal is compared with, fixed when the proposal starts."""

    threshold: torch.Tensor  # [R] float32: log u + sum_{t>=m} min(log Z_t(y), 0) + log w_y(m); -inf: never rejects early
    entropy: torch.Tensor  # [R, T] float32: the state's entropies (the shared prefix's are read)


def bound(key: torch.Tensor, state: State, start: torch.Tensor, mh: torch.Tensor) -> Bound:
    """The bound of the MH proposals starting at `start` where `mh` (`[R]` bool); the other rows never reject early."""
    state_terms = suffix_sum(state.log_z.clamp_max(0.0), start, state.length) + at_cut(state.cut_log_prob, start)
    threshold = log_uniform(key) + state_terms
    return Bound(torch.where(mh, threshold, torch.full_like(threshold, float("-inf"))), state.entropy)


def running_bound(cut_distribution: CutDistribution, entropy: torch.Tensor, start: torch.Tensor,
                  suffix: "Suffix") -> torch.Tensor:
    """`[R, L]`: column k-1 bounds the proposal's `log A + (the state's terms)` given its first k tokens:
    `sum_{j<k} min(log Z(y'_{m+j}), 0) + log w_{y'}(m)` with the cut normaliser over positions `< m + k` (uniform
    when all their weights are 0). Column k-1 depends on the suffix's first k columns only."""
    k = torch.arange(1, suffix.log_z.shape[1] + 1, device=start.device)[None, :]
    log_z_sum = suffix.log_z.clamp_max(0.0).cumsum(1)
    length = start + suffix.length
    spliced = splice(entropy, suffix.entropy, start)
    position = torch.arange(spliced.shape[1], device=start.device)[None, :]
    raw = cut_distribution.log_weights(spliced, length).float().masked_fill(position >= length[:, None], float("-inf"))
    end = (start[:, None] + k - 1).clamp_max(spliced.shape[1] - 1)
    normaliser = torch.logcumsumexp(raw, dim=1).gather(1, end)
    log_w = raw.gather(1, start[:, None].clamp_max(spliced.shape[1] - 1)) - normaliser
    uniform = -torch.log((start[:, None] + k).float())
    return log_z_sum + torch.where(torch.isneginf(normaliser), uniform, log_w)


def first_crossing(cut_distribution: CutDistribution, bound: Bound, start: torch.Tensor,
                   suffix: "Suffix") -> torch.Tensor:
    """`[R]` long: per row the first k at which the running bound of the suffix's first k tokens is below the
    threshold (0: at no k up to its length), for all k at once (column k-1 of `running_bound` depends on the first
    k tokens only: it is what `rejected_now` compares for a suffix of length k)."""
    values = running_bound(cut_distribution, bound.entropy, start, suffix)
    column = torch.arange(values.shape[1], device=values.device)[None, :]
    below = (values < bound.threshold[:, None]) & (column < suffix.length[:, None])
    return torch.where(below.any(1), below.long().argmax(1) + 1, 0)


def rejected(cut_distribution: CutDistribution, bound: Bound, start: torch.Tensor, suffix: "Suffix") -> torch.Tensor:
    """`[R]` bool: the running bound fell below the threshold at some prefix of the decoded suffix."""
    return first_crossing(cut_distribution, bound, start, suffix) > 0


def rejected_now(cut_distribution: CutDistribution, bound: Bound, start: torch.Tensor, suffix: "Suffix") -> torch.Tensor:
    """`[R]` bool: the running bound at the suffix's current length is below the threshold (a backend's check after
    each token; the first time it holds is where the proposal may stop)."""
    values = running_bound(cut_distribution, bound.entropy, start, suffix)
    return values.gather(1, (suffix.length - 1).clamp_min(0)[:, None]).squeeze(1) < bound.threshold


class EarlyRejection(NamedTuple):
    """What a backend that stops rejected proposals early is given (`Backend.reject_early`)."""

    cut_distribution: CutDistribution

    def rejected_now(self, bound: Bound, start: torch.Tensor, suffix: "Suffix") -> torch.Tensor:
        return rejected_now(self.cut_distribution, bound, start, suffix)

    def first_crossing(self, bound: Bound, start: torch.Tensor, suffix: "Suffix") -> torch.Tensor:
        return first_crossing(self.cut_distribution, bound, start, suffix)


def accept_reject(key: torch.Tensor, alpha: float, state: State, proposed: State, cut: torch.Tensor,
                  target_exponent=None):
    """The MH decision for `proposed` (which shares `y_<cut` with `state`): (accepted, log_ratio terms, log u)."""
    terms = log_ratio(alpha, state, proposed, cut, target_exponent)
    log_u = log_uniform(key)
    return log_u < terms.total(), terms, log_u


def at_cut(values: torch.Tensor, cut: torch.Tensor) -> torch.Tensor:
    return values.gather(1, cut[:, None].clamp_max(values.shape[1] - 1)).squeeze(1)


def _cut_jump_and_rank(state: State, cut: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    jumps = entropy_jumps(state.entropy)
    valid = torch.arange(jumps.shape[1], device=jumps.device)[None, :] < state.length[:, None]
    jump = at_cut(jumps, cut)
    return jump, (valid & (jumps > jump[:, None])).sum(1)


def step(
    key: torch.Tensor, state: State, proposals: Proposals, *, alpha: float, cut_distribution: CutDistribution,
    diagnostics: bool = False, admissible=None, target_exponent=None,
) -> tuple[State, Info]:
    """Settle the proposals that finished: extensions are kept, MH proposals accepted or rejected; `key` `[R]`
    holds each row's proposal key (`ecmh.keyed`), whose uniform decides.

    Rows outside `proposals.finished` are left as they are. Tensor code only: no host synchronisation.
    `diagnostics`: also compute the history-only numbers (`Info.diagnostics`). For a target other than the block
    target `p^alpha` (SMC's moves, `ecmh.smc`): `admissible` (`[R]` bool: the proposed answer lies in the target's
    support; the others are rejected) and `target_exponent` (`log_ratio`); with the latter no early rejection
    (the bound holds for `p^alpha` only).
    """
    finished, extension, start, suffix = proposals
    proposed = candidate(state, suffix, start, cut_distribution)
    accepted, terms, log_u = accept_reject(key, alpha, state, proposed, start, target_exponent)
    is_mh = finished & ~extension
    rejected_early = torch.zeros_like(is_mh)
    if grows(cut_distribution) and target_exponent is None:
        rejected_early = is_mh & rejected(cut_distribution, bound(key, state, start, is_mh), start, suffix)
    if admissible is not None:
        accepted = accepted & admissible
    accepted = (accepted & ~rejected_early) | extension
    settled = where_rows(accepted, proposed, state)._replace(
        proposals=state.proposals + is_mh.long(),
        accepted=state.accepted + (is_mh & accepted).long(),
        tokens_decoded=proposed.tokens_decoded,
        tokens_forwarded=proposed.tokens_forwarded,
        sequential_passes=proposed.sequential_passes,
        early_rejections=state.early_rejections + rejected_early.long(),
    )
    new_state = where_rows(finished, settled, state)
    info = Info(finished=finished, extension=extension, cut=start, accepted=accepted, log_ratio=terms.total(),
                ratio_terms=terms, log_uniform=log_u, proposal_length=suffix.length, rejected_early=rejected_early)
    if diagnostics:
        info = info._replace(diagnostics=diagnose(state, new_state, start))
    return new_state, info


def diagnose(state: State, new_state: State, cut: torch.Tensor) -> Diagnostics:
    """The history-only numbers of a step from `state` to `new_state` whose proposals started at `cut`."""
    cut_jump, cut_jump_rank = _cut_jump_and_rank(state, cut)
    return Diagnostics(cut_log_prob=at_cut(state.cut_log_prob, cut), cut_jump=cut_jump, cut_jump_rank=cut_jump_rank,
                       previous_length=state.length, log_p=answer_log_p(new_state), length=new_state.length)


class Kernel(NamedTuple):
    """ECMH's kernel with its parameters closed over (`build`)."""

    proposal: PowerProposal  # what a backend draws each token from: p^alpha / Z (truncated by top_k / top_p)
    init: Callable[..., State]  # init(num_rows, max_new_tokens, tokens_forwarded) -> State
    hold: Callable[..., State]  # hold(answers) -> chains whose answers are these (`holding`)
    propose_cut: Callable[..., torch.Tensor]  # propose_cut(key, state) -> the cut of each row's next proposal
    engine_seed: Callable[..., torch.Tensor]  # engine_seed(key) -> the seed a backend draws the proposal's tokens with
    step: Callable[..., tuple[State, Info]]  # step(key, state, proposals) -> (State, Info)


def build(alpha: float, cut_distribution: CutDistribution, top_k: Optional[int] = None, top_p: Optional[float] = None,
          *, diagnostics: bool = False) -> Kernel:
    """The MH kernel for the target `p^alpha` (`p` truncated by `top_k` / `top_p`) with cuts from `cut_distribution`.

    Example:
        >>> from ecmh.cuts import EntropyCut
        >>> mh_kernel = build(4.0, EntropyCut())
        >>> state = mh_kernel.init(2, 8, torch.zeros(2, dtype=torch.long))
        >>> mh_kernel.proposal.alpha, state.tokens.shape
        (4.0, torch.Size([2, 8]))
    """
    proposal = PowerProposal(alpha, top_k, top_p)
    return Kernel(proposal, init, functools.partial(holding, cut_distribution=cut_distribution), propose_cut, engine_seed,
                  functools.partial(step, alpha=proposal.alpha, cut_distribution=cut_distribution, diagnostics=diagnostics))


def answer_log_p(state: State) -> torch.Tensor:
    """`log p` of each row's current answer, `[R]`."""
    valid = torch.arange(state.log_p.shape[1], device=state.log_p.device)[None, :] < state.length[:, None]
    return torch.where(valid, state.log_p, torch.zeros_like(state.log_p)).sum(1)
