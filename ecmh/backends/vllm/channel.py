"""How each decoded token's `log p`, `log Z` and entropy travel from the engine to the backend.

A vLLM logits processor (either runner generation) can change logits, and nothing else: vLLM gives it no
output of its own, and a request's output carries only token ids, logprobs and text. So the
numbers ride in the logprobs. The processor (`processor.py`) overwrites a row's logits with `+inf`
at the token it drew, `-inf` everywhere else except three "slot" tokens that hold `log p(token)`,
`log Z` and `H` as their values. The requests are greedy, so vLLM's sampler emits the drawn token,
and the engine runs with `logprobs_mode="processed_logits"` and 4 logprobs per token: the drawn
token and the three slots come back as they were written, in the logits' dtype.

Limits, tested in `tests/test_vllm_channel.py` (no engine needed) and `tests/test_vllm.py`: the
vocabulary needs at least `LOGPROBS` tokens (the backend refuses smaller ones); the numbers come
back bit for bit because vLLM's sampler converts the logits to float32 before logits processors
run, whatever the model's dtype (16-bit logits would round them); any batch size; a drawn token's
`log p` is finite, so a slot never reads as a masked `-inf`.
"""

from typing import Optional

import torch

EXTRA_ARGS_KEY = "ecmh"  # SamplingParams.extra_args[EXTRA_ARGS_KEY] = [alpha, top_k, top_p, seed]
SLOTS = 3  # log p, log Z, H
LOGPROBS = SLOTS + 1  # the drawn token and its slots
NO_NUMBERS = (
    "vLLM returned no ecmh numbers for a token: the engine did not run ecmh's logits processor "
    "(was it built with ecmh.load_vllm?)."
)


def request_spec(alpha: float, top_k: Optional[int], top_p: Optional[float], seed: int) -> list:
    """What an ecmh request tells the processor (`extra_args[EXTRA_ARGS_KEY]`); 0 / 1.0 mean no truncation."""
    return [alpha, top_k if top_k is not None else 0, top_p if top_p is not None else 1.0, seed]


def request_spec_of(sampling_params) -> Optional[list]:
    """The ecmh spec of a request's `SamplingParams` (None for a request that is not ecmh's); a malformed
    one, or one whose request would not return the draw, is refused with a ValueError."""
    spec = (sampling_params.extra_args or {}).get(EXTRA_ARGS_KEY)
    if spec is None:
        return None
    if not (isinstance(spec, (list, tuple)) and len(spec) == 4):
        raise ValueError(f"extra_args[{EXTRA_ARGS_KEY!r}] must be [alpha, top_k, top_p, seed], got {spec!r}.")
    if sampling_params.temperature != 0.0 or (sampling_params.logprobs or 0) < LOGPROBS:
        raise ValueError(f"ecmh requests are greedy (temperature=0) and ask for {LOGPROBS} logprobs.")
    return list(spec)


def slot_tokens(token: int) -> list[int]:
    """The three token ids whose processed logits carry `log p`, `log Z`, `H` for a draw of `token`."""
    return [t for t in range(SLOTS + 1) if t != token][:SLOTS]


def encode(token: torch.Tensor, numbers: torch.Tensor, vocab_size: int, dtype: torch.dtype) -> torch.Tensor:
    """Processed logits `[R, V]` for drawn tokens `[R]` and their numbers `[R, SLOTS]` (`slot_tokens` order)."""
    slots = torch.arange(SLOTS, device=token.device)[None, :]
    slots = slots + (slots >= token[:, None]).long()  # the first three ids other than the drawn one
    out = torch.full((token.shape[0], vocab_size), float("-inf"), dtype=dtype, device=token.device)
    out.scatter_(1, slots, numbers.to(dtype))
    out.scatter_(1, token[:, None], float("inf"))
    return out


def decode(token: int, logprobs: Optional[dict]) -> list[float]:
    """`[log p, log Z, H]` of one decoded token, from the logprobs vLLM returned with it."""
    if logprobs is None or any(t not in logprobs for t in slot_tokens(token)):
        raise RuntimeError(NO_NUMBERS)
    return [logprobs[t].logprob for t in slot_tokens(token)]
