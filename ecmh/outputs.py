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


class Trace(NamedTuple):
    """Per returned row and continuation position `t < length`, the numbers the sampler stored for it
    (float32, taken from the logits of the decoding step that drew the token; 0 past `length`)."""

    log_p: torch.Tensor  # [R, L] log p(y_t | prompt, y_<t)
    log_z: torch.Tensor  # [R, L] log sum_v p(v | prompt, y_<t)^alpha
    entropy: torch.Tensor  # [R, L] entropy of p(. | prompt, y_<t)
    length: torch.Tensor  # [R] continuation length (up to and including EOS or the token ending a stop string)


@dataclass
class ECMHOutput:
    sequences: torch.Tensor  # prompt + continuation, `pad_token_id` after the end
    stats: Stats
    trace: Trace
    history: Optional[History] = None  # with `record_history=True`
