"""The vLLM backend: the same ECMH sampler core (`ecmh.kernel`, `ecmh.mh`, `ecmh.smc`) on a `vllm.LLM` engine.

- `engine.py`: `load_vllm`, which builds a `vllm.LLM` with what ecmh needs, and the check for it;
- `backend.py`: `VLLMBackend`, the `ecmh.backends.base.Backend` that drives the engine;
- `requests.py`: what it keeps about its requests (a proposal decoded ahead, counts of speculation and early stops);
- `processor.py`: the logits processor that runs inside the engine, draws each token and scores it;
- `channel.py`: how its numbers come back to the backend through vLLM's ordinary outputs.

Importing this package never imports vLLM; `processor.py` (which subclasses vLLM's class) is
loaded by vLLM itself, by name, in each engine process.
"""

from .backend import VLLMBackend
from .engine import is_vllm_engine, load_vllm

__all__ = ["VLLMBackend", "is_vllm_engine", "load_vllm"]
