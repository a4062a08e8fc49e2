"""Sequential Monte Carlo for `p^alpha`: particles grown in one batch, weighted token by token, resampled.

The math, in `../shared/design/sampler-math.md`'s notation. Each prompt has N particles, rows of the batch.
A particle `x` is a prefix `y_<t` still growing, or a finished answer (EOS, a stop string, the cap `T`).
Every token is drawn from the same proposal as MH's, `q(v | y_<t) = p(v | y_<t)^alpha / Z_t`
(`ecmh.scoring.PowerProposal`), so `log q(x) = sum_t (alpha * log p_t - log Z_t)`.

Targets. SMC moves through intermediate targets `gamma(x) = p(x)^a(x)` and ends at `p^alpha` over finished
answers: `a(x) = alpha` for a finished `x`; for a growing prefix of length t, `a_t = alpha` (no bridging) or,
with exponent bridging over `bridge_tokens = B_r` tokens (Power-SMC, arXiv 2602.10273),
`a_t = 1 + (alpha - 1) * min(1, t / B_r)`: early prefixes are weighted towards `p` rather than `p^alpha`,
so the weights do not degenerate before the particles have spread out. Any choice of intermediate targets
leaves the final target unchanged, because a finished answer is weighted by `p^alpha` whatever came before.

Weights. A particle's log-weight is its potential `Phi(x) = a(x) * log p(x) - log q(x)` since the last
resampling. Without bridging `Phi(x) = sum_t log Z_t`: the incremental log-weight of a token is `log Z_t`,
the log-normaliser of the step that drew it (sampler-math.md: with the exact tempered proposal every token's
`alpha * log p - log q` equals `log Z_t`). With bridging the increment of token t is
`(a_{t+1} - a_t) * log p(y_<t) + (a_{t+1} - alpha) * log p(y_t) + log Z_t`, and a particle that finishes
at length n gains `(alpha - a_n) * log p(y)`; at the end every particle is finished and its weight is
`p(y)^alpha / q(y)`, an importance weight for `p^alpha`.

Resampling. Every `resample_every` tokens, a group whose effective sample size is below
`ess_threshold * N` is resampled (`ecmh.resampling`) over all its particles, finished ones included
(their copies stay finished and cost nothing); each child gets the group's mean weight, so the sum is kept.
A running child's KV cache is its ancestor's, copied by `Backend.select_rows` with repeated indices;
nothing is encoded again. `exp(log_evidence) = mean_i w_i` at the end is an unbiased estimate of
`Z = sum_y p(y | prompt)^alpha`, and the weighted particles estimate `E_{p^alpha}[f]` consistently as N grows
(not exactly at finite N: SMC is consistent, MH is exact in the limit of steps).

Cost. Particles advance interval by interval: each check waits until every running particle has finished
its `resample_every` tokens (on an engine that streams, particles finish theirs at different steps), so a
prompt's answer takes about as many sequential decoding steps as its longest particle has tokens, plain
decoding's; finished particles leave the batch. Each interval's proposals draw from keys taken from the
generator at the check (`ecmh.keyed`), so the output does not depend on when particles finish. Host
synchronisations per answer: the backend's one per decoding step (which rows finished) plus one per
`resample_every` tokens (which rows go on, after the resampling decision).

Twisted SMC would plug in at `potential`: a learned or heuristic look-ahead term added to each
particle's log-weight (and subtracted at the end), with the resampling and the driver unchanged.
"""

import math
from typing import NamedTuple, Optional

import torch

from . import keyed, resampling
from .backends.base import Backend
from .kernel import Suffix, splice
from .scoring import PowerProposal
from .terminal import Terminal


class State(NamedTuple):
    """Every particle of every prompt: rows `g * N .. g * N + N - 1` belong to prompt `g`. The first five fields
    hold each particle's answer as `ecmh.kernel.State` holds a chain's (tokens `[R, T]`; per position float32
    `log p`, `log Z`, entropy; `length` `[R]`)."""

    tokens: torch.Tensor
    log_p: torch.Tensor
    log_z: torch.Tensor
    entropy: torch.Tensor
    length: torch.Tensor
    finished: torch.Tensor  # [R] bool: ends in a terminal event or at the cap
    log_weight: torch.Tensor  # [R] float32: anchor_log_weight + Phi(x) - anchor_potential
    anchor_log_weight: torch.Tensor  # [R] float32: the log-weight given at the last resampling (0 before any)
    anchor_potential: torch.Tensor  # [R] float32: Phi of the particle then
    anchor_length: torch.Tensor  # [R] long: its length then


