"""ecmh: sample from the power distribution p(y)^alpha with Entropy-Cut Metropolis-Hastings or Sequential Monte Carlo.

The public names load on first use (PEP 562), so importing one module of the package (the backend contract
`ecmh.backends.base`, say) loads only what that module needs, not transformers."""

import importlib

_PUBLIC = {  # name -> the module that defines it
    "generate": "generation", "load_model": "models", "load_vllm": "backends.vllm", "encode_prompts": "prompts",
    "SamplerConfig": "mh", "Info": "mh", "SMCConfig": "smc", "ECMHOutput": "outputs", "ParticleSet": "outputs",
    "Stats": "outputs", "Trace": "outputs", "State": "kernel", "CutDistribution": "cuts", "EntropyCut": "cuts",
    "UniformCut": "cuts", "RestartCut": "cuts", "History": "history", "HistoryRecorder": "history", "select": "select",
}
_SUBMODULES = ("metrics", "diagnostics")
__all__ = [*_PUBLIC, *_SUBMODULES]
__version__ = "0.1.1"


def __getattr__(name: str):
    if name in _PUBLIC:
        value = getattr(importlib.import_module(f".{_PUBLIC[name]}", __name__), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module 'ecmh' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted({*globals(), *__all__})
