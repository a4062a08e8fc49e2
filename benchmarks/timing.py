"""What the speed benchmarks measure with: wall time synchronised on CUDA (`timed`), the time and the positions
inside `model.forward` (`ForwardTimer`, `ForwardCounter`), and peak memory."""

import resource
import time

import torch


class ForwardTimer:
    """Wall time spent inside `model.forward` (synchronised on CUDA)."""

    def __init__(self, model):
        self.seconds, self._start = 0.0, None
        self.handles = [model.register_forward_pre_hook(self._enter), model.register_forward_hook(self._exit)]

    def _enter(self, *args):
        _sync()
        self._start = time.perf_counter()

    def _exit(self, *args):
        _sync()
        self.seconds += time.perf_counter() - self._start

    def remove(self):
        for handle in self.handles:
            handle.remove()


class ForwardCounter:
    """Positions run through `model.forward` (rows x width of every call's `input_ids`)."""

    def __init__(self, model):
        self.shapes = []
        self.handle = model.register_forward_hook(self._count, with_kwargs=True)

    def _count(self, module, args, kwargs, output):
        self.shapes.append(tuple(kwargs["input_ids"].shape))

    @property
    def positions(self) -> int:
        return sum(rows * width for rows, width in self.shapes)


def _sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def peak_memory_mb() -> float:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn):
    _sync()
    start = time.perf_counter()
    result = fn()
    _sync()
    return result, time.perf_counter() - start
