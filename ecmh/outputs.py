"""What `ecmh.generate` returns: the data that `metrics`, `select`, `plots` and `diagnostics` read (they depend
on these types, not on the driver). Every algorithm's output is an `Output` (`sequences`, `stats`, `trace`) whose
`stats` hold at least the common `Stats`; an algorithm's own numbers live in its own types (`MHOutput` with
`ChainStats` and `history`, `SMCOutput` with `particles`)."""

from dataclasses import dataclass, fields
from typing import NamedTuple, Optional

import torch

from .history import History


@dataclass(frozen=True)
class Stats:
    """Per returned row, what every algorithm reports: the answer's log-likelihood and what it cost."""

    log_p: torch.Tensor  # base-model log-likelihood of the returned continuation
    tokens_decoded: torch.Tensor  # every token sampled, rejected proposals and discarded particles included
    tokens_forwarded: torch.Tensor  # every position run through the model, prefill and padding included
    sequential_passes: torch.Tensor  # forward passes the answer waited for one after another (the prompt's included)

    def as_dict(self) -> dict[str, torch.Tensor]:
        """Every field by name, in declaration order (the common ones first)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def row(self, index: int) -> dict:
        """Row `index` as Python numbers, ready for JSON (NaN as None)."""
        values = {name: value[index].item() for name, value in self.as_dict().items()}
        return {name: None if value != value else value for name, value in values.items()}


@dataclass(frozen=True)
class ChainStats(Stats):
    """Per returned row of MH (`algorithm="mh"`): the common statistics and the chain's own."""

    acceptance_rate: torch.Tensor  # accepted / proposals (NaN with mcmc_steps=0)
    proposals: torch.Tensor  # MH proposals settled (block extensions not counted)
    accepted: torch.Tensor
    early_rejections: torch.Tensor  # MH proposals rejected by exact early rejection (stopped there when enabled)
    tries: torch.Tensor  # candidates decoded side by side per MH proposal (`tries`)


class Trace(NamedTuple):
    """Per returned row and continuation position `t < length`, the numbers the sampler stored for it
    (float32, taken from the logits of the decoding step that drew the token; 0 past `length`)."""

    log_p: torch.Tensor  # [R, L] log p(y_t | prompt, y_<t)
    log_z: torch.Tensor  # [R, L] log sum_v p(v | prompt, y_<t)^alpha
    entropy: torch.Tensor  # [R, L] entropy of p(. | prompt, y_<t)
    length: torch.Tensor  # [R] continuation length (up to and including EOS or the token ending a stop string)


class ParticleSet(NamedTuple):
    """Every particle of a Sequential Monte Carlo run (`algorithm="smc"`), per prompt `g` rows `g * N .. g * N + N - 1`."""

    sequences: torch.Tensor  # [G * N, P + L] prompt + continuation, `pad_token_id` after the end
    log_weights: torch.Tensor  # [G, N] final log-weights (unnormalised)
    weights: torch.Tensor  # [G, N] the same, normalised per prompt
    log_evidence: torch.Tensor  # [G] log of the estimate of Z = sum_y p(y | prompt)^alpha (the estimate is unbiased)
    ess: torch.Tensor  # [G, checks] effective sample size at each check, before resampling (NaN once all finished)
    resamples: torch.Tensor  # [G] resampling events
    chosen: torch.Tensor  # [G, num_return_sequences] the particle each returned row is (drawn by `weights`)
    trace: Trace  # per particle


@dataclass
class Output:
    """What `ecmh.generate(..., return_dict_in_generate=True)` returns: the common part of every algorithm's output."""

    sequences: torch.Tensor  # prompt + continuation, `pad_token_id` after the end
    stats: Stats
    trace: Trace


@dataclass
class MHOutput(Output):
    """ECMH's output (`algorithm="mh"`): its statistics per chain and, with `record_history=True`, every proposal."""

    stats: ChainStats
    history: Optional[History] = None


@dataclass
class SMCOutput(Output):
    """Sequential Monte Carlo's output (`algorithm="smc"`): the returned rows and every particle they were drawn from."""

    particles: ParticleSet


def continuations(state, prompts: torch.Tensor, pad_token_id: int) -> tuple[torch.Tensor, Trace]:
    """Prompt + continuation of every row of `state` (any state with `tokens`, `log_p`, `log_z`, `entropy` `[R, T]` and
    `length` `[R]`), `pad_token_id` after each end, and the per-position numbers."""
    width = int(state.length.max())
    valid = torch.arange(width, device=prompts.device)[None, :] < state.length[:, None]
    continuation = torch.where(valid, state.tokens[:, :width], pad_token_id)
    trace = Trace(*(torch.where(valid, x[:, :width], torch.zeros_like(x[:, :width]))
                    for x in (state.log_p, state.log_z, state.entropy)), state.length)
    return torch.cat([prompts, continuation], dim=1), trace
