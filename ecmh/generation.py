"""`ecmh.generate`: sample from `p^alpha` with Entropy-Cut Metropolis-Hastings (or another registered sampler),
called like `model.generate`: inputs checked and resolved (`_inputs`), the algorithm driven on the backend, its
output."""

import dataclasses
import inspect
import warnings
from typing import NamedTuple, Optional, Union

import torch

from . import algorithms, backends, keyed, settings
from .algorithm import Algorithm, drive
from .checks import is_int
from .outputs import Output
from .stopping import StopStrings
from .terminal import Terminal

# What transformers' `generate(custom_generate=...)` passes besides our own parameters.
_PREPARED_BY_TRANSFORMERS = (
    "logits_processor",
    "stopping_criteria",
    "synced_gpus",
    "streamer",
    "use_cache",
    "past_key_values",
    "position_ids",
    "logits_to_keep",
    "cache_position",
    "output_attentions",
    "output_hidden_states",
)


def _as_batch(input_ids, attention_mask):
    """`input_ids` as a left-padded `[batch, width]` tensor with its attention mask (a list of token-id lists
    is padded here, with 0 until the pad token is known)."""
    if isinstance(input_ids, (list, tuple)):
        if attention_mask is not None:
            raise ValueError("`attention_mask` goes with a padded tensor of `input_ids`, not with a list of token-id lists.")
        rows = [list(row) if isinstance(row, (list, tuple)) else row for row in input_ids]
        if not rows or not all(isinstance(row, list) and all(is_int(t) for t in row)
                               for row in rows):
            raise TypeError("`input_ids` must be a 2-D tensor of token ids or a non-empty list of lists of token ids.")
        width = max(len(row) for row in rows)
        input_ids = torch.tensor([[0] * (width - len(row)) + row for row in rows], dtype=torch.long)
        attention_mask = torch.tensor([[0] * (width - len(row)) + [1] * len(row) for row in rows], dtype=torch.long)
        return input_ids.reshape(len(rows), width), attention_mask.reshape(len(rows), width)
    if not torch.is_tensor(input_ids) or input_ids.dim() != 2:
        raise TypeError("`input_ids` must be a 2-D tensor of token ids [batch, prompt_length] (or a list of token-id lists).")
    return input_ids, attention_mask


def _check_prompt(input_ids, attention_mask, context_length, max_new_tokens):
    if input_ids.shape[1] == 0 or input_ids.shape[0] == 0:
        raise ValueError("`input_ids` is empty: give every row at least one prompt token.")
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    if not torch.is_tensor(attention_mask) or attention_mask.shape != input_ids.shape:
        shape = tuple(attention_mask.shape) if torch.is_tensor(attention_mask) else type(attention_mask).__name__
        raise ValueError(f"`attention_mask` has shape {shape}, `input_ids` {tuple(input_ids.shape)}.")
    mask = attention_mask.bool()
    if not mask.any(dim=1).all():
        raise ValueError("A row of `input_ids` has no prompt token (its attention_mask is all 0): remove it.")
    if (mask[:, 1:] < mask[:, :-1]).any():
        raise ValueError(
            "The batch is right-padded (`attention_mask` has 0s after 1s); ecmh needs left padding: "
            "use `tokenizer(..., padding=True)` with `tokenizer.padding_side = 'left'`."
        )
    longest = int(mask.sum(1).max())
    if context_length is not None and longest >= context_length:
        raise ValueError(f"The longest prompt ({longest} tokens) fills the model's context of {context_length} positions, "
                         "leaving no room for an answer: shorten the prompt.")
    if context_length is not None and longest + max_new_tokens > context_length:
        raise ValueError(
            f"The longest prompt ({longest} tokens) plus max_new_tokens={max_new_tokens} exceeds the model's context "
            f"of {context_length} positions: lower `max_new_tokens` to at most {context_length - longest} or shorten "
            "the prompt."
        )
    return attention_mask


