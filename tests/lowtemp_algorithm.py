"""A third sampler, written as a user would add one: plain low-temperature sampling (one draw per answer from the
proposal `p^alpha / Z`, no correction) as an `ecmh.algorithm.Algorithm`. Its options are `alpha` only.

Registering it is one line, in the caller's code (`tests/test_third_algorithm.py`):

    ecmh.algorithms.register("lowtemp", lowtemp_algorithm.ENTRY)

Each row draws with the key MH's first proposal of its chain has (`mh.proposal_key(chain, 0, 0, 0)`), so its answers
equal `algorithm="mh"` with `mcmc_steps=0, block_size=max_new_tokens` at the same seed: a check that `generate`
drives it as it drives the built-in samplers.
"""

import dataclasses

import torch

from ecmh import kernel, keyed, mh
from ecmh.algorithms import Entry
from ecmh.cuts import UniformCut
from ecmh.options import PowerTarget
from ecmh.outputs import Output, Stats, continuations
from ecmh.scoring import PowerProposal


@dataclasses.dataclass(frozen=True, kw_only=True)
class LowTempOptions(PowerTarget):
    """The options of plain low-temperature sampling: the target's `alpha` (its proposal's temperature is 1/alpha)."""


class LowTemp:
    """One proposal per row from position 0 to `max_new_tokens`, returned as it is."""

    def __init__(self, options: LowTempOptions, generation):
        self.proposal = PowerProposal(options.alpha, generation.top_k, generation.top_p)

    def prompt_rows(self, num_return_sequences: int) -> int:
        return num_return_sequences

    def init(self, rng, backend, forwarded, terminal) -> kernel.State:
        state = kernel.init(forwarded.shape[0], terminal.max_new_tokens, forwarded)
        zeros = torch.zeros_like(state.length)
        key = mh.proposal_key(keyed.keys(rng, len(zeros)).to(zeros.device), zeros, zeros, 0)
        backend.start(torch.ones_like(zeros, dtype=torch.bool), zeros, torch.full_like(zeros, terminal.max_new_tokens),
                      state.tokens, kernel.engine_seed(key))
        return state

    def step(self, rng, state: kernel.State, backend, terminal, decoded) -> tuple[kernel.State, bool]:
        finished, suffix = decoded
        start = torch.zeros_like(state.length)
        state = kernel.where_rows(finished, kernel.candidate(state, suffix, start, UniformCut()), state)
        backend.commit(finished, start)
        return state, bool((state.length > 0).all())  # every answer has at least one token once decoded

    def output(self, rng, state: kernel.State, prompts, generation):
        sequences, trace = continuations(state, prompts, generation.pad_token_id)
        if not generation.return_dict_in_generate:
            return sequences
        stats = Stats(log_p=trace.log_p.sum(1), tokens_decoded=state.tokens_decoded,
                      tokens_forwarded=state.tokens_forwarded, sequential_passes=state.tokens_decoded + 1)
        return Output(sequences, stats, trace)


ENTRY = Entry(LowTempOptions, LowTemp, "plain sampling at temperature 1/alpha: one draw per answer, no correction")
