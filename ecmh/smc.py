"""Sequential Monte Carlo for `p^alpha`: particles grown in one batch, weighted token by token, resampled.

The math, in the notation of docs/sampler-math.md (section 'Sequential Monte Carlo'). Each prompt has N particles, rows of the batch.
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
the log-normaliser of the step that drew it (docs/sampler-math.md, 'Tempered proposal': with the exact tempered proposal every token's
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

Resample-move (`moves = K > 0`; docs/sampler-math.md, 'Resample-move'). At every check (after the ESS check and
any resampling), each running particle (length t) takes K ECMH steps, one after another, whose target is the
intermediate one restricted to running answers: `p(x)^{a_t}` over answers that reach length t without ending. A
step cuts at m (`cut`, `cut_power`, as MH's), draws the suffix from the same proposal up to the cap t, and accepts
with the MH ratio of that target: the block ratio of `ecmh.kernel` (the `log Z` sums and the cut correction) plus
`(a_t - alpha) * (log p(y'_{>=m}) - log p(y_{>=m}))` under bridging; a proposal that ends before t is rejected.
Such moves leave the intermediate target invariant, so the weights are kept and the estimates stay unbiased, as
long as whether a particle moves does not depend on the particles (moving only where the ESS called for a
resampling biased the estimates: tests/test_smc_moves.py); each moved particle's potential is re-anchored at its
new answer. Moving the finished particles too, or letting a running one end, would not be invariant (mass would
drain from running to finished answers). Duplicates left by resampling spread out, at the cost of the moves'
decoding (`Tally.move_steps` sequential passes).

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

import dataclasses
import math
from typing import NamedTuple, Optional

import torch

from . import keyed, kernel, resampling, rows
from .backends.base import Backend
from .checks import check_int, check_number
from .cuts import CutDistribution
from .kernel import Suffix, splice
from .options import CutChoice, option
from .outputs import ParticleSet, SMCOutput, Stats, continuations
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
    move_steps: torch.Tensor  # [G] long: sequential decoding steps of its resample-move phases


@dataclasses.dataclass(frozen=True, kw_only=True)
class SMCConfig(CutChoice):
    """The options of Sequential Monte Carlo (`ecmh.generate(..., algorithm="smc")`).

    Example:
        >>> SMCConfig(particles=8).resample_every
        16
        >>> SMCConfig(particles=0)
        Traceback (most recent call last):
        ...
        ValueError: `particles` must be an integer >= 1, got 0.
    """

    particles: int = option(16, "particles per prompt, advanced together in one batch")
    ess_threshold: float = option(0.5, "resample a prompt's particles when their effective sample size falls below "
                                       "ess_threshold * particles (0: never; 1: at every check where the weights differ)")
    resampling: str = option("systematic", "how particles are resampled (ecmh.resampling)", choices=resampling.SCHEMES)
    resample_every: int = option(16, "tokens between two checks of the effective sample size (on vLLM each check "
                                     "ends the engine's requests, so larger intervals are cheaper there)")
    bridge_tokens: int = option(0, "raise the exponent of the intermediate targets from 1 to alpha over this many "
                                   "tokens (Power-SMC's exponent bridging; 0: target p^alpha from the first token)")
    moves: int = option(0, "ECMH steps each running particle takes at every check of the ESS "
                           "(resample-move: they leave the intermediate target invariant; cuts from cut and cut_power; "
                           "0: none)")

    def __post_init__(self):
        super().__post_init__()
        check_int("particles", self.particles, 1)
        check_number("ess_threshold", self.ess_threshold, minimum=0, maximum=1, meaning="a fraction of the particles")
        resampling.check_scheme(self.resampling)
        check_int("resample_every", self.resample_every, 1)
        check_int("bridge_tokens", self.bridge_tokens, 0, "(0: no exponent bridging)")
        check_int("moves", self.moves, 0, "(0: no ECMH moves)")


class Run(NamedTuple):
    """What `run` returns."""

    state: State
    tally: Tally
    ess: torch.Tensor  # [G, checks] float32: ESS of each group at each check, before resampling (NaN: group over)


class Progress(NamedTuple):
    """A run in flight: every particle, what it cost, and which particles the backend is decoding."""

    state: State
    tally: Tally
    batch_row: torch.Tensor  # backend row -> particle row
    waiting: torch.Tensor  # per backend row: its interval is over, waiting for the others at the check
    checks: tuple  # the ESS of every group at each check so far
    moves: Optional["Moves"] = None  # the resample-move phase in flight, if any


class Moves(NamedTuple):
    """A resample-move phase (`moves > 0`): the running particles (backend rows) as ECMH chains of the current
    intermediate target, each making `moves` MH steps one after another."""

    chain: kernel.State
    made: torch.Tensor  # [B] long: moves settled so far
    start: torch.Tensor  # [B] long: the cut of the proposal in flight
    key: torch.Tensor  # [B] long: its key (`ecmh.keyed`)
    row_key: torch.Tensor  # [B] long: the row's key for this phase
    decoded: torch.Tensor  # [B] long: tokens its moves decoded so far (one after another: its sequential passes)
    forwarded: torch.Tensor  # [B] long: positions they ran through the model


class ParticleSystem(NamedTuple):
    """SMC with its parameters closed over (`particle_system`), as `ecmh.generate` drives it (`ecmh.algorithm`)."""

    particles: int
    ess_threshold: float
    resampling: str
    resample_every: int
    bridge_tokens: int
    moves: int  # ECMH steps per running particle at each check, made by `move_kernel`
    move_kernel: kernel.Kernel

    @property
    def proposal(self) -> PowerProposal:
        """What every token is drawn from, intervals' and moves' alike: the move kernel's `p^alpha / Z`."""
        return self.move_kernel.proposal

    def prompt_rows(self, num_return_sequences: int) -> int:
        """One row per prompt: its particles are forked from it (`init`), answers drawn from them (`output`)."""
        return 1

    def init(self, rng: torch.Generator, backend: Backend, forwarded: torch.Tensor, terminal: Terminal) -> Progress:
        """`particles` empty particles per prompt the backend was prepared with (one row per prompt, `forwarded`: what
        each prompt cost), sharing its cache; their first intervals started."""
        n, device = self.particles, forwarded.device
        groups = forwarded.shape[0]
        rows.keep(backend, torch.arange(groups, device=device).repeat_interleave(n))  # fork the prompts' caches
        zeros = torch.zeros(groups, dtype=torch.long, device=device)
        batch_row = torch.arange(groups * n, device=device)
        state = init(groups * n, terminal.max_new_tokens, device)
        waiting = self._start_intervals(rng, backend, terminal, state, batch_row)
        return Progress(state, Tally(zeros, forwarded.clone(), zeros, zeros, zeros), batch_row, waiting, ())

    def _start_intervals(self, rng, backend, terminal, state, batch_row) -> torch.Tensor:
        length = state.length[batch_row]
        cap = (length + self.resample_every).clamp_max(terminal.max_new_tokens)
        backend.start(torch.ones_like(batch_row, dtype=torch.bool), length, cap, state.tokens[batch_row],
                      keyed.keys(rng, len(batch_row)).to(batch_row.device))
        return torch.zeros_like(batch_row, dtype=torch.bool)

    def step(self, rng: torch.Generator, progress: Progress, backend: Backend, terminal: Terminal,
             decoded: tuple) -> tuple[Progress, bool]:
        """Append what finished its interval and reweight; at a check (every interval in flight over) resample; the
        particles that go on continue from their ancestors' caches."""
        if progress.moves is not None:
            return self._move(rng, progress, backend, terminal, decoded), False
        state, tally, batch_row, waiting, checks, _ = progress
        finished, suffix = decoded
        before = rows.take(state, batch_row)
        after = extend(self, before, suffix, finished, terminal)
        state = rows.put(state, batch_row, after)
        backend.commit(finished, before.length)
        tally = charge(tally, batch_row // self.particles, torch.where(finished, suffix.length, 0),
                       torch.where(finished, suffix.forwarded, 0))
        tally = tally._replace(steps=torch.maximum(tally.steps, by_group(state.length, self.particles).max(1).values))
        waiting = waiting | (finished & ~after.finished)
        # the check waits for every interval in flight (rows of an engine that streams finish at different steps)
        at_check, any_ended = torch.stack([(waiting | after.finished).all() & waiting.any(), after.finished.any()]).tolist()
        if at_check:
            state, ancestor, ess, chosen = resample(rng, self, state)
            checks = (*checks, ess)
            tally = tally._replace(resamples=tally.resamples + chosen.long())
            running = (~state.finished).nonzero().squeeze(1)
            keep = rows.backend_row(batch_row, len(state.length))[ancestor[running]]
        elif any_ended:
            running_now = (~after.finished).nonzero().squeeze(1)
            running, keep = batch_row[running_now], running_now
            waiting = waiting[running_now]
        else:
            return Progress(state, tally, batch_row, waiting, checks), False
        if running.numel() == 0:
            return Progress(state, tally, batch_row, waiting, checks), True
        rows.keep(backend, keep)
        if at_check:
            # every running particle moves at every check, whatever the ESS decided: a move made only where the
            # weights called for a resampling depends on the particles, and that choice biases the estimates
            if self.moves > 0:
                moves = self._start_moves(rng, backend, rows.take(state, running))
                return Progress(state, tally, running, waiting, checks, moves), False
            waiting = self._start_intervals(rng, backend, terminal, state, running)
        return Progress(state, tally, running, waiting, checks), False

    def _start_moves(self, rng, backend, running: State) -> Moves:
        """Every running particle as an MH chain of the intermediate target, its first move started."""
        chain = self.move_kernel.hold(running)
        zeros = torch.zeros_like(chain.length)
        row_key = keyed.keys(rng, len(zeros)).to(zeros.device)
        key = keyed.fold(row_key, 0)
        start = self.move_kernel.propose_cut(key, chain)
        backend.start(torch.ones_like(zeros, dtype=torch.bool), start, move_cap(chain.length), chain.tokens,
                      self.move_kernel.engine_seed(key))
        return Moves(chain, zeros, start, key, row_key, zeros, zeros)

    def _move(self, rng, progress: Progress, backend: Backend, terminal: Terminal, decoded: tuple) -> Progress:
        """Settle the moves that finished with the MH ratio of the intermediate target and start each row's next;
        once every row has made its moves, their answers become the particles and the next intervals start."""
        moves = progress.moves
        finished, suffix = decoded
        finished = finished & (moves.made < self.moves)
        chain, start = moves.chain, moves.start
        cap = move_cap(chain.length)
        length = start + torch.where(finished, suffix.length, 0)  # a row still decoding holds no proposal yet
        admissible = in_support(terminal, kernel.splice(chain.tokens, suffix.tokens, start), length, cap)
        bridged = None if self.bridge_tokens == 0 else exponent(self, chain.length, torch.zeros_like(finished))
        chain, info = self.move_kernel.step(moves.key, chain,
                                            kernel.Proposals(finished, torch.zeros_like(finished), start, suffix),
                                            admissible=admissible, target_exponent=bridged)
        backend.commit(finished & info.accepted, start)
        made = moves.made + finished.long()
        again = finished & (made < self.moves)
        key = torch.where(again, keyed.fold(moves.row_key, made), moves.key)
        start = torch.where(again, self.move_kernel.propose_cut(key, chain), start)
        backend.start(again, start, move_cap(chain.length), chain.tokens, self.move_kernel.engine_seed(key))
        moves = moves._replace(chain=chain, made=made, start=start, key=key,
                               decoded=moves.decoded + torch.where(finished, suffix.length, 0),
                               forwarded=moves.forwarded + torch.where(finished, suffix.forwarded, 0))
        if (made < self.moves).any():
            return progress._replace(moves=moves)
        return self._end_moves(rng, progress._replace(moves=moves), backend, terminal)

    def _end_moves(self, rng, progress: Progress, backend: Backend, terminal: Terminal) -> Progress:
        """The moved answers become the particles; their weights stay, their potentials are taken afresh (the next
        increments are measured from the answer each particle holds now)."""
        state, tally, batch_row, _, checks, moves = progress
        chain = moves.chain
        ended = terminal.ends(chain.tokens, chain.length) | (chain.length >= chain.tokens.shape[1])
        phi = potential(self, chain.log_p, chain.log_z, chain.length, ended)
        moved = rows.take(state, batch_row)
        moved = moved._replace(
            tokens=chain.tokens, log_p=chain.log_p, log_z=chain.log_z, entropy=chain.entropy, length=chain.length,
            finished=ended, anchor_log_weight=moved.log_weight, anchor_potential=phi, anchor_length=chain.length)
        state = rows.put(state, batch_row, moved)
        group = batch_row // self.particles
        steps = torch.zeros_like(tally.move_steps).scatter_reduce(0, group, moves.decoded, reduce="amax")
        tally = charge(tally, group, moves.decoded, moves.forwarded)._replace(move_steps=tally.move_steps + steps)
        if ended.any():  # only where a move may leave the intermediate target's running answers (never, as built)
            rows.keep(backend, (~ended).nonzero().squeeze(1))
            batch_row = batch_row[~ended]
        waiting = self._start_intervals(rng, backend, terminal, state, batch_row)
        return Progress(state, tally, batch_row, waiting, checks)

    def result(self, progress: Progress) -> Run:
        groups = progress.tally.steps.shape[0]
        ess = torch.stack(progress.checks, 1) if progress.checks else torch.zeros(groups, 0, device=progress.batch_row.device)
        return Run(progress.state, progress.tally, ess)

    def output(self, rng: torch.Generator, progress: Progress, prompts: torch.Tensor, generation):
        """`num_return_sequences` particles per prompt drawn by the final weights, and with `return_dict_in_generate`
        every particle (`out.particles`)."""
        state, tally, ess = self.result(progress)
        n, draws = self.particles, generation.num_return_sequences
        log_weights = by_group(state.log_weight, n)
        weights = torch.softmax(log_weights.double(), dim=1)
        chosen = torch.multinomial(weights.float(), draws, replacement=True, generator=rng)
        group = torch.arange(weights.shape[0], device=chosen.device)[:, None]
        returned = (group * n + chosen).flatten()
        sequences, trace = continuations(state, prompts.repeat_interleave(n, dim=0), generation.pad_token_id)
        if not generation.return_dict_in_generate:
            return sequences[returned]
        per_answer = group.expand(-1, draws).flatten()
        stats = Stats(log_p=trace.log_p.sum(1)[returned], tokens_decoded=tally.tokens_decoded[per_answer],
                      tokens_forwarded=tally.tokens_forwarded[per_answer],
                      sequential_passes=(tally.steps + tally.move_steps)[per_answer] + 1)
        particles = ParticleSet(
            sequences=sequences, log_weights=log_weights, weights=weights.float(),
            log_evidence=torch.logsumexp(log_weights, dim=1) - math.log(n), ess=ess, resamples=tally.resamples,
            chosen=chosen, trace=trace)
        return SMCOutput(sequences[returned], stats, rows.take(trace, returned), particles)


