"""The one surface every sampler offers `ecmh.generate`, and the loop that drives it.

As blackjax's `SamplingAlgorithm` serves every kernel, an `Algorithm` is built once per call from its options (its
parameters closed over) and offers:

    algorithm.proposal                                   # what the backend draws tokens from (p^alpha / Z)
    algorithm.prompt_rows(num_return_sequences)         # rows each prompt starts with
    run = algorithm.init(rng, backend, forwarded, terminal)            # start the rows' first proposals
    run, done = algorithm.step(rng, run, backend, terminal, decoded)   # settle what the backend finished
    algorithm.output(rng, run, prompts, generation)     # the sequences, or an `ecmh.Output`

`drive` is the loop between `init` and `output`; `ecmh.algorithms` maps names to builders.
"""

from typing import Protocol

import torch

from .backends.base import Backend
from .scoring import PowerProposal
from .terminal import Terminal


class Algorithm(Protocol):
    proposal: PowerProposal

    def prompt_rows(self, num_return_sequences: int) -> int:
        """How many rows of the batch each prompt starts with."""

    def init(self, rng: torch.Generator, backend: Backend, forwarded: torch.Tensor, terminal: Terminal):
        """The run's first state (`forwarded`: positions each row's prompt cost); starts the rows' first proposals."""

    def step(self, rng: torch.Generator, run, backend: Backend, terminal: Terminal, decoded: tuple) -> tuple[object, bool]:
        """Settle `decoded` (`Backend.step`'s `(finished, suffix)`) and start what follows; returns the run and whether
        it is over."""

    def output(self, rng: torch.Generator, run, prompts: torch.Tensor, generation):
        """What `ecmh.generate` returns for the finished run (`prompts`: the rows' prompts, left-padded)."""


def drive(algorithm: Algorithm, rng: torch.Generator, backend: Backend, forwarded: torch.Tensor, terminal: Terminal):
    """Run `algorithm` on a prepared backend until it is over; returns its final run."""
    run = algorithm.init(rng, backend, forwarded, terminal)
    done = False
    while not done:
        decoded = backend.step(rng)
        if decoded is not None:
            run, done = algorithm.step(rng, run, backend, terminal, decoded)
    return run
