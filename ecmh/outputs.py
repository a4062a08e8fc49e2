"""What `ecmh.generate` returns: the data that `metrics`, `select`, `plots` and `diagnostics` read (they depend
on these types, not on the driver)."""

from dataclasses import dataclass
from typing import NamedTuple, Optional

import torch

from .history import History


class Stats(NamedTuple):
    """Per returned row."""

    acceptance_rate: torch.Tensor  # accepted / proposals (NaN with mcmc_steps=0)
    proposals: torch.Tensor
    accepted: torch.Tensor
    tokens_decoded: torch.Tensor  # every token sampled, rejected proposals included
    tokens_forwarded: torch.Tensor  # every position run through the model, prefill and padding included
    log_p: torch.Tensor  # base-model log-likelihood of the returned continuation
    sequential_passes: torch.Tensor  # forward passes the answer waited for one after another (the prompt's included)
    early_rejections: torch.Tensor  # MH proposals rejected by exact early rejection (stopped there when enabled)
    tries: torch.Tensor  # candidates decoded side by side per MH proposal (ECMH's `tries`; 0 where none is made)


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
class ECMHOutput:
    sequences: torch.Tensor  # prompt + continuation, `pad_token_id` after the end
    stats: Stats
    trace: Trace
    history: Optional[History] = None  # with `record_history=True`
    particles: Optional[ParticleSet] = None  # with `algorithm="smc"`


def continuations(state, prompts: torch.Tensor, pad_token_id: int) -> tuple[torch.Tensor, Trace]:
    """Prompt + continuation of every row of `state` (any state with `tokens`, `log_p`, `log_z`, `entropy` `[R, T]` and
    `length` `[R]`), `pad_token_id` after each end, and the per-position numbers."""
    width = int(state.length.max())
    valid = torch.arange(width, device=prompts.device)[None, :] < state.length[:, None]
    continuation = torch.where(valid, state.tokens[:, :width], pad_token_id)
    trace = Trace(*(torch.where(valid, x[:, :width], torch.zeros_like(x[:, :width]))
                    for x in (state.log_p, state.log_z, state.entropy)), state.length)
    return torch.cat([prompts, continuation], dim=1), trace
