"""Per-token scoring and sampling for the power-distribution proposal.

Every decoding step turns the model's logits for one position into a `TokenDraw`: a token
sampled from the tempered proposal `q(v) = p(v)^alpha / Z` and, computed in float32 from the
same logits, the three numbers the sampler stores for that position: `log p(token)`,
`log Z = logsumexp(alpha * log p)` and the entropy `H` of `p` (temperature 1).

With `top_k` / `top_p`, `p` is first truncated and renormalised (`p_k`), and `p_k` replaces
`p` everywhere: in the proposal, in the target `p_k^alpha` and in the entropies.
"""

from typing import NamedTuple, Optional

import torch

from .checks import check_int


class TokenDraw(NamedTuple):
    """One sampled token per row, with what the sampler stores for its position."""

    token: torch.Tensor  # [R] long
    log_p: torch.Tensor  # [R] float32, log p(token | prefix)
    log_z: torch.Tensor  # [R] float32, log sum_v p(v | prefix)^alpha
    entropy: torch.Tensor  # [R] float32, entropy of p(. | prefix)


class PowerProposal:
    """Samples from `p^alpha / Z` and scores the draw.

    Args:
        alpha: the power, `>= 1`. The proposal temperature is `1 / alpha`.
        top_k: keep only the `top_k` most likely tokens of `p` (None: no truncation).
        top_p: keep the smallest set of tokens whose probability reaches `top_p` (None: all).

    Example:
        >>> import torch
        >>> proposal = PowerProposal(alpha=4.0)
        >>> draw = proposal(torch.tensor([[2.0, 1.0, 0.0]]), torch.Generator().manual_seed(0))
        >>> draw.token.shape, draw.log_z.dtype
        (torch.Size([1]), torch.float32)
    """

    def __init__(self, alpha: float, top_k: Optional[int] = None, top_p: Optional[float] = None):
        if top_k is not None:
            check_int("top_k", top_k, 1, "or None (no truncation)")
        if top_p is not None and not (0.0 < float(top_p) <= 1.0):
            raise ValueError(f"`top_p` must be in (0, 1] or None (no truncation), got {top_p!r}.")
        self.alpha = float(alpha)
        self.top_k = top_k
        self.top_p = None if top_p is None or float(top_p) == 1.0 else float(top_p)

    def log_probs(self, logits: torch.Tensor) -> torch.Tensor:
        """`log p` (or the truncated `log p_k`) over the vocabulary, float32, `[R, V]`."""
        log_p = torch.log_softmax(logits.float(), dim=-1)
        if self.top_k is not None and self.top_k < log_p.shape[-1]:
            kth = torch.topk(log_p, self.top_k, dim=-1).values[..., -1:]
            log_p = torch.log_softmax(log_p.masked_fill(log_p < kth, float("-inf")), dim=-1)
        if self.top_p is not None:
            sorted_log_p, order = torch.sort(log_p, dim=-1, descending=True)
            mass_before = torch.cumsum(sorted_log_p.exp(), dim=-1) - sorted_log_p.exp()
            drop_sorted = mass_before >= self.top_p  # the first token is always kept
            drop = drop_sorted.scatter(-1, order, drop_sorted)
            log_p = torch.log_softmax(log_p.masked_fill(drop, float("-inf")), dim=-1)
        return log_p

    def normaliser_and_entropy(self, log_p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`log Z = logsumexp(alpha * log p)` and the entropy of `p`, per row of `log_p` `[R, V]`."""
        p = log_p.exp()
        entropy = -torch.where(p > 0, p * log_p, torch.zeros_like(p)).sum(-1)
        return torch.logsumexp(self.alpha * log_p, dim=-1), entropy

    def __call__(self, logits: torch.Tensor, generator: torch.Generator) -> TokenDraw:
        log_p = self.log_probs(logits)
        log_z, entropy = self.normaliser_and_entropy(log_p)
        probs = torch.exp(self.alpha * log_p - log_z[:, None])
        token = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        return TokenDraw(token, log_p.gather(1, token[:, None]).squeeze(1), log_z, entropy)
