"""Every setting of a generation, in one place: ECMH's own options and their defaults (`SamplerConfig`,
`DEFAULTS`: `ecmh.generate`, the command line and the benchmarks all take their defaults from there),
what the model fills in (`ModelDefaults`), and the generation options resolved from the caller's
arguments and transformers' conventions (`GenerationSettings`).

The same rules serve a direct call and a call through `model.generate(custom_generate=...)`,
where transformers hands over a config with its own defaults already filled in (`top_k=50`,
the model's `generation_config.json`). A field counts as set by the caller only when it differs
from what transformers would fill in; unset sampling fields mean "no truncation", whatever the
model's or transformers' defaults say.
"""

import copy
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Union

from transformers import GenerationConfig

from . import compat
from .checks import check_int, is_int
from .cuts import CutDistribution, resolve_cut
from .resampling import check_scheme
from .stopping import as_stop_strings

BLOCKS_PER_ANSWER = 16  # the papers' block size: B = T / 16 ...
MIN_DEFAULT_BLOCK = 16  # ... but not below 16 tokens (or the whole answer): short tries stay quick

def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class SamplerConfig:
    """The options of one ECMH run.

    Args:
        alpha: the power of the target `p^alpha` (`>= 1`); proposals are drawn at temperature `1/alpha`.
        mcmc_steps: MH steps after each block (0: plain low-temperature sampling).
        block_size: tokens added per block; None means `max_new_tokens // 16` (the papers' T/16), at least 16
            tokens (or all of `max_new_tokens`), so that a short answer is not grown in 1-token blocks.
        cut: "entropy", "uniform", "restart", or an object with `log_weights(entropy, length)`.
        cut_power: the exponent of the entropy-jump weights (`cut="entropy"`).

    Example:
        >>> SamplerConfig(alpha=4.0, mcmc_steps=2).block_size_for(max_new_tokens=128)
        16
        >>> SamplerConfig().block_size_for(max_new_tokens=3072)
        192
        >>> SamplerConfig(alpha=0.5)
        Traceback (most recent call last):
        ...
        ValueError: `alpha` must be a finite number >= 1 (the power of p^alpha), got 0.5.
    """

    alpha: float = 4.0
    mcmc_steps: int = 10
    block_size: Optional[int] = None
    cut: Union[str, CutDistribution] = "entropy"
    cut_power: float = 4.0

    def __post_init__(self):
        if not _is_number(self.alpha) or not math.isfinite(self.alpha) or self.alpha < 1:
            raise ValueError(f"`alpha` must be a finite number >= 1 (the power of p^alpha), got {self.alpha!r}.")
        check_int("mcmc_steps", self.mcmc_steps, 0)
        if self.block_size is not None:
            check_int("block_size", self.block_size, 1, "or None (max_new_tokens // 16, at least 16)")
        self.cut_distribution  # checks `cut` and `cut_power`

    @property
    def cut_distribution(self) -> CutDistribution:
        return resolve_cut(self.cut, self.cut_power)

    def block_size_for(self, max_new_tokens: int) -> int:
        """Tokens per block for answers of up to `max_new_tokens` tokens."""
        if self.block_size is None:
            return min(max_new_tokens, max(MIN_DEFAULT_BLOCK, max_new_tokens // BLOCKS_PER_ANSWER))
        if self.block_size > max_new_tokens:
            raise ValueError(
                f"`block_size` must be an integer in [1, max_new_tokens={max_new_tokens}], got {self.block_size!r} "
                "(None means max_new_tokens // 16, at least 16)."
            )
        return self.block_size


DEFAULTS = SamplerConfig()

ALGORITHMS = ("mh", "smc")


@dataclass(frozen=True)
class SMCConfig:
    """The options of one Sequential Monte Carlo run (`ecmh.generate(..., algorithm="smc")`, `ecmh.smc`).

    Args:
        particles: particles per prompt, advanced together in one batch.
        ess_threshold: resample a prompt's particles when their effective sample size falls below
            `ess_threshold * particles` (0: never; 1: at every check where the weights differ).
        resampling: "systematic", "residual" or "multinomial" (`ecmh.resampling`).
        resample_every: tokens between two checks of the effective sample size (1: after every token;
            on vLLM each check ends the engine's requests, so larger intervals are cheaper there).
        bridge_tokens: raise the exponent of the intermediate targets from 1 to alpha over this many
            tokens (Power-SMC's exponent bridging; 0: target `p^alpha` from the first token). The final
            target is `p^alpha` either way.

    Example:
        >>> SMCConfig(particles=8).resample_every
        16
        >>> SMCConfig(particles=0)
        Traceback (most recent call last):
        ...
        ValueError: `particles` must be an integer >= 1, got 0.
    """

    particles: int = 16
    ess_threshold: float = 0.5
    resampling: str = "systematic"
    resample_every: int = 16
    bridge_tokens: int = 0

    def __post_init__(self):
        check_int("particles", self.particles, 1)
        if not _is_number(self.ess_threshold) or not 0 <= self.ess_threshold <= 1:
            raise ValueError(f"`ess_threshold` must be a number in [0, 1] (a fraction of the particles), "
                             f"got {self.ess_threshold!r}.")
        check_scheme(self.resampling)
        check_int("resample_every", self.resample_every, 1)
        check_int("bridge_tokens", self.bridge_tokens, 0, "(0: no exponent bridging)")

    @classmethod
    def from_options(cls, algorithm: str, options: dict) -> Optional["SMCConfig"]:
        """The SMC options of a call (`options`: each given value, None where not given), or None for MH."""
        if algorithm not in ALGORITHMS:
            raise ValueError(f"`algorithm` must be one of {', '.join(map(repr, ALGORITHMS))}, got {algorithm!r}.")
        given = {name: value for name, value in options.items() if value is not None}
        if algorithm == "mh":
            if given:
                raise ValueError(f"{', '.join(f'`{name}`' for name in given)} set(s) Sequential Monte Carlo: "
                                 "pass `algorithm=\"smc\"` too, or leave it out for MH.")
            return None
        return cls(**given)


# Generation options that would change the target distribution or the search: refused, not ignored.
_UNSUPPORTED = {
    "temperature": "ECMH proposes at temperature 1/alpha; set `alpha` instead",
    "num_beams": "ECMH is a sampler, not a beam search",
    "repetition_penalty": "it would change the target distribution p^alpha",
    "no_repeat_ngram_size": "it would change the target distribution p^alpha",
    "typical_p": "it would change the target distribution p^alpha",
    "min_p": "it would change the target distribution p^alpha",
    "min_length": "it would change the target distribution p^alpha",
    "min_new_tokens": "it would change the target distribution p^alpha",
    "bad_words_ids": "it would change the target distribution p^alpha",
}
_DEFAULT_NEW_TOKENS = 20  # transformers' default when nothing sets a length
_FILLED_IN = (*_UNSUPPORTED, "top_k", "top_p", "max_length")  # options whose filled-in value counts as unset


@dataclass(frozen=True)
class ModelDefaults:
    """What a model's own generation settings (its `generation_config.json`) fill in where the caller sets
    nothing, as plain fields; every backend gives these (`Backend.defaults`)."""

    eos_token_ids: tuple = ()
    pad_token_id: Optional[int] = None
    max_new_tokens: Optional[int] = None
    max_length: Optional[int] = None
    filled_in: dict = field(default_factory=dict)  # the model's own values of other options (top_k, temperature, ...)

    @classmethod
    def read(cls, value: Callable[[str], Any]) -> "ModelDefaults":
        """From `value(name)`: the model's setting of a generation option, None where it has none."""
        eos = value("eos_token_id")
        return cls(
            eos_token_ids=tuple(eos) if isinstance(eos, (list, tuple)) else (() if eos is None else (eos,)),
            pad_token_id=value("pad_token_id"), max_new_tokens=value("max_new_tokens"), max_length=value("max_length"),
            filled_in={name: value(name) for name in _FILLED_IN if value(name) is not None},
        )


@dataclass(frozen=True)
class GenerationSettings:
    """The generation options of one call, resolved and checked (`resolve`)."""

    max_new_tokens: int
    eos_token_ids: tuple
    pad_token_id: int
    num_return_sequences: int
    top_k: Optional[int]
    top_p: Optional[float]
    return_dict_in_generate: bool
    stop_strings: tuple = ()


def check_seed(seed) -> None:
    if seed is not None and not is_int(seed):
        raise TypeError(f"`seed` must be an int or None, got {type(seed).__name__}.")


def resolve(model: ModelDefaults, generation_config, kwargs: dict, prompt_width: int, prepared: bool) -> GenerationSettings:
    """Settings from the model's defaults, the caller's generation config and keyword arguments.

    `prepared` is True when transformers' `generate` already merged defaults into `generation_config`
    (and consumed the keyword arguments); then `kwargs` must be empty.
    """
    defaults = compat.generation_defaults()
    config = generation_config if prepared else copy.deepcopy(generation_config or GenerationConfig())
    explicit = dict(kwargs)
    if not prepared:
        config.do_sample = True  # ECMH samples; transformers validates sampling options against this
        unknown = config.update(**kwargs)
        if unknown:
            raise TypeError(f"ecmh.generate() got unexpected keyword argument(s): {', '.join(sorted(unknown))}.")

    def filled_in(name):
        value = model.filled_in.get(name)
        return value if value is not None else defaults.get(name)

    def set_by_caller(name):
        value = getattr(config, name, None)
        return None if value is None or value == filled_in(name) else value

    for name, why in _UNSUPPORTED.items():
        value = set_by_caller(name)
        if value is not None and value not in (0, 1, 1.0, False):
            raise ValueError(f"`{name}={value!r}` is not supported: {why}.")

    max_new_tokens = config.max_new_tokens
    if max_new_tokens is None:
        max_length = config.max_length if prepared else set_by_caller("max_length")
        if max_length is not None:
            max_new_tokens = max_length - prompt_width
        elif model.max_new_tokens is not None:
            max_new_tokens = model.max_new_tokens
        elif model.max_length is not None:
            max_new_tokens = model.max_length - prompt_width
        else:
            max_new_tokens = _DEFAULT_NEW_TOKENS
    check_int("max_new_tokens", max_new_tokens, 1)

    if "eos_token_id" in explicit and explicit["eos_token_id"] is None:
        eos_ids = ()  # an explicit None: never stop early
    elif config.eos_token_id is not None:
        eos = config.eos_token_id
        eos_ids = tuple(eos) if isinstance(eos, (list, tuple)) else (eos,)
    else:
        eos_ids = model.eos_token_ids
    pad = config.pad_token_id if config.pad_token_id is not None else model.pad_token_id
    if pad is None:
        pad = eos_ids[0] if eos_ids else 0

    num_return_sequences = check_int("num_return_sequences", config.num_return_sequences or 1, 1)
    return GenerationSettings(
        max_new_tokens=max_new_tokens,
        eos_token_ids=tuple(int(t) for t in eos_ids),
        pad_token_id=int(pad),
        num_return_sequences=num_return_sequences,
        top_k=set_by_caller("top_k") or None,  # 0 disables top-k, as in transformers
        top_p=set_by_caller("top_p"),
        return_dict_in_generate=bool(config.return_dict_in_generate),
        stop_strings=as_stop_strings(getattr(config, "stop_strings", None)),
    )

