"""Model runtimes for the ECMH sampler: the contract (`base.Backend`) and the factory (`for_model`)."""

from .base import Backend, for_model

__all__ = ["Backend", "for_model"]
