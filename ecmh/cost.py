"""What a call may cost, said before it starts: the README's cost model ("What to expect") and its CPU figure."""

CPU_TOKENS_PER_SECOND = 13  # SmolLM2-135M, one row, 2 CPU cores (README, "Speed on a CPU"); larger models are slower


def mh_tokens(max_new_tokens: int, block_size: int, mcmc_steps: int) -> int:
    """About the most tokens an ECMH answer running to the cap decodes: the blocks' extensions plus, after block k,
    `mcmc_steps` proposals of about half of `k * block_size` tokens each (uniform cuts).

    Example:
        >>> mh_tokens(max_new_tokens=3072, block_size=192, mcmc_steps=10)  # the papers' settings
        133632
    """
    blocks = -(-max_new_tokens // block_size)
    return max_new_tokens + sum(mcmc_steps * min(k * block_size, max_new_tokens) // 2 for k in range(1, blocks + 1))


def cpu_time(tokens: int) -> str:
    """How long decoding `tokens` one after another takes at `CPU_TOKENS_PER_SECOND`, in words."""
    seconds = tokens / CPU_TOKENS_PER_SECOND
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"
