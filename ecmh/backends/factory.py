"""`for_model`: the backend that runs a model, the first of `RUNTIMES` that accepts it. A new runtime is one entry
(and its module); each entry imports its runtime only when asked, so a missing framework costs nothing."""

from .base import Backend


def _is_vllm(model) -> bool:
    from .vllm import is_vllm_engine

    return is_vllm_engine(model)


def _vllm(model) -> Backend:
    from .vllm import VLLMBackend

    return VLLMBackend(model)


def _transformers(model) -> Backend:
    from .transformers import TransformersBackend

    return TransformersBackend(model)


RUNTIMES = [  # (accepts(model), build(model)), tried in order
    (lambda model: isinstance(model, Backend), lambda backend: backend),
    (_is_vllm, _vllm),
    (lambda model: True, _transformers),  # a transformers causal LM: what every other model is taken for
]


def for_model(model) -> Backend:
    """The backend that runs `model`: a ready `Backend` (returned as it is), a `vllm.LLM` (from `ecmh.load_vllm`), or
    a transformers causal LM."""
    return next(build for accepts, build in RUNTIMES if accepts(model))(model)