def move_cap(length: torch.Tensor) -> torch.Tensor:
    """A move's proposals run to the particle's own length: the intermediate target at a check is the MH block target
    with the cap there (docs/sampler-math.md, 'Resample-move')."""
    return length


def in_support(terminal: Terminal, tokens: torch.Tensor, length: torch.Tensor, cap: torch.Tensor) -> torch.Tensor:
    """`[R]` bool: a moved particle's proposed answer is still running (it reached the cap without ending), as the
    particle was: only running particles move, so the move must keep them running to leave the target invariant."""
    return (length == cap) & ~terminal.ends(tokens, length)


def particle_system(alpha: float, particles: int, *, ess_threshold: float = SMCConfig.ess_threshold,
                    resampling_scheme: str = SMCConfig.resampling, resample_every: int = SMCConfig.resample_every,
                    bridge_tokens: int = SMCConfig.bridge_tokens, moves: int = SMCConfig.moves,
                    cut_distribution: Optional[CutDistribution] = None, top_k: Optional[int] = None,
                    top_p: Optional[float] = None) -> ParticleSystem:
    """SMC for `p^alpha` (`p` truncated by `top_k` / `top_p`) with `particles` particles per prompt; its moves (with
    `moves > 0`) are made by the MH kernel (`ecmh.kernel.build`) with cuts from `cut_distribution`.

    Example:
        >>> system = particle_system(4.0, particles=8)
        >>> system.proposal.alpha, system.resampling
        (4.0, 'systematic')
    """
    cut_distribution = SMCConfig().cut_distribution if cut_distribution is None else cut_distribution
    move_kernel = kernel.build(alpha, cut_distribution, top_k, top_p)
    return ParticleSystem(particles, ess_threshold, resampling.check_scheme(resampling_scheme), resample_every,
                          bridge_tokens, moves, move_kernel)


