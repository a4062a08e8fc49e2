"""`ecmh.generate`: sample from `p^alpha` with Entropy-Cut Metropolis-Hastings, called like `model.generate`."""

from dataclasses import dataclass
from typing import NamedTuple, Optional, Union

import torch

from . import kernel, sampler, settings
from .backends import vllm as vllm_backend
from .backends.transformers import TransformersBackend
from .cuts import CutDistribution, resolve_cut
from .scoring import PowerProposal

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


class Stats(NamedTuple):
    """Per returned row."""

    acceptance_rate: torch.Tensor  # accepted / proposals (NaN with mcmc_steps=0)
    proposals: torch.Tensor
    accepted: torch.Tensor
    tokens_decoded: torch.Tensor  # every token sampled, rejected proposals included
    tokens_forwarded: torch.Tensor  # every position run through the model, prefill and padding included
    log_p: torch.Tensor  # base-model log-likelihood of the returned continuation


class Trace(NamedTuple):
    """Per returned row and continuation position `t < length`, the numbers the sampler stored for it
    (float32, taken from the logits of the decoding step that drew the token; 0 past `length`)."""

    log_p: torch.Tensor  # [R, L] log p(y_t | prompt, y_<t)
    log_z: torch.Tensor  # [R, L] log sum_v p(v | prompt, y_<t)^alpha
    entropy: torch.Tensor  # [R, L] entropy of p(. | prompt, y_<t)
    length: torch.Tensor  # [R] continuation length (up to and including EOS)


@dataclass
class ECMHOutput:
    sequences: torch.Tensor  # prompt + continuation, `pad_token_id` after the end
    stats: Stats
    trace: Trace


def _check_prompt(input_ids, attention_mask, model, max_new_tokens):
    if input_ids.shape[1] == 0 or input_ids.shape[0] == 0:
        raise ValueError("`input_ids` is empty: give every row at least one prompt token.")
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    if attention_mask.shape != input_ids.shape:
        raise ValueError(f"`attention_mask` has shape {tuple(attention_mask.shape)}, `input_ids` {tuple(input_ids.shape)}.")
    mask = attention_mask.bool()
    if not mask.any(dim=1).all():
        raise ValueError("A row of `input_ids` has no prompt token (its attention_mask is all 0): remove it.")
    if (mask[:, 1:] < mask[:, :-1]).any():
        raise ValueError(
            "The batch is right-padded (`attention_mask` has 0s after 1s); ecmh needs left padding: "
            "use `tokenizer(..., padding=True)` with `tokenizer.padding_side = 'left'`."
        )
    context = getattr(model.config.get_text_config(), "max_position_embeddings", None)
    longest = int(mask.sum(1).max())
    if context is not None and longest + max_new_tokens > context:
        raise ValueError(
            f"The longest prompt ({longest} tokens) plus max_new_tokens={max_new_tokens} exceeds the model's context "
            f"of {context} positions: lower `max_new_tokens` to at most {context - longest} or shorten the prompt."
        )
    return attention_mask


