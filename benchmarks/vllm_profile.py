"""Where a decoded token's time goes on vLLM (`python -m benchmarks.speed --backend vllm --profile`).

Timers wrap the parts from outside, without changing them: in the engine's worker process (installed by
`LLM.collective_rpc`, which needs `VLLM_ALLOW_INSECURE_SERIALIZATION=1` set before the engine starts) the
model's forward and the number of forwards, one per engine step (ecmh's logits processor and the rest of the worker's step are not timed apart yet: patching
them from outside did not reach the worker's calls on vLLM 0.32); in this process `LLMEngine.step` (the wait for the engine core, then turning its outputs into
`RequestOutput`s), that output processing alone, and the building and submission of requests. What is
left of the wall time is ecmh's host work between engine steps (cut, accept/reject, bookkeeping).
The worker runs while this process works, so engine-side and client-side shares overlap; each side sums
to its own whole.
"""

import time
from contextlib import contextmanager

WORKER_PARTS = ("forward",)
CLIENT_PARTS = ("engine_wait", "output_processing", "requests", "host")
WORKER_TIMES = dict.fromkeys(WORKER_PARTS + ("forward_calls",), 0.0)  # in the worker process


def _timed(function, part: str, times: dict):
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            times[part] += time.perf_counter() - start
    return wrapper


def install_worker_timers(worker) -> bool:
    """Runs in each worker (`LLM.collective_rpc`): time the model's forward."""
    def enter(*args):
        WORKER_TIMES["_forward_start"] = time.perf_counter()

    def leave(*args):
        WORKER_TIMES["forward"] += time.perf_counter() - WORKER_TIMES.pop("_forward_start")
        WORKER_TIMES["forward_calls"] += 1

    worker.model_runner.model.register_forward_pre_hook(enter)
    worker.model_runner.model.register_forward_hook(leave)
    return True


def take_worker_times(worker) -> dict:
    """Runs in each worker: the seconds timed and the forwards counted since the last call."""
    taken = dict(WORKER_TIMES)
    WORKER_TIMES.update(dict.fromkeys(taken, 0.0))
    return taken


def install(llm) -> None:
    llm.collective_rpc(install_worker_timers)


@contextmanager
def client_timers(llm, times: dict):
    """Time this process's side of the engine while the block runs (`times` gets seconds per part)."""
    from ecmh.backends.vllm.backend import VLLMBackend

    times.update(dict.fromkeys(("step", "output_processing", "requests"), 0.0))
    engine, processor = llm.llm_engine, llm.llm_engine.output_processor
    request, enqueue = VLLMBackend._request, llm.enqueue
    engine.step = _timed(engine.step, "step", times)
    processor.process_outputs = _timed(processor.process_outputs, "output_processing", times)
    VLLMBackend._request = _timed(request, "requests", times)
    llm.enqueue = _timed(enqueue, "requests", times)
    try:
        yield times
    finally:
        del engine.step, processor.process_outputs, llm.enqueue  # the instance attributes: the methods again
        VLLMBackend._request = request


def profile(llm, run) -> dict:
    """Seconds per part of one call of `run()` (which drives `llm`): both sides, and the wall time."""
    llm.collective_rpc(take_worker_times)  # start from zero
    times = {}
    with client_timers(llm, times):
        start = time.perf_counter()
        result = run()
        wall = time.perf_counter() - start
    taken = llm.collective_rpc(take_worker_times)
    worker = {part: sum(w[part] for w in taken) for part in WORKER_PARTS}
    client = {"engine_wait": times["step"] - times["output_processing"],
              "output_processing": times["output_processing"], "requests": times["requests"]}
    client["host"] = wall - sum(client.values())
    return {"result": result, "wall": wall, "worker": worker, "client": client, "forward_calls": taken[0]["forward_calls"]}


def shares(profiled: dict, decoded: int) -> dict:
    """ms per decoded token of each part and its share of the wall time; ms per engine step (a forward of the
    model) and the tokens decoded per step, which is how many of the rows the engine had running on average."""
    parts = {**profiled["worker"], **profiled["client"]}
    forwards = profiled["forward_calls"]
    return {"ms_per_token": 1e3 * profiled["wall"] / decoded, "ms_per_forward": 1e3 * profiled["wall"] / forwards,
            "decoded_per_forward": decoded / forwards,
            **{f"{part}_ms": 1e3 * seconds / decoded for part, seconds in parts.items()},
            **{f"{part}_share": seconds / profiled["wall"] for part, seconds in parts.items()}}