def build(options: SMCConfig, generation) -> ParticleSystem:
    """SMC for one call of `ecmh.generate` (`generation`: its resolved `ecmh.settings.GenerationSettings`)."""
    return particle_system(options.alpha, options.particles, ess_threshold=options.ess_threshold,
                           resampling_scheme=options.resampling, resample_every=options.resample_every,
                           bridge_tokens=options.bridge_tokens, moves=options.moves,
                           cut_distribution=options.cut_distribution, top_k=generation.top_k, top_p=generation.top_p)


def init(num_rows: int, max_new_tokens: int, device) -> State:
    floats = torch.zeros(num_rows, max_new_tokens, device=device)
    tokens = torch.zeros(num_rows, max_new_tokens, dtype=torch.long, device=device)
    row = torch.zeros(num_rows, device=device)
    counter = torch.zeros(num_rows, dtype=torch.long, device=device)
    return State(tokens, floats, floats, floats, counter, counter.bool(), row, row, row, counter)


def exponent(system: ParticleSystem, length: torch.Tensor, finished: torch.Tensor) -> torch.Tensor:
    """`a(x)`: the power of `p` in the intermediate target of each particle (`alpha` once finished)."""
    alpha = system.proposal.alpha
    if system.bridge_tokens == 0:
        return torch.full(length.shape, alpha, device=length.device)
    ramp = 1 + (alpha - 1) * (length.float() / system.bridge_tokens).clamp_max(1.0)
    return torch.where(finished, torch.full_like(ramp, alpha), ramp)