def generate(
    model,
    input_ids: Optional[torch.Tensor] = None,
    generation_config=None,
    *,
    alpha: float = 4.0,
    mcmc_steps: int = 10,
    block_size: Optional[int] = None,
    cut: Union[str, CutDistribution] = "entropy",
    cut_power: float = 4.0,
    seed: Optional[int] = None,
    on_step: Optional[sampler.StepCallback] = None,
    **kwargs,
) -> Union[torch.Tensor, ECMHOutput]:
    """Sample continuations from `p(y | prompt)^alpha` with Entropy-Cut Metropolis-Hastings.

    Called like `model.generate`, or through it: `model.generate(ids, custom_generate=ecmh.generate, ...)`.

    Args:
        model: a transformers causal LM (see `ecmh.load_model`), or a `vllm.LLM` built by `ecmh.load_vllm`.
        input_ids: `[batch, prompt_length]` token ids, left-padded with an `attention_mask` for batches.
            With a `vllm.LLM`, also a list of token-id lists (no padding, no mask).
        generation_config: a `transformers.GenerationConfig`; keyword arguments override it.
        alpha: the power of the target `p^alpha` (`>= 1`); proposals are drawn at temperature `1/alpha`.
        mcmc_steps: MH steps after each block (0: plain low-temperature sampling).
        block_size: tokens added per block; None means `max(1, max_new_tokens // 16)`.
        cut: "entropy" (cut where the entropy jumps), "uniform", "restart", or an object with
            `log_weights(entropy, length)` (see `ecmh.cuts`).
        cut_power: the exponent of the entropy-jump weights.
        seed: makes the output reproducible (bit for bit on the same machine and batch).
        on_step: `on_step(info)` whenever proposals finish decoding (`ecmh.Info`: per row `finished`,
            `extension`, `cut`, `accepted`, `log_ratio`, `proposal_length`, `block`, and `row`: the
            index in the returned batch of each entry, as rows whose schedule is over leave).
        **kwargs: as for `model.generate`: `attention_mask`, `max_new_tokens`, `eos_token_id`
            (None: never stop early), `pad_token_id`, `num_return_sequences`, `top_k`, `top_p`,
            `return_dict_in_generate`. `top_k`/`top_p` truncate `p` in the proposal, the target and
            the entropies alike; unlike `model.generate`, ecmh applies no `top_k=50` by default.

    Returns:
        The sequences tensor, or with `return_dict_in_generate=True` an `ECMHOutput` with `.sequences`
        and `.stats` (one value per returned row).

    Example:
        >>> import ecmh
        >>> model, tokenizer = ecmh.load_model("smollm2-135m-instruct")  # doctest: +SKIP
        >>> ids = tokenizer("2 + 2 =", return_tensors="pt").input_ids  # doctest: +SKIP
        >>> out = ecmh.generate(model, ids, max_new_tokens=16, mcmc_steps=2, seed=0)  # doctest: +SKIP
    """
    attention_mask = kwargs.pop("attention_mask", None)
    reencode_prefix = kwargs.pop("_reencode_prefix", False)  # the speed benchmark's baseline, nothing else
    if input_ids is None:
        input_ids = kwargs.pop("inputs", None)
    engine = vllm_backend.VLLMModel(model) if vllm_backend.is_vllm_engine(model) else None
    if engine is not None:  # a vllm.LLM: the same sampler on the vLLM backend
        model = engine
        input_ids, attention_mask = engine.batch(input_ids, attention_mask, kwargs.get("pad_token_id"))
    prepared = "stopping_criteria" in kwargs  # called by transformers' generate, inputs already expanded
    for name in _PREPARED_BY_TRANSFORMERS:
        kwargs.pop(name, None)
    if not torch.is_tensor(input_ids) or input_ids.dim() != 2:
        raise TypeError("`input_ids` must be a 2-D tensor of token ids [batch, prompt_length].")
    config = settings.resolve(model, generation_config, kwargs, input_ids.shape[1], prepared)
    block_size = settings.check_sampler_arguments(alpha, mcmc_steps, block_size, config.max_new_tokens, seed)
    cut_distribution = resolve_cut(cut, cut_power)
    proposal = PowerProposal(alpha, config.top_k, config.top_p)
    attention_mask = _check_prompt(input_ids, attention_mask, model, config.max_new_tokens)

    device = model.device
    input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
    if not prepared and config.num_return_sequences > 1:
        input_ids = input_ids.repeat_interleave(config.num_return_sequences, dim=0)
        attention_mask = attention_mask.repeat_interleave(config.num_return_sequences, dim=0)
    rng = torch.Generator(device=device)
    if seed is None:
        rng.seed()
    else:
        rng.manual_seed(seed)

    eos = torch.tensor(config.eos_token_ids, dtype=torch.long, device=device)
    if engine is not None:
        backend = engine.backend(proposal, config.eos_token_ids)
    else:
        backend = TransformersBackend(model, proposal, config.eos_token_ids, reencode_prefix)
    try:
        with torch.inference_mode():
            forwarded = backend.prefill(input_ids, attention_mask, config.max_new_tokens)
            state = kernel.init(input_ids.shape[0], config.max_new_tokens, forwarded)
            state = sampler.run(
                rng, state, backend, cut_distribution, alpha=float(alpha),
                block_size=block_size, mcmc_steps=mcmc_steps, eos_token_ids=eos, on_step=on_step,
            )
    finally:
        backend.close()
    return _output(input_ids, state, config)


def _output(input_ids: torch.Tensor, state: kernel.State, config: settings.Settings):
    width = int(state.length.max())
    position = torch.arange(width, device=input_ids.device)[None, :]
    continuation = torch.where(position < state.length[:, None], state.tokens[:, :width], config.pad_token_id)
    sequences = torch.cat([input_ids, continuation], dim=1)
    if not config.return_dict_in_generate:
        return sequences
    valid = position < state.length[:, None]
    trace = Trace(*(torch.where(valid, x[:, :width], torch.zeros_like(x[:, :width]))
                    for x in (state.log_p, state.log_z, state.entropy)), state.length)
    stats = Stats(
        acceptance_rate=state.accepted.float() / state.proposals.float(),
        proposals=state.proposals,
        accepted=state.accepted,
        tokens_decoded=state.tokens_decoded,
        tokens_forwarded=state.tokens_forwarded,
        log_p=trace.log_p.sum(1),
    )
    return ECMHOutput(sequences, stats, trace)
