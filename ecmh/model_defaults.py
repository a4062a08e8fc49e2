"""What a model's own generation settings fill in where the caller sets nothing (`ModelDefaults`), as plain fields:
every backend gives these (`Backend.defaults`), and nothing here loads a model framework."""

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

# Generation options that would change the target distribution or the search: refused, not ignored.
UNSUPPORTED = {
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
_FILLED_IN = (*UNSUPPORTED, "top_k", "top_p", "max_length")  # options whose filled-in value counts as unset


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