def generate(
    model,
    input_ids: Optional[torch.Tensor] = None,
    generation_config=None,
    *,
    algorithm: str = algorithms.DEFAULT,
    seed: Union[int, list, None] = None,
    **kwargs,
) -> Union[torch.Tensor, Output]:
    """Sample continuations from `p(y | prompt)^alpha` with Entropy-Cut Metropolis-Hastings, or with another registered
    sampler (`algorithm="smc"`: Sequential Monte Carlo; `ecmh.algorithms`).

    Called like `model.generate`, or through it: `model.generate(ids, custom_generate=ecmh.generate, ...)`.

    Args:
        model: a transformers causal LM (see `ecmh.load_model`), a `vllm.LLM` built by `ecmh.load_vllm`,
            or an `ecmh.backends.Backend`.
        input_ids: `[batch, prompt_length]` token ids, left-padded with an `attention_mask` for batches,
            or a list of token-id lists (padded here).
        generation_config: a `transformers.GenerationConfig`; keyword arguments override it.
        algorithm: a sampler of `ecmh.algorithms` (an installed package's `ecmh.samplers` entry points included): ECMH
            (`ecmh.algorithms.DEFAULT`, exact in the limit of MH steps), "smc" (Sequential Monte Carlo: particles per
            prompt in one batch, about plain decoding's latency, consistent as the particles grow; `ecmh.smc`), ...
        seed: makes the output reproducible (bit for bit on the same machine and batch); a list, one per prompt, gives
            each prompt's MH chains the keys of a call on that prompt alone with its seed (`ecmh.keyed.PromptSeeds`),
            so its answers do not depend on the batch's other prompts (up to float rounding of the batched forward).
        **kwargs: the algorithm's options, each declared once with its default and meaning in its options
            dataclass (`ecmh.options`; `ecmh.algorithms.get(algorithm).options`, e.g. `ecmh.SamplerConfig`,
            `ecmh.SMCConfig`), all of them keywords of this function's signature; an option of another algorithm is
            refused. The rest as for `model.generate`: `attention_mask`, `max_new_tokens`, `eos_token_id`
            (None: never stop early), `stop_strings` with `tokenizer` (a continuation ends at the first token
            that completes one in its text, exactly as at EOS: `ecmh.stopping`), `pad_token_id`,
            `num_return_sequences`, `top_k`, `top_p`, `return_dict_in_generate`. `top_k`/`top_p` truncate `p` in the
            proposal, the target and the entropies alike; unlike `model.generate`, ecmh applies no `top_k=50` by
            default.

    Returns:
        The sequences tensor, or with `return_dict_in_generate=True` the algorithm's `ecmh.Output`: `.sequences`,
        `.stats` (one value per returned row: `log_p` and the costs, `ecmh.Stats`) and `.trace` (per position of
        each returned continuation); MH's (`ecmh.MHOutput`) adds its chains' statistics to `.stats`
        (`ecmh.ChainStats`: acceptance, proposals, ...) and with `record_history=True` `.history`; SMC's
        (`ecmh.SMCOutput`) adds `.particles` (every particle, its weight, `log_evidence`).

    Example:
        >>> import ecmh
        >>> model, tokenizer = ecmh.load_model("smollm2-135m-instruct")  # doctest: +SKIP
        >>> ids = tokenizer("2 + 2 =", return_tensors="pt").input_ids  # doctest: +SKIP
        >>> out = ecmh.generate(model, ids, max_new_tokens=16, mcmc_steps=2, seed=0)  # doctest: +SKIP
    """
    call = _inputs(model, input_ids, generation_config, algorithm, seed, kwargs)
    try:
        with torch.inference_mode():
            forwarded = call.backend.prepare(call.input_ids, call.attention_mask, proposal=call.algorithm.proposal,
                                             terminal=call.terminal)
            run = drive(call.algorithm, call.rng, call.backend, forwarded, call.terminal)
    finally:
        call.backend.close()
    return call.algorithm.output(call.rng, run, call.input_ids, call.generation)


