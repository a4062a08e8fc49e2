"""ecmh: sample from the power distribution p(y)^alpha with Entropy-Cut Metropolis-Hastings or Sequential Monte Carlo.

The public names load on first use (PEP 562), so importing one module of the package (the backend contract
`ecmh.backends.base`, say) loads only what that module needs, not transformers."""

import importlib

_PUBLIC = {  # name -> the module that defines it
    "generate": "generation", "load_model": "models", "load_vllm": "backends.vllm", "encode_prompts": "prompts",
    "SamplerConfig": "mh", "Info": "mh", "SMCConfig": "smc", "Output": "outputs", "MHOutput": "outputs",
    "SMCOutput": "outputs", "ParticleSet": "outputs", "Stats": "outputs", "ChainStats": "outputs", "Trace": "outputs", "State": "kernel", "CutDistribution": "cuts", "EntropyCut": "cuts",
    "UniformCut": "cuts", "RestartCut": "cuts", "History": "history", "HistoryRecorder": "history", "select": "selection",
}
_SUBMODULES = ("metrics", "diagnostics")
__all__ = [*_PUBLIC, *_SUBMODULES]
__version__ = "0.1.1"


def __getattr__(name: str):
    """A public name, or any submodule (`ecmh.kernel`, ...), imported when first asked for."""
    if name in _PUBLIC:
        value = getattr(importlib.import_module(f".{_PUBLIC[name]}", __name__), name)
    else:
        try:
            value = importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as missing:
            if missing.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module 'ecmh' has no attribute {name!r}") from None
    globals()[name] = value
    return value


def __dir__():
    return sorted({*globals(), *__all__})
