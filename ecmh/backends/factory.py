"""`for_model`: the backend that runs a model. A new backend is one line here (and its module)."""

from .base import Backend


def for_model(model) -> Backend:
    """The backend that runs `model`: a `vllm.LLM` (from `ecmh.load_vllm`), a transformers causal LM,
    or a ready `Backend` (returned as it is)."""
    if isinstance(model, Backend):
        return model
    from . import vllm

    if vllm.is_vllm_engine(model):
        return vllm.VLLMBackend(model)
    from .transformers import TransformersBackend

    return TransformersBackend(model)