def _signature() -> inspect.Signature:
    """`generate`'s signature with every registered algorithm's options as keywords (transformers' `generate(...,
    custom_generate=ecmh.generate)` hands over only the keywords the signature names)."""
    # after the first call `generate.__signature__` is this function's own result: drop its options, take them afresh
    fixed = inspect.signature(generate)
    options = {field.name: field.default for entry in algorithms.REGISTRY.registered_so_far().values()
               for field in dataclasses.fields(entry.options)}
    parameters = [p for p in fixed.parameters.values() if p.kind is not p.VAR_KEYWORD and p.name not in options]
    parameters += [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default)
                   for name, default in options.items()]
    return fixed.replace(parameters=[*parameters, inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD)])


generate.__signature__ = _signature()
algorithms.on_register(lambda: setattr(generate, "__signature__", _signature()))  # a sampler registered later too
# (a plugin's, once the registry is first read: no plugin is loaded while ecmh is imported)


class _Call(NamedTuple):
    """One call of `generate`, its inputs checked and resolved."""

    backend: backends.Backend
    input_ids: torch.Tensor  # [R, P] left-padded, `algorithm.prompt_rows` rows per prompt, on the backend's device
    attention_mask: torch.Tensor
    generation: settings.GenerationSettings
    algorithm: Algorithm
    terminal: Terminal
    rng: torch.Generator


def _inputs(model, input_ids, generation_config, algorithm: str, seed, kwargs: dict) -> _Call:
    """Check and resolve everything before any decoding: a bad argument fails here, with the fix."""
    options = algorithms.options_for(algorithm, kwargs)
    attention_mask = kwargs.pop("attention_mask", None)
    tokenizer = kwargs.pop("tokenizer", None)
    if input_ids is None:
        input_ids = kwargs.pop("inputs", None)
    backend = backends.for_model(model)
    prepared = "stopping_criteria" in kwargs  # called by transformers' generate, inputs already expanded
    for name in _PREPARED_BY_TRANSFORMERS:
        kwargs.pop(name, None)
    as_lists = isinstance(input_ids, (list, tuple))
    input_ids, attention_mask = _as_batch(input_ids, attention_mask)
    settings.check_seed(seed, input_ids.shape[0])
    generation = settings.resolve(backend.defaults, generation_config, kwargs, input_ids.shape[1], prepared)
    if prepared:
        generation = dataclasses.replace(generation, num_return_sequences=1)  # transformers repeated the rows already
    if as_lists:
        input_ids = input_ids.masked_fill(attention_mask == 0, generation.pad_token_id)
    elif attention_mask is None and input_ids.shape[0] > 1 and (input_ids[:, 0] == generation.pad_token_id).any():
        warnings.warn(
            f"`input_ids` rows start with the pad token ({generation.pad_token_id}) but no `attention_mask` was given, "
            "so the padding is read as prompt: pass the tokenizer's `attention_mask` too.", stacklevel=3)
    stop_strings = _stop_strings(generation.stop_strings, tokenizer or backend.tokenizer, backend)
    sampler = algorithms.get(algorithm).build(options, generation)
    attention_mask = _check_prompt(input_ids, attention_mask, backend.context_length, generation.max_new_tokens)

    device = backend.device
    rows = sampler.prompt_rows(generation.num_return_sequences)
    input_ids = input_ids.to(device).repeat_interleave(rows, dim=0)
    attention_mask = attention_mask.to(device).repeat_interleave(rows, dim=0)
    if isinstance(seed, (list, tuple)):
        rng = keyed.PromptSeeds([int(s) for s in seed], device)
    else:
        rng = torch.Generator(device=device)
        if seed is None:
            rng.seed()
        else:
            rng.manual_seed(seed)
    terminal = Terminal(generation.eos_token_ids, stop_strings, generation.max_new_tokens, device)
    return _Call(backend, input_ids, attention_mask, generation, sampler, terminal, rng)


def _stop_strings(strings: tuple, tokenizer, backend) -> Optional[StopStrings]:
    if not strings:
        return None
    if tokenizer is None:
        raise ValueError("`stop_strings` needs the model's tokenizer to read its tokens' texts: pass `tokenizer=tokenizer` "
                         "too, as for `model.generate`.")
    return StopStrings.from_tokenizer(strings, tokenizer, backend.vocab_size).to(backend.device)
