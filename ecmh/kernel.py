"""The ECMH transition kernel: pure tensor code, no model, no host synchronisation.

Rows (prompts x chains) advance together. A `State` holds each row's current answer with the
numbers the MH ratio needs per position; a backend (transformers, vLLM) decodes `Suffix`es.
With the tempered proposal every token's `alpha * log p - log q` equals `log Z_t`, so the
auxiliary-variable MH ratio for a cut at `m` is

    log A = sum_{t>=m} log Z_t(y') - sum_{t>=m} log Z_t(y) + log w_{y'}(m) - log w_y(m)

with both sums over each sequence's whole suffix (README, 'How ECMH works').
"""

from typing import NamedTuple, Protocol

import torch

from .cuts import CutDistribution


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


_ANSWER_FIELDS = ("tokens", "log_p", "log_z", "entropy", "length", "cut_log_prob")


class Suffix(NamedTuple):
    """Tokens a backend decoded from per-row start positions; column j is position start + j."""

    tokens: torch.Tensor  # [R, L]
    log_p: torch.Tensor  # [R, L]
    log_z: torch.Tensor  # [R, L]
    entropy: torch.Tensor  # [R, L]
    length: torch.Tensor  # [R]: valid columns (up to and including EOS, or up to the cap)
    forwarded: torch.Tensor  # [R]: positions this decode ran through the model for the row


class Info(NamedTuple):
    """What one MH step did, per row."""

    cut: torch.Tensor  # [R] long
    accepted: torch.Tensor  # [R] bool
    log_ratio: torch.Tensor  # [R] float32: log acceptance ratio (before min(0, .))
    proposal_length: torch.Tensor  # [R] long


class Backend(Protocol):
    """What the kernel needs from a model runtime; it keeps each row's KV cache in step with the State."""

    def decode(self, start: torch.Tensor, cap: int, generator: torch.Generator) -> Suffix:
        """Sample from the proposal from position `start[r]` of each row until EOS or position `cap`."""

    def commit(self, accepted: torch.Tensor, start: torch.Tensor, cap: int) -> None:
        """Make the last decoded suffix part of the rows where `accepted`; drop it elsewhere."""

    def select_rows(self, rows: torch.Tensor) -> None:
        """Keep only these rows (a 1-D index tensor)."""


def init(num_rows: int, max_new_tokens: int, tokens_forwarded: torch.Tensor) -> State:
    """An empty answer for every row; `tokens_forwarded` is what the prompt prefill cost."""
    device = tokens_forwarded.device
    floats = torch.zeros(num_rows, max_new_tokens, device=device)
    counter = torch.zeros(num_rows, dtype=torch.long, device=device)
    tokens = torch.zeros(num_rows, max_new_tokens, dtype=torch.long, device=device)
    return State(tokens, floats, floats, floats, counter, floats, counter, counter, counter, tokens_forwarded)


