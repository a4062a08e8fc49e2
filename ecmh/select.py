"""`ecmh.select`: the best of several chains per prompt, without a verifier of correctness."""

from collections import Counter
from typing import Callable, Optional, Sequence, Union

import torch

from . import metrics
from .generation import ECMHOutput

SELECTORS = ("log_p", "hes", "cme", "majority")


def select(
    output: ECMHOutput,
    num_return_sequences: int,
    by: Union[str, Callable[[ECMHOutput], torch.Tensor]] = "log_p",
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
    if isinstance(num_return_sequences, bool) or not isinstance(num_return_sequences, int) or num_return_sequences < 1 \
            or rows % num_return_sequences:
        raise ValueError(f"`num_return_sequences` must divide the {rows} rows, got {num_return_sequences!r}.")
    log_likelihood = metrics.mean_log_likelihood(output.trace)
    if callable(by):
        score = by(output)
    elif by == "log_p":
        score = log_likelihood
    elif by == "hes":
        score = -metrics.high_entropy_sum(output.trace, hes_share)
    elif by == "cme":
        if cross_model is None:
            raise ValueError('by="cme" needs `cross_model=ecmh.metrics.cross_model(verifier, tokenizer, prompts, texts)`.')
        score = cross_model.cross_model_entropy
    elif by == "majority":
        if answers is None or len(answers) != rows:
            raise ValueError(f'by="majority" needs `answers`: one extracted answer (or None) per row, {rows} of them.')
        score = majority_scores(answers, num_return_sequences, log_likelihood)
    else:
        raise ValueError(f"Unknown selector {by!r}: use one of {', '.join(SELECTORS)} or a callable.")
    score = torch.as_tensor(score, dtype=torch.float64, device="cpu").view(-1, num_return_sequences)
    return torch.arange(score.shape[0]) * num_return_sequences + score.argmax(1)


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
