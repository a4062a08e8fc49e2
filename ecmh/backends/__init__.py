"""Model runtimes for the ECMH sampler: the contract (`base.Backend`) and the factory (`factory.for_model`), loaded on
first use so that importing the contract alone imports no model framework."""

import importlib

__all__ = ["Backend", "for_model"]


def __getattr__(name: str):
    if name not in __all__:
        raise AttributeError(f"module 'ecmh.backends' has no attribute {name!r}")
    value = getattr(importlib.import_module(".base" if name == "Backend" else ".factory", __name__), name)
    globals()[name] = value
    return value