def cut_log_probs(cut: CutDistribution, entropy: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
    """Normalised log-probabilities of cutting at each position in `[0, length)`; uniform if all weights are 0."""
    valid = torch.arange(entropy.shape[1], device=entropy.device)[None, :] < length[:, None]
    log_w = cut.log_weights(entropy, length).float().masked_fill(~valid, float("-inf"))
    no_weight = torch.isneginf(log_w).all(dim=1, keepdim=True)
    log_w = torch.where(no_weight & valid, torch.zeros_like(log_w), log_w)
    return log_w - torch.logsumexp(log_w, dim=1, keepdim=True)


def propose_cut(rng: torch.Generator, state: State) -> torch.Tensor:
    """Draw a cut position per row from the cached cut distribution (Gumbel-max, on the device)."""
    uniform = torch.rand(state.cut_log_prob.shape, generator=rng, device=state.tokens.device)
    gumbel = -torch.log(-torch.log(uniform.clamp_min(torch.finfo(uniform.dtype).tiny)))
    return torch.argmax(state.cut_log_prob + gumbel, dim=1)


def splice(kept: torch.Tensor, new: torch.Tensor, start: torch.Tensor, size: int, dim: int = 1) -> torch.Tensor:
    """Along `dim` (rows on dim 0): positions `< start[r]` from `kept`, from `start[r]` on from `new`.

    `new` is suffix-aligned (its index 0 is position `start[r]`); the result has `size` positions.
    `kept` may be shorter than `size`; positions past both inputs hold junk. A row with
    `start >= size` keeps `kept` unchanged.
    """
    if kept.shape[dim] < size:
        missing = list(kept.shape)
        missing[dim] = size - kept.shape[dim]
        kept = torch.cat([kept, kept.new_zeros(missing)], dim)
    kept = kept.narrow(dim, 0, size)
    offset = torch.arange(size, device=kept.device)[None, :] - start[:, None]
    from_new = (offset >= 0) & (offset < new.shape[dim])
    view = [kept.shape[0]] + [1] * (kept.dim() - 1)
    view[dim] = size
    index = offset.clamp(0, new.shape[dim] - 1).view(view).expand(*kept.shape[:dim], size, *kept.shape[dim + 1 :])
    return torch.where(from_new.view(view), new.gather(dim, index), kept)


def candidate(state: State, suffix: Suffix, start: torch.Tensor, cut: CutDistribution) -> State:
    """The state with its answer replaced from `start` on by `suffix`; counters updated for the decode."""
    length = start + suffix.length
    size = state.tokens.shape[1]
    entropy = splice(state.entropy, suffix.entropy, start, size)
    return state._replace(
        tokens=splice(state.tokens, suffix.tokens, start, size),
        log_p=splice(state.log_p, suffix.log_p, start, size),
        log_z=splice(state.log_z, suffix.log_z, start, size),
        entropy=entropy,
        length=length,
        cut_log_prob=cut_log_probs(cut, entropy, length),
        tokens_decoded=state.tokens_decoded + suffix.length,
        tokens_forwarded=state.tokens_forwarded + suffix.forwarded,
    )


def _suffix_sum(values: torch.Tensor, start: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
    position = torch.arange(values.shape[1], device=values.device)[None, :]
    inside = (position >= start[:, None]) & (position < length[:, None])
    return torch.where(inside, values, torch.zeros_like(values)).sum(1)


def accept_reject(rng: torch.Generator, state: State, proposed: State, cut: torch.Tensor) -> tuple[State, Info]:
    """The MH accept/reject of `proposed` (which shares `y_<cut` with `state`), row by row on the device."""
    log_ratio = (
        _suffix_sum(proposed.log_z, cut, proposed.length)
        - _suffix_sum(state.log_z, cut, state.length)
        + proposed.cut_log_prob.gather(1, cut[:, None]).squeeze(1)
        - state.cut_log_prob.gather(1, cut[:, None]).squeeze(1)
    )
    uniform = torch.rand(log_ratio.shape, generator=rng, device=log_ratio.device)
    accepted = torch.log(uniform) < log_ratio
    chosen = {
        name: torch.where(accepted.view(-1, *[1] * (kept.dim() - 1)), getattr(proposed, name), kept)
        for name, kept in state._asdict().items()
        if name in _ANSWER_FIELDS
    }
    new_state = state._replace(
        **chosen,
        proposals=state.proposals + 1,
        accepted=state.accepted + accepted.long(),
        tokens_decoded=proposed.tokens_decoded,
        tokens_forwarded=proposed.tokens_forwarded,
    )
    return new_state, Info(cut, accepted, log_ratio, proposed.length - cut)


def extend(rng: torch.Generator, state: State, backend: Backend, cut: CutDistribution, cap: int) -> State:
    """Grow every row from its current end by proposal draws up to position `cap` (no MH)."""
    start = state.length
    suffix = backend.decode(start, cap, rng)
    backend.commit(torch.ones_like(start, dtype=torch.bool), start, cap)
    return candidate(state, suffix, start, cut)


def mh_step(rng: torch.Generator, state: State, backend: Backend, cut: CutDistribution, cap: int) -> tuple[State, Info]:
    """One ECMH step for all rows: draw cuts, decode proposals to `cap`, accept or reject."""
    cut_at = propose_cut(rng, state)
    suffix = backend.decode(cut_at, cap, rng)
    new_state, info = accept_reject(rng, state, candidate(state, suffix, cut_at, cut), cut_at)
    backend.commit(info.accepted, cut_at, cap)
    return new_state, info