def potential(system: ParticleSystem, log_p: torch.Tensor, log_z: torch.Tensor, length: torch.Tensor,
              finished: torch.Tensor) -> torch.Tensor:
    """`Phi(x) = a(x) * log p(x) - log q(x)` of each particle `x` = its first `length` positions."""
    valid = torch.arange(log_p.shape[1], device=log_p.device)[None, :] < length[:, None]
    total_log_p = torch.where(valid, log_p, torch.zeros_like(log_p)).sum(1)
    total_log_z = torch.where(valid, log_z, torch.zeros_like(log_z)).sum(1)
    alpha = system.proposal.alpha
    return (exponent(system, length, finished) - alpha) * total_log_p + total_log_z


def extend(system: ParticleSystem, state: State, suffix: Suffix, finished: torch.Tensor, terminal: Terminal) -> State:
    """Append to the particles where `finished` (`[R]` bool) the tokens their interval decoded, and reweight them."""
    length = torch.where(finished, state.length + suffix.length, state.length)
    tokens, log_p, log_z, entropy = (torch.where(finished[:, None], splice(kept, new, state.length), kept)
                                     for kept, new in zip(state[:4], suffix[:4]))
    ended = terminal.ends(tokens, length) | (length >= tokens.shape[1])
    phi = potential(system, log_p, log_z, length, ended)
    return state._replace(tokens=tokens, log_p=log_p, log_z=log_z, entropy=entropy, length=length, finished=ended,
                          log_weight=state.anchor_log_weight + phi - state.anchor_potential)


