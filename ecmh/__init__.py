"""ecmh: sample from the power distribution p(y)^alpha with Entropy-Cut Metropolis-Hastings or Sequential Monte Carlo."""

from . import diagnostics, metrics
from .backends.vllm import load_vllm
from .cuts import CutDistribution, EntropyCut, RestartCut, UniformCut
from .mh import Info, SamplerConfig
from .smc import SMCConfig
from .generation import generate
from .outputs import ECMHOutput, ParticleSet, Stats, Trace
from .history import History, HistoryRecorder
from .kernel import State
from .models import load_model
from .prompts import encode_prompts
from .select import select

__all__ = [
    "generate", "load_model", "load_vllm", "encode_prompts", "SamplerConfig", "SMCConfig", "ECMHOutput", "ParticleSet", "Stats", "Trace", "State", "Info",
    "CutDistribution", "EntropyCut", "UniformCut", "RestartCut", "History", "HistoryRecorder", "select", "metrics",
    "diagnostics",
]
__version__ = "0.1.1"
