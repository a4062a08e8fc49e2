"""Per-token scoring and sampling for the power-distribution proposal.

Every decoding step turns the model's logits for one position into a `TokenDraw`: a token
sampled from the tempered proposal `q(v) = p(v)^alpha / Z` and, computed in float32 from the
same logits, the three numbers the sampler stores for that position: `log p(token)`,
`log Z = logsumexp(alpha * log p)` and the entropy `H` of `p` (temperature 1).

With `top_k` / `top_p`, `p` is first truncated and renormalised (`p_k`), and `p_k` replaces
`p` everywhere: in the proposal, in the target `p_k^alpha` and in the entropies.

Float32 underflow, said rather than hidden: a token whose proposal weight is below e^-87 (~1.6e-38) times the
most likely token's is never drawn (its weight is 0, not a subnormal number that the CPU computes ten times
slower), and `log Z` is the normaliser of the weights actually drawn from, so the MH ratio is that of the
proposal that runs. The target loses only answers through such a token: mass below 1e-37 per position.
The token is drawn by inverting the cumulative weights at one uniform per row (`invert_cdf`): one pass,
where `torch.multinomial` cost thirty times as much on a CPU. A draw makes about a dozen passes over the
vocabulary; on a CPU it runs on blocks of rows that fit a core's cache (`ROW_BLOCK_BYTES`): 2.2-2.4x faster at
16 and 32 rows of a 49k- or 152k-token vocabulary (`python -m benchmarks.draw_speed`, `benchmarks/results/
draw-cpu.json`), each row's numbers the same.
"""

from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F

from .checks import check_int, check_number


# exp(x) for x at or below this is a float32 subnormal number or 0, which the CPU's vectorised exp computes on a
# slow path (about ten times a normal exp, and a vocabulary has many such tokens); such a probability is below
# float32's resolution of any sum it joins.
MIN_NORMAL_EXPONENT = -87.0
_SMALLEST_KEPT = float(torch.tensor(MIN_NORMAL_EXPONENT).exp())
# a CPU draws from blocks of rows of about this many bytes of float32 logits: a block's passes then run in L2 cache
ROW_BLOCK_BYTES = 1 << 20


def exp_without_subnormals_(x: torch.Tensor) -> torch.Tensor:
    """`exp(x)` in place, with 0 for `x <= -87` (results below ~1.6e-38 in float32, `-inf` included): a token that
    rare is never drawn and adds nothing to a normaliser. Equal to `exp(x)` elsewhere, at a normal exp's speed."""
    return F.threshold_(x.clamp_min_(MIN_NORMAL_EXPONENT).exp_(), _SMALLEST_KEPT, 0.0)


class TokenDraw(NamedTuple):
    """One sampled token per row, with what the sampler stores for its position."""

    token: torch.Tensor  # [R] long
    log_p: torch.Tensor  # [R] float32, log p(token | prefix)
    log_z: torch.Tensor  # [R] float32, log sum_v p(v | prefix)^alpha
    entropy: torch.Tensor  # [R] float32, entropy of p(. | prefix)


def invert_cdf(weights: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
    """Per row of `weights` `[R, V]` (nonnegative, unnormalised; overwritten by their running sums), the token whose
    cumulative mass first exceeds `uniform` `[R]` (in [0, 1)) times the total: a token of weight 0 never."""
    cdf = weights.cumsum_(dim=-1)
    total = cdf[:, -1:]
    below_total = torch.nextafter(total, torch.zeros_like(total))  # u * total may round up to the total
    return torch.searchsorted(cdf, torch.minimum(uniform[:, None] * total, below_total), right=True).squeeze(1)


class ProposalScores(NamedTuple):
    """What the proposal needs of one position's `log p` `[R, V]`."""

    log_z: torch.Tensor  # [R] log sum_v p(v)^alpha
    entropy: torch.Tensor  # [R] entropy of p
    weights: torch.Tensor  # [R, V] q(v) times a positive number per row (exp(alpha * log p - max))


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
        if top_p is not None:
            check_number("top_p", top_p, minimum=0, maximum=1, above=True, meaning="or None: no truncation")
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

    def scores(self, log_p: torch.Tensor) -> "ProposalScores":
        """`log Z = logsumexp(alpha * log p)`, the entropy of `p` and the proposal's unnormalised weights, per row of
        `log_p` `[R, V]` (float32; a probability below float32's smallest normal number counts as 0:
        `exp_without_subnormals_`)."""
        clamped = log_p.clamp_min(MIN_NORMAL_EXPONENT)  # finite: a masked token's 0 * log 0 adds 0 below
        p = F.threshold_(clamped.exp(), _SMALLEST_KEPT, 0.0)  # exp_without_subnormals_, keeping `clamped`
        entropy = -torch.linalg.vecdot(p, clamped)
        weights = self.alpha * log_p
        top = weights.amax(dim=-1, keepdim=True)
        exp_without_subnormals_(weights.sub_(top))
        return ProposalScores(top.squeeze(-1) + weights.sum(-1).log(), entropy, weights)

    def __call__(self, logits: torch.Tensor, generator: torch.Generator) -> TokenDraw:
        return self.draw(logits, torch.rand(logits.shape[0], generator=generator, device=logits.device))

    def draw(self, logits: torch.Tensor, uniform: torch.Tensor) -> TokenDraw:
        """One token per row of `logits` `[R, V]` from `p^alpha / Z`, at the row's `uniform` `[R]` (in [0, 1)) of
        `invert_cdf`, with its numbers. On a CPU, in blocks of rows of about `ROW_BLOCK_BYTES` (module docstring)."""
        block = logits.shape[0] if logits.device.type != "cpu" else max(1, ROW_BLOCK_BYTES // (4 * logits.shape[-1]))
        if logits.shape[0] <= block:
            return self._draw(logits, uniform)
        draws = [self._draw(*rows) for rows in zip(logits.split(block), uniform.split(block))]
        return TokenDraw(*(torch.cat(column) for column in zip(*draws)))

    def _draw(self, logits: torch.Tensor, uniform: torch.Tensor) -> TokenDraw:
        log_p = self.log_probs(logits)
        log_z, entropy, weights = self.scores(log_p)
        token = invert_cdf(weights, uniform)
        return TokenDraw(token, log_p.gather(1, token[:, None]).squeeze(1), log_z, entropy)
