"""The generation options of one call (`GenerationSettings`), resolved from the caller's arguments, what the model
fills in (`ecmh.model_defaults.ModelDefaults`) and transformers' conventions. The samplers' own options are their
dataclasses (`ecmh.options`, `ecmh.algorithms`).

The same rules serve a direct call and a call through `model.generate(custom_generate=...)`,
where transformers hands over a config with its own defaults already filled in (`top_k=50`,
the model's `generation_config.json`). A field counts as set by the caller only when it differs
from what transformers would fill in; unset sampling fields mean "no truncation", whatever the
model's or transformers' defaults say.
"""

import copy
from dataclasses import dataclass
from typing import Optional

from transformers import GenerationConfig

from . import checks, compat
from .checks import check_int, is_int
from .model_defaults import UNSUPPORTED, ModelDefaults
from .stopping import as_stop_strings

_DEFAULT_NEW_TOKENS = 20  # transformers' default when nothing sets a length


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


def check_seed(seed, prompts: int) -> None:
    """`seed`: None, a seed (`ecmh.checks.check_seed`), or a list of seeds, one per prompt (`ecmh.keyed.PromptSeeds`)."""
    if isinstance(seed, (list, tuple)):
        if len(seed) != prompts or not all(is_int(s) for s in seed):
            raise TypeError(f"`seed` as a list needs one int per prompt ({prompts}), got {list(seed)!r}.")
        for index, value in enumerate(seed):
            checks.check_seed(f"seed[{index}]", value)
    elif seed is not None and not is_int(seed):
        raise TypeError(f"`seed` must be an int, a list of ints (one per prompt) or None, got {type(seed).__name__}.")
    elif seed is not None:
        checks.check_seed("seed", seed)


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

    for name, why in UNSUPPORTED.items():
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