def charge(tally: Tally, group: torch.Tensor, decoded: torch.Tensor, forwarded: torch.Tensor) -> Tally:
    """`tally` with each row's `decoded` and `forwarded` tokens added to its prompt's (`group`: each row's prompt)."""
    return tally._replace(tokens_decoded=tally.tokens_decoded.index_add(0, group, decoded),
                          tokens_forwarded=tally.tokens_forwarded.index_add(0, group, forwarded))


def by_group(values: torch.Tensor, particles: int) -> torch.Tensor:
    return values.view(-1, particles)


def resample(rng: torch.Generator, system: ParticleSystem, state: State) -> tuple[State, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The ESS check of every group: `(state, ancestor row of each row, ESS per group, which groups resampled)`.

    A group resamples when some particle is still growing and its ESS is below `ess_threshold * N`; the others
    keep their particles (each row its own ancestor). Tensor code, no host synchronisation.
    """
    n = system.particles
    log_w = by_group(state.log_weight, n)
    ess = resampling.effective_sample_size(log_w)
    running = ~by_group(state.finished, n).all(1)
    chosen = running & (ess < system.ess_threshold * n)
    drawn = resampling.resample(system.resampling, resampling.normalised(log_w), rng)
    own = torch.arange(n, device=drawn.device).expand_as(drawn)
    base = torch.arange(log_w.shape[0], device=drawn.device)[:, None] * n
    ancestor = (base + torch.where(chosen[:, None], drawn, own)).flatten()
    child = rows.take(state, ancestor)
    mean_log_w = (torch.logsumexp(log_w, dim=1) - math.log(n)).repeat_interleave(n)
    phi = potential(system, child.log_p, child.log_z, child.length, child.finished)
    reset = chosen.repeat_interleave(n)
    child = child._replace(
        log_weight=torch.where(reset, mean_log_w, child.log_weight),
        anchor_log_weight=torch.where(reset, mean_log_w, child.anchor_log_weight),
        anchor_potential=torch.where(reset, phi, child.anchor_potential),
        anchor_length=torch.where(reset, child.length, child.anchor_length),
    )
    return child, ancestor, torch.where(running, ess, torch.full_like(ess, float("nan"))), chosen

