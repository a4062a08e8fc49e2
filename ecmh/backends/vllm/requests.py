"""What `VLLMBackend` keeps about its engine requests: a proposal decoded ahead (`Guess`), the counts of what
speculation and early rejection did in one generation, and the positions the engine ran for a request."""

from dataclasses import dataclass
from typing import Optional


@dataclass
class Guess:
    """A proposal decoded ahead for a row (`speculate`): what it starts from, and its request once sent."""

    start: int
    cap: int
    seed: int
    kept: list  # the answer prefix it keeps
    request: Optional[str] = None  # its engine request id, once sent
    output: object = None  # the request's latest `RequestOutput` (cumulative), once the engine returned one

    def forwarded(self) -> int:
        return 0 if self.output is None else forwarded(self.output)


@dataclass
class SpeculationCounts:
    """What speculation did in one generation (`VLLMBackend.speculation`)."""

    sent: int = 0  # proposals decoded ahead
    adopted: int = 0  # ... that were the row's next proposal
    discarded: int = 0  # ... that were not (aborted, or finished for nothing)
    discarded_forwarded: int = 0  # positions the engine ran for the discarded ones (not in any row's stats)


@dataclass
class EarlyStopCounts:
    """What early rejection did in one generation (`VLLMBackend.early_stops`)."""

    aborted: int = 0  # requests aborted at their bound's first crossing
    past_crossing: int = 0  # tokens the engine returned for them after the crossing (not in any row's stats)


def forwarded(output) -> int:
    """Positions the engine ran for a request so far: its prompt less prefix-cache hits, plus its tokens."""
    return len(output.prompt_token_ids) - (output.num_cached_tokens or 0) + len(output.outputs[0].token_ids)
