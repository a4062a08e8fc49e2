"""`for_model`: the backend that runs a model, the first runtime of `RUNTIMES` that accepts it, else the transformers
backend. A new runtime is one module and one `register` line, or one entry point of group `ecmh.backends` in its
package (`ecmh.plugins`); each runtime imports its framework only when asked, so a missing framework costs nothing."""

from typing import Callable, NamedTuple

from ..plugins import Registry
from .base import Backend


class Runtime(NamedTuple):
    accepts: Callable[[object], bool]  # accepts(model): whether this runtime runs `model`
    build: Callable[[object], Backend]  # build(model): its backend


def _is_vllm(model) -> bool:
    from .vllm import is_vllm_engine

    return is_vllm_engine(model)


def _vllm(model) -> Backend:
    from .vllm import VLLMBackend

    return VLLMBackend(model)


def _transformers(model) -> Backend:
    from .transformers import TransformersBackend

    return TransformersBackend(model)


RUNTIMES = Registry("ecmh.backends", Runtime)  # tried in order
register = RUNTIMES.register
register("backend", Runtime(lambda model: isinstance(model, Backend), lambda backend: backend))
register("vllm", Runtime(_is_vllm, _vllm))


def for_model(model) -> Backend:
    """The backend that runs `model`: a ready `Backend` (returned as it is), a `vllm.LLM` (from `ecmh.load_vllm`), a
    model a plugin's runtime accepts, or else a transformers causal LM (what every other model is taken for)."""
    build = next((runtime.build for runtime in RUNTIMES.values() if runtime.accepts(model)), _transformers)
    return build(model)