class Tally(NamedTuple):
    """Per prompt: what its particle system cost and did."""

    tokens_decoded: torch.Tensor  # [G] long: every token drawn, by particles later discarded too
    tokens_forwarded: torch.Tensor  # [G] long: every position run through the model, the prompt's included
    steps: torch.Tensor  # [G] long: sequential decoding steps (the longest lineage of its particles)
    resamples: torch.Tensor  # [G] long: resampling events


class Algorithm(NamedTuple):
    """SMC's parameters closed over (`build`)."""

    proposal: PowerProposal
    particles: int
    ess_threshold: float
    resampling: str
    resample_every: int
    bridge_tokens: int


def build(alpha: float, particles: int, *, ess_threshold: float = 0.5, resampling_scheme: str = "systematic",
          resample_every: int = 16, bridge_tokens: int = 0, top_k: Optional[int] = None,
          top_p: Optional[float] = None) -> Algorithm:
    """SMC for `p^alpha` (`p` truncated by `top_k` / `top_p`) with `particles` particles per prompt.

    Example:
        >>> algorithm = build(4.0, particles=8)
        >>> algorithm.proposal.alpha, algorithm.resampling
        (4.0, 'systematic')
    """
    return Algorithm(PowerProposal(alpha, top_k, top_p), particles, ess_threshold,
                     resampling.check_scheme(resampling_scheme), resample_every, bridge_tokens)


def init(num_rows: int, max_new_tokens: int, device) -> State:
    floats = torch.zeros(num_rows, max_new_tokens, device=device)
    tokens = torch.zeros(num_rows, max_new_tokens, dtype=torch.long, device=device)
    row = torch.zeros(num_rows, device=device)
    counter = torch.zeros(num_rows, dtype=torch.long, device=device)
    return State(tokens, floats, floats, floats, counter, counter.bool(), row, row, row, counter)


def exponent(algorithm: Algorithm, length: torch.Tensor, finished: torch.Tensor) -> torch.Tensor:
    """`a(x)`: the power of `p` in the intermediate target of each particle (`alpha` once finished)."""
    alpha = algorithm.proposal.alpha
    if algorithm.bridge_tokens == 0:
        return torch.full(length.shape, alpha, device=length.device)
    ramp = 1 + (alpha - 1) * (length.float() / algorithm.bridge_tokens).clamp_max(1.0)
    return torch.where(finished, torch.full_like(ramp, alpha), ramp)


def potential(algorithm: Algorithm, log_p: torch.Tensor, log_z: torch.Tensor, length: torch.Tensor,
              finished: torch.Tensor) -> torch.Tensor:
    """`Phi(x) = a(x) * log p(x) - log q(x)` of each particle `x` = its first `length` positions."""
    valid = torch.arange(log_p.shape[1], device=log_p.device)[None, :] < length[:, None]
    total_log_p = torch.where(valid, log_p, torch.zeros_like(log_p)).sum(1)
    total_log_z = torch.where(valid, log_z, torch.zeros_like(log_z)).sum(1)
    alpha = algorithm.proposal.alpha
    return (exponent(algorithm, length, finished) - alpha) * total_log_p + total_log_z


def extend(algorithm: Algorithm, state: State, suffix: Suffix, finished: torch.Tensor, terminal: Terminal) -> State:
    """Append to the particles where `finished` (`[R]` bool) the tokens their interval decoded, and reweight them."""
    length = torch.where(finished, state.length + suffix.length, state.length)
    tokens, log_p, log_z, entropy = (torch.where(finished[:, None], splice(kept, new, state.length), kept)
                                     for kept, new in zip(state[:4], suffix[:4]))
    ended = terminal.ends(tokens, length) | (length >= tokens.shape[1])
    phi = potential(algorithm, log_p, log_z, length, ended)
    return state._replace(tokens=tokens, log_p=log_p, log_z=log_z, entropy=entropy, length=length, finished=ended,
                          log_weight=state.anchor_log_weight + phi - state.anchor_potential)


def by_group(values: torch.Tensor, particles: int) -> torch.Tensor:
    return values.view(-1, particles)


