"""`ecmh.generate`: sample from `p^alpha` with Entropy-Cut Metropolis-Hastings (or Sequential Monte Carlo),
called like `model.generate`."""

import dataclasses
import math
import sys
import warnings
from typing import NamedTuple, Optional, Union

import torch
from tqdm.auto import tqdm

from . import backends, kernel, sampler, settings, smc
from .settings import DEFAULTS, SamplerConfig, SMCConfig
from .history import HistoryRecorder
from .cuts import CutDistribution
from .outputs import ECMHOutput, ParticleSet, Stats, Trace
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
        if not rows or not all(isinstance(row, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in row)
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
    alpha: float = DEFAULTS.alpha,
    mcmc_steps: int = DEFAULTS.mcmc_steps,
    block_size: Optional[int] = DEFAULTS.block_size,
    cut: Union[str, CutDistribution] = DEFAULTS.cut,
    cut_power: float = DEFAULTS.cut_power,
    seed: Optional[int] = None,
    on_step: Optional[sampler.StepCallback] = None,
    record_history: bool = False,
    progress: bool = False,
    algorithm: str = "mh",
    particles: Optional[int] = None,
    ess_threshold: Optional[float] = None,
    resampling: Optional[str] = None,
    resample_every: Optional[int] = None,
    bridge_tokens: Optional[int] = None,
    **kwargs,
) -> Union[torch.Tensor, ECMHOutput]:
    """Sample continuations from `p(y | prompt)^alpha` with Entropy-Cut Metropolis-Hastings, or with Sequential
    Monte Carlo (`algorithm="smc"`).

    Called like `model.generate`, or through it: `model.generate(ids, custom_generate=ecmh.generate, ...)`.

    Args:
        model: a transformers causal LM (see `ecmh.load_model`), a `vllm.LLM` built by `ecmh.load_vllm`,
            or an `ecmh.backends.Backend`.
        input_ids: `[batch, prompt_length]` token ids, left-padded with an `attention_mask` for batches,
            or a list of token-id lists (padded here).
        generation_config: a `transformers.GenerationConfig`; keyword arguments override it.
        alpha: the power of the target `p^alpha` (`>= 1`); proposals are drawn at temperature `1/alpha`.
        mcmc_steps: MH steps after each block (0: plain low-temperature sampling).
        block_size: tokens added per block; None means `max_new_tokens // 16`, at least 16 (or `max_new_tokens`).
        cut: "entropy" (cut where the entropy jumps), "uniform", "restart", or an object with
            `log_weights(entropy, length)` (see `ecmh.cuts`).
        cut_power: the exponent of the entropy-jump weights.
        seed: makes the output reproducible (bit for bit on the same machine and batch).
        on_step: `on_step(info)` whenever proposals finish decoding (`ecmh.Info`: per row `finished`,
            `extension`, `cut`, `accepted`, `log_ratio` and its `ratio_terms`, `proposal_length`, `block`,
            and `row`: the index in the returned batch of each entry, as rows whose schedule is over leave).
        record_history: return every settled proposal as `out.history` (`ecmh.History`, tensors; needs
            `return_dict_in_generate=True`).
        progress: show a progress bar on stderr (tqdm) counting the MH proposals settled, for a long call. It has
            no total: an answer that ends early skips its later blocks.
        algorithm: "mh" (ECMH, exact in the limit of MH steps) or "smc" (Sequential Monte Carlo: `particles`
            per prompt in one batch, about plain decoding's latency, consistent as the particles grow; `ecmh.smc`).
            `mcmc_steps`, `block_size`, `cut`, `cut_power`, `on_step`, `record_history` and `progress` are MH's.
        particles, ess_threshold, resampling, resample_every, bridge_tokens: SMC's options
            (`ecmh.settings.SMCConfig`; None: its default). With SMC, `num_return_sequences` answers per
            prompt are drawn by the final weights from one particle system, and `return_dict_in_generate=True`
            also returns every particle with its weight (`out.particles`, `ecmh.ParticleSet`).
        **kwargs: as for `model.generate`: `attention_mask`, `max_new_tokens`, `eos_token_id`
            (None: never stop early), `stop_strings` with `tokenizer` (a continuation ends at the first token
            that completes one in its text, exactly as at EOS: `ecmh.stopping`), `pad_token_id`,
            `num_return_sequences`, `top_k`, `top_p`, `return_dict_in_generate`. `top_k`/`top_p` truncate `p` in the proposal, the target and
            the entropies alike; unlike `model.generate`, ecmh applies no `top_k=50` by default.

    Returns:
        The sequences tensor, or with `return_dict_in_generate=True` an `ECMHOutput` with `.sequences`,
        `.stats` (one value per returned row) and `.trace` (per position of each returned continuation).

    Example:
        >>> import ecmh
        >>> model, tokenizer = ecmh.load_model("smollm2-135m-instruct")  # doctest: +SKIP
        >>> ids = tokenizer("2 + 2 =", return_tensors="pt").input_ids  # doctest: +SKIP
        >>> out = ecmh.generate(model, ids, max_new_tokens=16, mcmc_steps=2, seed=0)  # doctest: +SKIP
    """
    options = SamplerConfig(alpha, mcmc_steps, block_size, cut, cut_power)
    smc_options = SMCConfig.from_options(algorithm, dict(
        particles=particles, ess_threshold=ess_threshold, resampling=resampling, resample_every=resample_every,
        bridge_tokens=bridge_tokens))
    if smc_options is not None and (on_step is not None or record_history or progress):
        raise ValueError("`on_step`, `record_history` and `progress` follow MH proposals; with `algorithm=\"smc\"` "
                         "read `out.particles` (`return_dict_in_generate=True`) instead.")
    call = _inputs(model, input_ids, generation_config, options, smc_options, seed, on_step, record_history, kwargs)
    if not progress:
        return _output(call, _run(call))
    with tqdm(desc="ECMH proposals", unit="proposal", file=sys.stderr, leave=False) as bar:
        def count(info: kernel.Info) -> None:
            bar.update(int(info.finished.sum()))

        counted = call._replace(on_step=count if call.on_step is None else _both(call.on_step, count))
        return _output(counted, _run(counted))


