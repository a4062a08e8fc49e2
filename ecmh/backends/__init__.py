"""Model runtimes for the ECMH sampler: the contract (`base.Backend`) and the factory (`factory.for_model`)."""

from .base import Backend
from .factory import for_model

__all__ = ["Backend", "for_model"]
