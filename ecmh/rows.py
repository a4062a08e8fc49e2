"""The row protocol: which rows of a sampler's full batch the backend is decoding, and how that changes.

A sampler keeps one row per chain or particle (its "full" rows); the backend holds only those still running, in
some order. `index` maps each backend row to its full row. Rows leave the backend (`keep`), are copied into new
backend rows (`keep` with repeated indices: a resampled particle takes its ancestor's cache), and write what they
hold back into the full rows (`put`). Every function is tensor code on the device: no host synchronisation.

Example:
    >>> from typing import NamedTuple
    >>> class Pair(NamedTuple):
    ...     a: torch.Tensor
    ...     b: torch.Tensor
    >>> full = Pair(torch.zeros(4), torch.arange(4))
    >>> index = torch.tensor([3, 1])
    >>> take(full, index).b.tolist()
    [3, 1]
    >>> put(full, index, Pair(torch.ones(2), torch.tensor([7, 8]))).b.tolist()
    [0, 8, 2, 7]
    >>> backend_row(index, 4).tolist()
    [-1, 1, -1, 0]
    >>> all_in(torch.tensor([True, False, False, False]), torch.tensor([False, False, False, True]), 2).tolist()
    [True, False]
"""

from typing import NamedTuple, TypeVar

import torch

from .backends.base import Backend

Rows = TypeVar("Rows", bound=NamedTuple)


def take(values: Rows, index: torch.Tensor) -> Rows:
    """Rows `index` of every field of `values` (a tuple of tensors with rows first)."""
    return type(values)(*(x[index] for x in values))


def put(into: Rows, index: torch.Tensor, values: Rows) -> Rows:
    """`into` with its rows `index` replaced by the rows of `values`, field by field."""
    return type(into)(*(x.index_copy(0, index, y) for x, y in zip(into, values)))


def backend_row(index: torch.Tensor, full_rows: int) -> torch.Tensor:
    """The inverse of `index`: each full row's backend row, `-1` where the backend holds none."""
    return torch.full((full_rows,), -1, dtype=index.dtype, device=index.device).index_copy(
        0, index, torch.arange(len(index), device=index.device))


def spread(values: torch.Tensor, width: int) -> torch.Tensor:
    """A per-group tensor repeated for each of the group's `width` backend rows."""
    return values.repeat_interleave(width, dim=0)


def all_in(finished: torch.Tensor, decoding: torch.Tensor, width: int) -> torch.Tensor:
    """Per group of `width` backend rows: some row finished now (`finished`) and none is still `decoding`."""
    return finished.view(-1, width).any(1) & ~decoding.view(-1, width).any(1)


def keep(backend: Backend, kept: torch.Tensor, width: int = 1) -> torch.Tensor:
    """The backend keeps groups `kept` (each group `width` consecutive backend rows, a multiple-try chain's
    candidates), in that order, repeated ones copied; returns the backend rows kept, in their new order."""
    rows = (kept[:, None] * width + torch.arange(width, device=kept.device)).view(-1)
    backend.select_rows(rows)
    return rows
