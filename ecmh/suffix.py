"""What a backend returns for the proposals it decodes (`ecmh.backends.base.Backend.step`): per row the tokens from
the proposal's start and, for each, the numbers the sampler stores (`ecmh.scoring.PowerProposal`). Plain tensors
only: the backend contract and the kernels share this type without importing each other."""

from typing import NamedTuple

import torch


class Suffix(NamedTuple):
    """Tokens a backend decoded from per-row start positions; column j is position start + j."""

    tokens: torch.Tensor  # [R, L]
    log_p: torch.Tensor  # [R, L]
    log_z: torch.Tensor  # [R, L]
    entropy: torch.Tensor  # [R, L]
    length: torch.Tensor  # [R]: valid columns (up to and including EOS or a stop string's last token, or up to the cap)
    forwarded: torch.Tensor  # [R]: positions this decode ran through the model for the row

    @classmethod
    def empty(cls, rows: int, width: int, device) -> "Suffix":
        """Room for `width` tokens per row, none decoded yet."""
        floats = [torch.zeros(rows, width, device=device) for _ in range(3)]
        counters = [torch.zeros(rows, dtype=torch.long, device=device) for _ in range(2)]
        return cls(torch.zeros(rows, width, dtype=torch.long, device=device), *floats, *counters)

    def append(self, draw) -> "Suffix":
        """One more token per row: `draw` holds per row its token, `log p`, `log Z` and entropy (a `TokenDraw`)."""
        column = self.length.clamp_max(self.tokens.shape[1] - 1)[:, None]  # a full row's append is discarded
        values = (x.scatter(1, column, value[:, None]) for x, value in zip(self[:4], draw))
        return Suffix(*values, length=self.length + 1, forwarded=self.forwarded + 1)
