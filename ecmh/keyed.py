"""Counter-based random numbers: each a fixed function of a key and integer counters (tensor code, no host sync).

Every chain has its own key, drawn once from `ecmh.generate`'s generator, and every proposal of the chain its own
key, `fold(chain_key, proposal_number)`. From a proposal's key come its cut, its accept/reject uniform and the
seed its tokens are drawn with on an engine. So a chain's draws do not depend on which rows share its batch nor
on when an engine finishes them (`ecmh.backends.vllm` streams proposals and settles each as it finishes), and
the same seed gives the same answers on any batching.

The hash is Wellons' "lowbias32" integer mixer (full avalanche), chained over the key's two 32-bit halves
and then each counter (`bits`). `tests/test_keyed.py` checks uniformity and independence, with a weak mixer as the
negative control.
"""

import torch

MASK32 = (1 << 32) - 1
UNIFORM_BITS = 24  # float32 holds every multiple of 2**-24 in [0, 1) exactly
KEY_BITS = 62  # keys and seeds lie in [0, 2**62): positive int64, and JSON-safe as Python ints


def _times(x: torch.Tensor, constant: int) -> torch.Tensor:
    """`x * constant mod 2**32` for `x` in [0, 2**32), in int64 without overflow (16-bit halves)."""
    low, high = x & 0xFFFF, x >> 16
    return (low * constant + (((high * constant) & 0xFFFF) << 16)) & MASK32


def _mix(x: torch.Tensor) -> torch.Tensor:
    x = x ^ (x >> 16)
    x = _times(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _times(x, 0x846CA68B)
    return x ^ (x >> 16)


def _chain(key: torch.Tensor, counters, first: int, second: int) -> torch.Tensor:
    hashed = _mix((key & MASK32) ^ first)
    hashed = _mix(hashed ^ ((key >> 32) & MASK32) ^ second)
    for counter in counters:
        hashed = _mix(hashed ^ (torch.as_tensor(counter, device=hashed.device).long() & MASK32))
    return hashed


def bits(key: torch.Tensor, *counters) -> torch.Tensor:
    """32 random bits (int64 in [0, 2**32)) per element of the broadcast of `key` and `counters`.

    Two hash chains with different constants, XOR-ed: each squeezes the 62-bit key into 32 bits of state, so
    two keys share a whole stream only if both chains collide (about 2**-64 per pair, not 2**-32)."""
    key = torch.as_tensor(key).long()
    return _chain(key, counters, 0x9E3779B9, 0x85EBCA6B) ^ _chain(key, counters, 0x27D4EB2F, 0x165667B1)


def uniforms(key: torch.Tensor, *counters) -> torch.Tensor:
    """Uniforms in [0, 1): float32 multiples of `2**-UNIFORM_BITS`, as `torch.rand` draws them."""
    return (bits(key, *counters) >> (32 - UNIFORM_BITS)).float() * 2.0**-UNIFORM_BITS


def nonzero_uniforms(key: torch.Tensor, *counters) -> torch.Tensor:
    """Uniforms in (0, 1] (their `log` is finite): `uniforms` moved up by one step of `2**-UNIFORM_BITS`."""
    return ((bits(key, *counters) >> (32 - UNIFORM_BITS)) + 1).float() * 2.0**-UNIFORM_BITS


def fold(key: torch.Tensor, *counters) -> torch.Tensor:
    """A new key in [0, 2**62) for `key` and `counters` (as `jax.random.fold_in`)."""
    high = bits(key, *counters, 0) & ((1 << (KEY_BITS - 32)) - 1)
    return (high << 32) | bits(key, *counters, 1)


class PromptSeeds(torch.Generator):
    """`ecmh.generate`'s generator when `seed` is a list, one seed per prompt: `keys` gives each prompt's rows the keys
    that a call on that prompt alone with its own seed draws, so MH's chains (whose every random number comes from
    their keys) do not depend on the other prompts of the batch. What else an algorithm draws from the generator
    (SMC's resampling) comes from this one, seeded with the first seed: such answers still depend on the batch."""

    def __new__(cls, seeds: list, device):
        return super().__new__(cls, device=device)

    def __init__(self, seeds: list, device):
        self.manual_seed(seeds[0])
        self.prompts = [torch.Generator(device=device).manual_seed(seed) for seed in seeds]


def keys(rng: torch.Generator, rows: int) -> torch.Tensor:
    """One fresh key per row, from `rng` (on its device); from each prompt's own seed for `PromptSeeds` when the rows
    are the prompts' in order, the same number each."""
    if isinstance(rng, PromptSeeds) and rows % len(rng.prompts) == 0:
        each = rows // len(rng.prompts)
        return torch.cat([torch.randint(0, 2**KEY_BITS, (each,), generator=prompt, device=rng.device)
                          for prompt in rng.prompts])
    return torch.randint(0, 2**KEY_BITS, (rows,), generator=rng, device=rng.device)
