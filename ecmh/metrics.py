"""Per-trace metrics from the numbers the sampler stored per position (`ecmh.Trace`): no forward pass,
except where a model is named (the verifier of the cross-model metrics; `self_certainty`).

Every function takes the `trace` of an `ecmh.Output` (`out.trace`) and returns one value per row `[R]`
(or per position `[R, L]`, 0 past each row's length). `H_t` is the entropy of `p(. | prompt, y_<t)`
in nats, `n` a row's length.
"""

import math
from typing import NamedTuple, Sequence

import torch

from .cuts import entropy_jumps as _jumps
from .outputs import Trace


def _valid(trace: Trace) -> torch.Tensor:
    return torch.arange(trace.entropy.shape[1], device=trace.entropy.device)[None, :] < trace.length[:, None]


def _mean(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    return torch.where(valid, values, torch.zeros_like(values)).sum(1) / valid.sum(1).clamp_min(1)


def entropy_jumps(trace: Trace) -> torch.Tensor:
    """`H_t - H_{t-1}` with `H_{-1} = 0`, `[R, L]`: what entropy cuts weigh (arXiv 2605.30327)."""
    return torch.where(_valid(trace), _jumps(trace.entropy), torch.zeros_like(trace.entropy))


def mean_entropy(trace: Trace) -> torch.Tensor:
    """`(1/n) sum_t H_t`."""
    return _mean(trace.entropy, _valid(trace))


def mean_log_likelihood(trace: Trace) -> torch.Tensor:
    """`(1/n) sum_t log p(y_t | prompt, y_<t)`."""
    return _mean(trace.log_p, _valid(trace))


def high_entropy_sum(trace: Trace, share: float = 0.005) -> torch.Tensor:
    """High-Entropy Sum (HES, arXiv 2605.22389): the sum of the `k` largest token entropies of a trace,
    `k = max(1, ceil(share * n))` (rounded up, so every non-empty trace counts at least its top token;
    0 for an empty trace). Lower means more confident.

    Example:
        >>> import torch
        >>> trace = Trace(torch.zeros(1, 3), torch.zeros(1, 3), torch.tensor([[0.5, 2.0, 1.0]]), torch.tensor([3]))
        >>> high_entropy_sum(trace, share=0.5).tolist()  # ceil(1.5) = 2 tokens: 2.0 + 1.0
        [3.0]
    """
    if not 0.0 < share <= 1.0:
        raise ValueError(f"`share` must be in (0, 1], got {share!r}.")
    valid = _valid(trace)
    ranked = torch.where(valid, trace.entropy, torch.full_like(trace.entropy, float("-inf"))).sort(1, descending=True).values
    k = torch.ceil(trace.length.double() * share).long().clamp_min(1) * (trace.length > 0)
    top = torch.arange(ranked.shape[1], device=ranked.device)[None, :] < k[:, None]
    return torch.where(top, ranked, torch.zeros_like(ranked)).sum(1)


def entropy_profile(trace: Trace, answer_start: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean entropy of the reasoning part (positions `< answer_start`) and of the answer part (from it on),
    per row: how informative each step is, reasoning against answer. `answer_start` `[R]` is a token
    position (e.g. where the final `\\boxed{` begins, see `answer_start_positions`); NaN for an empty part."""
    valid = _valid(trace)
    position = torch.arange(trace.entropy.shape[1], device=trace.entropy.device)[None, :]
    reasoning, answer = valid & (position < answer_start[:, None]), valid & (position >= answer_start[:, None])

    def mean(part):
        return torch.where(part.any(1), _mean(trace.entropy, part), torch.full_like(trace.length, float("nan"), dtype=torch.float))

    return mean(reasoning), mean(answer)


def answer_start_positions(tokenizer, continuations: Sequence[Sequence[int]], marker: str = "\\boxed") -> torch.Tensor:
    """Per continuation, the first token whose decoded prefix contains the last `marker` (its length if none).

    `continuations`: token-id lists, one per answer (e.g. `out.sequences[r, prompt_width:][:out.trace.length[r]]`),
    not decoded text: the positions are token positions."""
    starts = []
    for tokens in continuations:
        if isinstance(tokens, str) or not all(isinstance(t, int) or (torch.is_tensor(t) and t.dim() == 0)
                                              for t in tokens):
            raise TypeError("`continuations` holds token-id lists (e.g. out.sequences[r, prompt_width:] cut at "
                            f"out.trace.length[r]), not decoded text; got an item of type {type(tokens).__name__}.")
        text = tokenizer.decode(list(tokens), skip_special_tokens=True)
        at = text.rfind(marker)
        start = len(tokens)
        if at >= 0:
            start = next(t for t in range(len(tokens) + 1)
                         if len(tokenizer.decode(list(tokens[: t + 1]), skip_special_tokens=True)) > at)
        starts.append(start)
    return torch.tensor(starts, dtype=torch.long)


@torch.no_grad()
def self_certainty(model, sequences: torch.Tensor, prompt_mask: torch.Tensor, trace: Trace) -> torch.Tensor:
    """Karan & Du's "confidence": self-certainty (Kang et al. 2025), the mean over the continuation's positions
    of `KL(U || p_t) = -log V - (1/V) sum_v log p_t(v)`. Unlike the other metrics it needs the whole
    distribution at each position, which the sampler does not store: one batched forward pass of `model`
    over `sequences` (as returned), whose left-padded prompts have the attention mask `prompt_mask` `[R, P]`."""
    width = prompt_mask.shape[1]
    attention = torch.cat([prompt_mask, torch.ones_like(sequences[:, width:])], dim=1)
    position = (attention.cumsum(1) - 1).clamp_min(0)
    logits = model(input_ids=sequences, attention_mask=attention, position_ids=position).logits[:, width - 1 : -1]
    log_p = torch.log_softmax(logits.float(), dim=-1)
    per_position = -math.log(log_p.shape[-1]) - log_p.mean(-1)
    return _mean(per_position[:, : trace.entropy.shape[1]], _valid(trace))


class CrossModel(NamedTuple):
    """A verifier model's view of each response (its own tokenization of the response text)."""

    cross_model_entropy: torch.Tensor  # [R] CME (arXiv 2605.29009): mean log-likelihood per verifier token
    verifier_entropy: torch.Tensor  # [R] the verifier's mean token entropy over the response (not CME)
    tokens: torch.Tensor  # [R] the response's length in verifier tokens


@torch.no_grad()
def cross_model(verifier, tokenizer, prompts: Sequence[str], responses: Sequence[str], batch_size: int = 8) -> CrossModel:
    """Score `responses` (texts) to `prompts` (texts, chat template already applied if wanted) under a separate
    causal LM `verifier` with its own `tokenizer`, in batches. Cross-Model Entropy (CME, arXiv 2605.29009) is
    the mean log-likelihood of the response under the verifier; the verifier's mean entropy over the response,
    which an earlier paper also called "CME", is returned as `verifier_entropy`.

    Example:
        >>> import ecmh
        >>> verifier, tokenizer = ecmh.load_model("qwen2.5-coder-0.5b-instruct")  # doctest: +SKIP
        >>> ecmh.metrics.cross_model(verifier, tokenizer, ["2 + 2 ="], [" 4"]).cross_model_entropy  # doctest: +SKIP
    """
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses: give one prompt per response.")
    if not all(prompts):
        raise ValueError("Every prompt needs some text: the verifier scores the response's first token given it.")
    scores, entropies, lengths = [], [], []
    for start in range(0, len(prompts), batch_size):
        pairs = [(tokenizer(p, add_special_tokens=False).input_ids, tokenizer(r, add_special_tokens=False).input_ids)
                 for p, r in zip(prompts[start:start + batch_size], responses[start:start + batch_size])]
        width = max(len(p) + len(r) for p, r in pairs)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        ids = torch.tensor([[pad] * (width - len(p) - len(r)) + p + r for p, r in pairs], device=verifier.device)
        mask = torch.tensor([[0] * (width - len(p) - len(r)) + [1] * (len(p) + len(r)) for p, r in pairs],
                            device=verifier.device)
        log_p = torch.log_softmax(verifier(input_ids=ids, attention_mask=mask).logits[:, :-1].float(), dim=-1)
        token_log_p = log_p.gather(2, ids[:, 1:, None]).squeeze(2)
        entropy = -(log_p.exp() * log_p).nan_to_num().sum(-1)
        response = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for _, r in pairs], device=verifier.device)[:, 1:].bool()
        scores.append(_mean(token_log_p, response))
        entropies.append(_mean(entropy, response))
        lengths.append(response.sum(1))
    return CrossModel(torch.cat(scores).cpu(), torch.cat(entropies).cpu(), torch.cat(lengths).cpu())