class _Call(NamedTuple):
    """One call of `generate`, its inputs checked and resolved."""

    backend: backends.Backend
    input_ids: torch.Tensor  # [R, P] left-padded, one row per chain, on the backend's device
    attention_mask: torch.Tensor
    generation: settings.GenerationSettings
    algorithm: Union[kernel.Algorithm, smc.Algorithm]
    terminal: Terminal
    block_size: int
    mcmc_steps: int
    rng: torch.Generator
    on_step: Optional[sampler.StepCallback]
    recorder: Optional[HistoryRecorder]


def _inputs(model, input_ids, generation_config, options: SamplerConfig, smc_options: Optional[SMCConfig], seed,
            on_step, record_history: bool, kwargs: dict) -> _Call:
    """Check and resolve everything before any decoding: a bad argument fails here, with the fix."""
    attention_mask = kwargs.pop("attention_mask", None)
    tokenizer = kwargs.pop("tokenizer", None)
    if input_ids is None:
        input_ids = kwargs.pop("inputs", None)
    backend = backends.for_model(model)
    prepared = "stopping_criteria" in kwargs  # called by transformers' generate, inputs already expanded
    for name in _PREPARED_BY_TRANSFORMERS:
        kwargs.pop(name, None)
    settings.check_seed(seed)
    as_lists = isinstance(input_ids, (list, tuple))
    input_ids, attention_mask = _as_batch(input_ids, attention_mask)
    generation = settings.resolve(backend.defaults, generation_config, kwargs, input_ids.shape[1], prepared)
    if as_lists:
        input_ids = input_ids.masked_fill(attention_mask == 0, generation.pad_token_id)
    elif attention_mask is None and input_ids.shape[0] > 1 and (input_ids[:, 0] == generation.pad_token_id).any():
        warnings.warn(
            f"`input_ids` rows start with the pad token ({generation.pad_token_id}) but no `attention_mask` was given, "
            "so the padding is read as prompt: pass the tokenizer's `attention_mask` too.", stacklevel=3)
    stop_strings = _stop_strings(generation.stop_strings, tokenizer or backend.tokenizer, backend)
    block_size = options.block_size_for(generation.max_new_tokens)
    attention_mask = _check_prompt(input_ids, attention_mask, backend.context_length, generation.max_new_tokens)
    if record_history and not generation.return_dict_in_generate:
        raise ValueError("`record_history=True` returns the history in the output object: pass `return_dict_in_generate=True` too.")

    device = backend.device
    input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
    if not prepared and generation.num_return_sequences > 1 and smc_options is None:
        input_ids = input_ids.repeat_interleave(generation.num_return_sequences, dim=0)
        attention_mask = attention_mask.repeat_interleave(generation.num_return_sequences, dim=0)
    rng = torch.Generator(device=device)
    if seed is None:
        rng.seed()
    else:
        rng.manual_seed(seed)
    recorder = HistoryRecorder() if record_history else None
    if recorder is not None:
        on_step = recorder if on_step is None else _both(on_step, recorder)
    if smc_options is None:
        algorithm = kernel.build(options.alpha, options.cut_distribution, generation.top_k, generation.top_p,
                                 diagnostics=record_history or isinstance(on_step, HistoryRecorder))
    else:
        algorithm = smc.build(options.alpha, smc_options.particles, ess_threshold=smc_options.ess_threshold,
                              resampling_scheme=smc_options.resampling, resample_every=smc_options.resample_every,
                              bridge_tokens=smc_options.bridge_tokens, top_k=generation.top_k, top_p=generation.top_p)
        if prepared:
            generation = dataclasses.replace(generation, num_return_sequences=1)  # rows already repeated
    terminal = Terminal(generation.eos_token_ids, stop_strings, generation.max_new_tokens, device)
    return _Call(backend, input_ids, attention_mask, generation, algorithm, terminal, block_size, options.mcmc_steps, rng,
                 on_step, recorder)


