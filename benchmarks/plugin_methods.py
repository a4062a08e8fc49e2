"""The benchmark methods of installed plugins (`ecmh.plugins`): a sampler that a package's `ecmh.samplers` entry point
adds is the method of its name (`methods.SamplerMethod`), and a cut that an `ecmh.cuts` entry point adds is block-wise MH
with it, `<cut>_mh` (`methods.MH`, as `uniform_mh`), both after the registered methods. `register` is called where
the methods are first listed: the runner's command line, the speed benchmark's, and each process that samples units
(`sweep.UnitSampler`, Ray actors included)."""

from ecmh import algorithms, cuts

from . import registry
from .methods import MH, Method, SamplerMethod


def plugin_methods() -> list[Method]:
    samplers = [SamplerMethod(name, entry.summary, algorithm=name) for name, entry in algorithms.REGISTRY.items()
                if name in algorithms.REGISTRY.plugins]
    mh = [MH(f"{name}_mh", f"`p^α` by block-wise MH, cut {cut.summary}", cut=name) for name, cut in cuts.CUTS.items()
          if name in cuts.CUTS.plugins]
    return samplers + mh


def register() -> None:
    """Register every plugin's method not registered yet (so calling it again does nothing)."""
    for method in plugin_methods():
        if method.name not in registry.METHODS:
            registry.register(method)
