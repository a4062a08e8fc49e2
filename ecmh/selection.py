"""`ecmh.select`: the best of several chains per prompt, without a verifier of correctness."""

from collections import Counter
from typing import Callable, Optional, Sequence, Union

import torch

from . import metrics
from .checks import is_int
from .outputs import Output

SELECTORS = ("log_p", "hes", "cme", "majority")


def select(
    output: Output,
    num_return_sequences: int,
    by: Union[str, Callable[[Output], torch.Tensor]] = "log_p",
    *,
    answers: Optional[Sequence[Optional[str]]] = None,
    cross_model: Optional[metrics.CrossModel] = None,
    hes_share: float = 0.005,
) -> torch.Tensor:
    """The index of the chosen row for each prompt, `[prompts]`, among its `num_return_sequences` chains
    (rows `p * n .. p * n + n - 1`, as `ecmh.generate` returns them).

    by:
        "log_p": the highest mean log-likelihood per token (`metrics.mean_log_likelihood`);
        "hes": the lowest High-Entropy Sum (`metrics.high_entropy_sum` with `hes_share`);
        "cme": the highest Cross-Model Entropy: pass `cross_model=metrics.cross_model(...)` of the rows;
        "majority": the most common of `answers` (one extracted answer per row, None for none), ties and
            the choice among its rows broken by mean log-likelihood;
        a callable: `by(output) -> [R]` scores, the highest chosen.

    Example:
        >>> import ecmh  # doctest: +SKIP
        >>> out = ecmh.generate(model, ids, num_return_sequences=4, return_dict_in_generate=True)  # doctest: +SKIP
        >>> best = out.sequences[ecmh.select(out, 4, by="hes")]  # doctest: +SKIP
    """
    rows = output.sequences.shape[0]
    if not is_int(num_return_sequences) or num_return_sequences < 1 or rows % num_return_sequences:
        raise ValueError(f"`num_return_sequences` must divide the {rows} rows, got {num_return_sequences!r}.")
    if callable(by):
        score = by(output)
    else:
        hes = metrics.high_entropy_sum(output.trace, hes_share) if by == "hes" else None
        score = scores(by, num_return_sequences, metrics.mean_log_likelihood(output.trace), hes, answers,
                       None if cross_model is None else cross_model.cross_model_entropy)
    score = torch.as_tensor(score, dtype=torch.float64, device="cpu").view(-1, num_return_sequences)
    return torch.arange(score.shape[0]) * num_return_sequences + score.argmax(1)


def scores(by: str, chains: int, mean_log_likelihood: torch.Tensor, high_entropy_sum=None, answers=None,
           cross_model_entropy=None) -> torch.Tensor:
    """Per row, the score selector `by` ranks by (higher is better), from the per-row numbers it needs."""
    rows = len(mean_log_likelihood)
    if by == "log_p":
        return mean_log_likelihood
    if by == "hes":
        return -torch.as_tensor(high_entropy_sum)
    if by == "cme":
        if cross_model_entropy is None:
            raise ValueError('by="cme" needs `cross_model=ecmh.metrics.cross_model(verifier, tokenizer, prompts, texts)`.')
        return cross_model_entropy
    if by == "majority":
        if answers is None or len(answers) != rows:
            raise ValueError(f'by="majority" needs `answers`: one extracted answer (or None) per row, {rows} of them.')
        return majority_scores(answers, chains, mean_log_likelihood)
    raise ValueError(f"Unknown selector {by!r}: use one of {', '.join(SELECTORS)} or a callable.")


def majority_scores(answers, chains: int, log_likelihood: torch.Tensor) -> torch.Tensor:
    """Per row: its answer's vote count among its prompt's `chains` rows (None: no answer, no vote), plus a
    tie-break in [0, 1) that grows with the row's mean log-likelihood."""
    tie_break = torch.sigmoid(log_likelihood.double().cpu()) * 0.999
    votes = []
    for start in range(0, len(answers), chains):
        group = answers[start:start + chains]
        counts = Counter(a for a in group if a is not None)
        votes += [counts[a] if a is not None else 0 for a in group]
    return torch.tensor(votes, dtype=torch.float64) + tie_break