def _run(call: _Call) -> Union[kernel.State, smc.Run]:
    """Every row's schedule on the backend; the backend is closed whatever happens."""
    try:
        with torch.inference_mode():
            forwarded = call.backend.prepare(call.input_ids, call.attention_mask, proposal=call.algorithm.proposal,
                                             terminal=call.terminal)
            if isinstance(call.algorithm, smc.Algorithm):
                return smc.run(call.rng, call.algorithm, call.backend, forwarded, terminal=call.terminal)
            return sampler.run(call.rng, call.algorithm, call.backend, forwarded, block_size=call.block_size,
                               mcmc_steps=call.mcmc_steps, terminal=call.terminal, on_step=call.on_step)
    finally:
        call.backend.close()


def _both(first: sampler.StepCallback, second: sampler.StepCallback) -> sampler.StepCallback:
    def call(info: kernel.Info) -> None:
        first(info)
        second(info)

    return call


def _stop_strings(strings: tuple, tokenizer, backend) -> Optional[StopStrings]:
    if not strings:
        return None
    if tokenizer is None:
        raise ValueError("`stop_strings` needs the model's tokenizer to read its tokens' texts: pass `tokenizer=tokenizer` "
                         "too, as for `model.generate`.")
    return StopStrings.from_tokenizer(strings, tokenizer, backend.vocab_size).to(backend.device)


def _continuations(state, input_ids: torch.Tensor, pad_token_id: int) -> tuple[torch.Tensor, Trace]:
    """Prompt + continuation of every row of `state` (an MH or SMC state), and the per-position numbers."""
    width = int(state.length.max())
    valid = torch.arange(width, device=input_ids.device)[None, :] < state.length[:, None]
    continuation = torch.where(valid, state.tokens[:, :width], pad_token_id)
    trace = Trace(*(torch.where(valid, x[:, :width], torch.zeros_like(x[:, :width]))
                    for x in (state.log_p, state.log_z, state.entropy)), state.length)
    return torch.cat([input_ids, continuation], dim=1), trace


def _output(call: _Call, result):
    """The sequences, or the `ECMHOutput` with stats, trace and history (MH) or particles (SMC)."""
    if isinstance(result, smc.Run):
        return _smc_output(call, result)
    state, generation = result, call.generation
    sequences, trace = _continuations(state, call.input_ids, generation.pad_token_id)
    if not generation.return_dict_in_generate:
        return sequences
    stats = Stats(
        acceptance_rate=state.accepted.float() / state.proposals.float(),
        proposals=state.proposals,
        accepted=state.accepted,
        tokens_decoded=state.tokens_decoded,
        tokens_forwarded=state.tokens_forwarded,
        log_p=trace.log_p.sum(1),
        sequential_passes=state.tokens_decoded + 1,  # each token after the one before; the prompt in one pass
    )
    return ECMHOutput(sequences, stats, trace, call.recorder.history() if call.recorder is not None else None)


def _smc_output(call: _Call, result: smc.Run):
    """`num_return_sequences` particles per prompt drawn by the final weights, and with `return_dict_in_generate`
    every particle."""
    state, tally = result.state, result.tally
    n, draws = call.algorithm.particles, call.generation.num_return_sequences
    log_weights = smc.by_group(state.log_weight, n)
    weights = torch.softmax(log_weights.double(), dim=1)
    chosen = torch.multinomial(weights.float(), draws, replacement=True, generator=call.rng)
    group = torch.arange(weights.shape[0], device=chosen.device)[:, None]
    rows = (group * n + chosen).flatten()
    prompts = call.input_ids.repeat_interleave(n, dim=0)
    sequences, trace = _continuations(state, prompts, call.generation.pad_token_id)
    if not call.generation.return_dict_in_generate:
        return sequences[rows]
    per_answer = group.expand(-1, draws).flatten()
    zero = torch.zeros_like(rows)
    stats = Stats(
        acceptance_rate=torch.full(rows.shape, float("nan"), device=rows.device), proposals=zero, accepted=zero,
        tokens_decoded=tally.tokens_decoded[per_answer], tokens_forwarded=tally.tokens_forwarded[per_answer],
        log_p=trace.log_p.sum(1)[rows], sequential_passes=tally.steps[per_answer] + 1,
    )
    particles = ParticleSet(
        sequences=sequences, log_weights=log_weights, weights=weights.float(),
        log_evidence=torch.logsumexp(log_weights, dim=1) - math.log(n), ess=result.ess, resamples=tally.resamples,
        chosen=chosen, trace=trace,
    )
    return ECMHOutput(sequences[rows], stats, Trace(*(x[rows] for x in trace)), particles=particles)
