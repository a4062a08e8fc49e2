"""A request turned into a `Job`: its prompts as token ids, the sampler and its options, the length cap, stop strings
and seed, every check done before it waits for a batch. Jobs of one `group` can share a call of `ecmh.generate`.

`temperature` means what it means for the answers: `p^alpha` is the distribution of whole answers at temperature
`1/alpha`, so when `alpha` is not given, a `temperature` in (0, 1] sets `alpha = 1 / temperature`; 0 (greedy, what
lm-evaluation-harness sends) and no temperature leave the options table's `alpha`; above 1 would be `alpha < 1`,
which is refused. A given `alpha` wins over `temperature`. The response reports the `alpha` used."""

import dataclasses
import itertools
import secrets
from typing import NamedTuple, Optional

from .. import algorithms
from ..mh import SamplerConfig
from ..options import specs
from ..settings import GenerationSettings
from .errors import APIError, from_sampler

DEFAULT_MAX_TOKENS = 16  # OpenAI's completions default, on both endpoints: an MCMC answer to the context's end takes long
PER_ROW_SEEDS = (SamplerConfig,)  # the options of samplers whose every random number comes from their chains' keys
# (`ecmh.keyed.PromptSeeds`): rows of different seeds share a call
_ALONE = itertools.count()  # a group of its own for each seeded job of the other samplers


class Job(NamedTuple):
    prompts: tuple  # token-id tuples, one per prompt
    n: int  # independent answers per prompt
    algorithm: str
    options: object  # the algorithm's options dataclass
    max_tokens: int
    stop: tuple
    top_p: Optional[float]
    top_k: Optional[int]
    seed: Optional[int]  # drawn here for PER_ROW_SEEDS samplers when the request has none (reported back)
    alone: Optional[int]  # set: the job shares its call with none (a seeded job of a sampler without per-row seeds)

    @property
    def rows(self) -> int:
        return len(self.prompts) * self.n

    @property
    def group(self) -> tuple:
        """Jobs of one group share a call: the same sampler, options and generation settings."""
        return self.algorithm, self.options, self.max_tokens, self.stop, self.top_p, self.top_k, self.n, self.alone

    def sampler_settings(self) -> dict:
        """The options the response reports (`alpha` among them)."""
        return {"algorithm": self.algorithm, **{spec.name: getattr(self.options, spec.name)
                                                for spec in specs(type(self.options))}, "seed": self.seed}


def sampler_names() -> set:
    return {spec.name for spec, _ in algorithms.option_specs()}


def _alpha_from_temperature(request, given: dict) -> None:
    temperature = request.temperature
    if given.get("alpha") is not None or not temperature:
        return
    if temperature > 1:
        raise APIError(f"`temperature={temperature}` would mean alpha = 1/temperature < 1, and p^alpha is sampled for "
                       "alpha >= 1 only: send a temperature in [0, 1], or `alpha` (>= 1) instead.", param="temperature")
    given["alpha"] = 1 / temperature


def build(request, prompts: list, context_length: Optional[int], max_rows: int) -> Job:
    """The job of a validated request whose prompts are token ids; an APIError (400) names what to fix."""
    given = {name: getattr(request, name) for name in sampler_names()}
    _alpha_from_temperature(request, given)
    algorithm = request.algorithm or algorithms.DEFAULT
    max_tokens = getattr(request, "max_completion_tokens", None) or request.max_tokens or DEFAULT_MAX_TOKENS
    top_k = request.top_k if request.top_k and request.top_k > 0 else None
    try:
        options = algorithms.options_for(algorithm, given)
        entry = algorithms.get(algorithm)
        if isinstance(options, SamplerConfig):  # the block size it will use, reported back
            options = dataclasses.replace(options, block_size=options.block_size_for(max_tokens))
        entry.build(options, GenerationSettings(max_tokens, (), 0, request.n, top_k, request.top_p, True))
    except (ValueError, TypeError) as error:
        raise from_sampler(error) from None
    _check_length(prompts, max_tokens, context_length, "prompt" if hasattr(request, "prompt") else "messages")
    rows = len(prompts) * request.n
    if rows > max_rows:
        raise APIError(f"`n` x prompts = {rows} answers, more than the server's --max-batch-rows {max_rows}: lower `n` "
                       "or send fewer prompts per request.", param="n")
    per_row = isinstance(options, PER_ROW_SEEDS)
    seed = secrets.randbelow(2**62) if request.seed is None and per_row else request.seed
    alone = next(_ALONE) if request.seed is not None and not per_row else None
    return Job(tuple(tuple(p) for p in prompts), request.n, algorithm, options, max_tokens, tuple(request.stop or ()),
               request.top_p, top_k, seed, alone)


def _check_length(prompts: list, max_tokens: int, context_length: Optional[int], field: str) -> None:
    longest = max(len(prompt) for prompt in prompts)
    if context_length is None:
        return
    if longest >= context_length:
        raise APIError(f"`{field}` is {longest} tokens, filling the model's context of {context_length}: shorten it.",
                       param=field, code="context_length_exceeded")
    if longest + max_tokens > context_length:
        raise APIError(f"`max_tokens={max_tokens}` plus the prompt's {longest} tokens exceeds the model's context of "
                       f"{context_length}: lower `max_tokens` to at most {context_length - longest} or shorten the "
                       "prompt.", param="max_tokens", code="context_length_exceeded")
