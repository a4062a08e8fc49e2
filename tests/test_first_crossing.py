"""`ecmh.kernel.first_crossing` (no engine, no vLLM needed): the vLLM backend stops a proposal with an
early-rejection bound at the first k at which `EarlyRejection.rejected_now` holds for its first k tokens, found for
all k and all rows in one evaluation of the running bound. Checked against `rejected_now` itself, prefix by prefix,
on the random states, cuts and suffixes of tests/test_early_rejection.py."""

import torch
from hypothesis import given

from ecmh import kernel

from test_early_rejection import proposals


@given(proposals())
def test_the_first_crossing_is_the_first_prefix_that_rejected_now_rejects(case):
    cut, state, start, suffix, key = case
    rule = kernel.EarlyRejection(cut)
    mh = torch.ones_like(start, dtype=torch.bool)
    # thresholds that make crossings likely: the state's own bound, raised by a random amount
    bound = kernel.bound(key, state, start, mh)
    bound = bound._replace(threshold=bound.threshold + torch.rand(start.shape, generator=torch.Generator().manual_seed(
        int(key[0] % 1000))) * 6)
    first = rule.first_crossing(bound, start, suffix)
    expected = torch.zeros_like(first)
    for k in range(int(suffix.length.max()), 0, -1):  # the smallest k wins
        now = rule.rejected_now(bound, start, suffix._replace(length=suffix.length.clamp_max(k))) & (suffix.length >= k)
        expected = torch.where(now, k, expected)
    assert torch.equal(first, expected)
    # a suffix cut at its first crossing is one the kernel rejects; cut one token before it, it does not
    crossed = first > 0
    at = suffix._replace(length=torch.where(crossed, first, suffix.length))
    assert (kernel.rejected(cut, bound, start, at) == crossed).all()
    before = suffix._replace(length=torch.where(crossed, first - 1, suffix.length))
    assert not (kernel.rejected(cut, bound, start, before) & crossed).any()