def resample(rng: torch.Generator, algorithm: Algorithm, state: State) -> tuple[State, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The ESS check of every group: `(state, ancestor row of each row, ESS per group, which groups resampled)`.

    A group resamples when some particle is still growing and its ESS is below `ess_threshold * N`; the others
    keep their particles (each row its own ancestor). Tensor code, no host synchronisation.
    """
    n = algorithm.particles
    log_w = by_group(state.log_weight, n)
    ess = resampling.effective_sample_size(log_w)
    running = ~by_group(state.finished, n).all(1)
    chosen = running & (ess < algorithm.ess_threshold * n)
    drawn = resampling.resample(algorithm.resampling, resampling.normalised(log_w), rng)
    own = torch.arange(n, device=drawn.device).expand_as(drawn)
    base = torch.arange(log_w.shape[0], device=drawn.device)[:, None] * n
    ancestor = (base + torch.where(chosen[:, None], drawn, own)).flatten()
    child = State(*(x[ancestor] for x in state))
    mean_log_w = (torch.logsumexp(log_w, dim=1) - math.log(n)).repeat_interleave(n)
    phi = potential(algorithm, child.log_p, child.log_z, child.length, child.finished)
    reset = chosen.repeat_interleave(n)
    child = child._replace(
        log_weight=torch.where(reset, mean_log_w, child.log_weight),
        anchor_log_weight=torch.where(reset, mean_log_w, child.anchor_log_weight),
        anchor_potential=torch.where(reset, phi, child.anchor_potential),
        anchor_length=torch.where(reset, child.length, child.anchor_length),
    )
    return child, ancestor, torch.where(running, ess, torch.full_like(ess, float("nan"))), chosen


class Run(NamedTuple):
    """What `run` returns."""

    state: State
    tally: Tally
    ess: torch.Tensor  # [G, checks] float32: ESS of each group at each check, before resampling (NaN: group over)


def run(rng: torch.Generator, algorithm: Algorithm, backend: Backend, forwarded: torch.Tensor, *,
        terminal: Terminal) -> Run:
    """Grow `algorithm.particles` particles for each prompt the backend was prepared with (one row per prompt,
    `forwarded`: what each prompt cost) until every particle has finished."""
    n, device = algorithm.particles, forwarded.device
    groups = forwarded.shape[0]
    backend.select_rows(torch.arange(groups, device=device).repeat_interleave(n))  # fork the prompts' caches
    state = init(groups * n, terminal.max_new_tokens, device)
    zeros = torch.zeros(groups, dtype=torch.long, device=device)
    tally = Tally(zeros, forwarded.clone(), zeros, zeros)
    group = torch.arange(groups * n, device=device) // n
    batch_row = torch.arange(groups * n, device=device)  # backend row -> particle row
    checks = []

    def start_intervals():
        length = state.length[batch_row]
        cap = (length + algorithm.resample_every).clamp_max(terminal.max_new_tokens)
        backend.start(torch.ones_like(batch_row, dtype=torch.bool), length, cap, state.tokens[batch_row],
                      keyed.keys(rng, len(batch_row)).to(device))
        return torch.zeros_like(batch_row, dtype=torch.bool)  # per backend row: waiting for the others at the check

    waiting = start_intervals()
    while True:
        decoded = backend.step(rng)
        if decoded is None:
            continue
        finished, suffix = decoded
        before = State(*(x[batch_row] for x in state))
        after = extend(algorithm, before, suffix, finished, terminal)
        state = State(*(x.index_copy(0, batch_row, y) for x, y in zip(state, after)))
        backend.commit(finished, before.length)
        owner = group[batch_row]
        tally = tally._replace(
            tokens_decoded=tally.tokens_decoded.index_add(0, owner, torch.where(finished, suffix.length, 0)),
            tokens_forwarded=tally.tokens_forwarded.index_add(0, owner, torch.where(finished, suffix.forwarded, 0)),
            steps=torch.maximum(tally.steps, by_group(state.length, n).max(1).values),
        )
        waiting = waiting | (finished & ~after.finished)
        # the check waits for every interval in flight (rows of an engine that streams finish at different steps)
        at_check, any_ended = torch.stack([(waiting | after.finished).all() & waiting.any(), after.finished.any()]).tolist()
        if at_check:
            state, ancestor, ess, chosen = resample(rng, algorithm, state)
            checks.append(ess)
            tally = tally._replace(resamples=tally.resamples + chosen.long())
            backend_row = torch.full_like(group, -1).index_copy(0, batch_row, torch.arange(len(batch_row), device=device))
            running = (~state.finished).nonzero().squeeze(1)
            keep = backend_row[ancestor[running]]
        elif any_ended:
            running_now = (~after.finished).nonzero().squeeze(1)
            running, keep = batch_row[running_now], running_now
            waiting = waiting[running_now]
        else:
            continue
        if running.numel() == 0:
            ess = torch.stack(checks, 1) if checks else torch.zeros(groups, 0, device=device)
            return Run(state, tally, ess)
        backend.select_rows(keep)
        batch_row = running
        if at_check:
            waiting = start_intervals()
