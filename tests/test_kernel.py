"""The backend-agnostic kernel: splicing, cut distributions, and no host sync in an MH step."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from ecmh import keyed, kernel, mh, scoring
from ecmh.settings import GenerationSettings
from ecmh.cuts import EntropyCut, RestartCut, UniformCut, resolve_cut
from ecmh.scoring import PowerProposal
from ecmh.terminal import Terminal


def test_splice_keeps_prefix_and_takes_suffix():
    kept = torch.arange(10).view(2, 5)
    new = torch.tensor([[100, 101], [200, 201]])
    assert kernel.splice(kept, new, torch.tensor([1, 4])).tolist() == [[0, 100, 101, 3, 4], [5, 6, 7, 8, 200]]
    assert torch.equal(kernel.splice(kept, new, torch.tensor([5, 5])), kept)


def test_cut_distributions():
    entropy = torch.tensor([[1.0, 0.5, 2.0, 9.0]])
    length = torch.tensor([3])
    probs = kernel.cut_log_probs(EntropyCut(1.0), entropy, length).exp()
    assert torch.allclose(probs, torch.tensor([[0.4, 0.0, 0.6, 0.0]]))  # jumps 1, -0.5, 1.5; position 3 is past the end
    assert torch.allclose(kernel.cut_log_probs(UniformCut(), entropy, length).exp(), torch.tensor([[1 / 3] * 3 + [0.0]]))
    assert torch.allclose(kernel.cut_log_probs(RestartCut(), entropy, length).exp(), torch.tensor([[1.0, 0, 0, 0]]))
    falling = torch.tensor([[0.0, -1.0, -2.0]])  # no positive jump anywhere: uniform fallback
    assert torch.allclose(kernel.cut_log_probs(EntropyCut(), falling, torch.tensor([3])).exp(), torch.full((1, 3), 1 / 3))


def test_custom_cut_objects_are_accepted_and_checked():
    class Last:
        def log_weights(self, entropy, length):
            return torch.where(torch.arange(entropy.shape[1]) == length[:, None] - 1, 0.0, float("-inf"))

    cut = resolve_cut(Last())
    assert kernel.cut_log_probs(cut, torch.zeros(1, 4), torch.tensor([2])).exp().tolist() == [[0, 1, 0, 0]]
    with pytest.raises(TypeError, match="log_weights"):
        resolve_cut(object())


def test_power_proposal_scores_are_consistent():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    draw = PowerProposal(alpha=3.0)(logits, torch.Generator().manual_seed(0))
    log_p = torch.log_softmax(logits, -1)[0]
    assert draw.log_p.item() == pytest.approx(log_p[draw.token].item())
    assert draw.log_z.item() == pytest.approx(torch.logsumexp(3 * log_p, 0).item())
    assert draw.entropy.item() == pytest.approx(-(log_p.exp() * log_p).sum().item())
    truncated = PowerProposal(alpha=1.0, top_k=2).log_probs(logits)
    assert torch.isneginf(truncated[0, 2:]).all() and truncated.exp().sum().item() == pytest.approx(1.0)
    nucleus = PowerProposal(alpha=1.0, top_p=0.5).log_probs(logits)  # p = .64, .24, ...: the first token alone
    assert nucleus.exp()[0, 0].item() == pytest.approx(1.0)


@given(rows=st.integers(1, 4), vocab=st.integers(2, 300), scale=st.sampled_from([0.1, 3.0, 30.0, 300.0]),
       alpha=st.sampled_from([1.0, 2.5, 4.0, 16.0]), top_k=st.sampled_from([None, 1, 7]), seed=st.integers(0, 2**16))
def test_proposal_scores_equal_a_float64_recomputation_even_where_probabilities_underflow(rows, vocab, scale, alpha,
                                                                                        top_k, seed):
    logits = torch.randn(rows, vocab, generator=torch.Generator().manual_seed(seed)) * scale
    proposal = PowerProposal(alpha, top_k)
    log_p = proposal.log_probs(logits)
    log_z, entropy, weights = proposal.scores(log_p)
    exact = log_p.double()
    p = exact.exp()
    torch.testing.assert_close(log_z.double(), torch.logsumexp(alpha * exact, -1), rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(entropy.double(), -torch.where(p > 0, p * exact, 0.0).sum(-1), rtol=1e-5, atol=1e-6)
    q = torch.exp(alpha * exact - torch.logsumexp(alpha * exact, -1, keepdim=True))
    torch.testing.assert_close((weights / weights.sum(-1, keepdim=True)).double(), q, rtol=1e-5, atol=1e-30)
    assert (weights[torch.isneginf(log_p)] == 0).all()  # truncated tokens are never drawn
    assert (weights[weights > 0] >= torch.finfo(torch.float32).tiny).all()  # no subnormal weights


@given(rows=st.integers(2, 9), vocab=st.integers(4, 300), per_block=st.integers(1, 4),
       top_k=st.sampled_from([None, 3]), seed=st.integers(0, 2**16))
def test_a_draw_in_blocks_of_rows_equals_the_draw_of_each_row_alone(rows, vocab, per_block, top_k, seed):
    generator = torch.Generator().manual_seed(seed)
    logits, uniform = torch.randn(rows, vocab, generator=generator) * 4, torch.rand(rows, generator=generator)
    proposal = PowerProposal(3.0, top_k)
    blocks = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(scoring, "ROW_BLOCK_BYTES", 4 * vocab * per_block)
        spy = proposal._draw
        patch.setattr(proposal, "_draw", lambda *args: blocks.append(args[0].shape[0]) or spy(*args))
        blocked = proposal.draw(logits, uniform)
    assert blocks == [len(b) for b in torch.arange(rows).split(per_block)]  # it did run in blocks
    alone = [proposal.draw(logits[r : r + 1], uniform[r : r + 1]) for r in range(rows)]
    for name, column in zip(blocked._fields, zip(*alone)):
        assert torch.equal(getattr(blocked, name), torch.cat(column)), name


def _random_suffix(rows, width, generator, vocab=5):
    floats = torch.rand(rows, width, generator=generator)
    tokens = torch.randint(vocab, (rows, width), generator=generator)
    length = torch.randint(1, width + 1, (rows,), generator=generator)
    return kernel.Suffix(tokens, -floats, floats, floats, length, length)


def test_an_mh_step_makes_no_host_sync(monkeypatch):
    rng = torch.Generator().manual_seed(0)
    rows, width, cut = 6, 8, EntropyCut()
    everyone, nobody = torch.ones(rows, dtype=torch.bool), torch.zeros(rows, dtype=torch.bool)
    state = kernel.init(rows, width, torch.zeros(rows, dtype=torch.long))
    start = torch.zeros(rows, dtype=torch.long)
    key = keyed.keys(rng, rows)
    state, _ = kernel.step(key, state, kernel.Proposals(everyone, everyone, start, _random_suffix(rows, width, rng)),
                           alpha=2.0, cut_distribution=cut)
    ones = torch.ones_like(start)
    schedule = mh.Schedule(start, ones, start, torch.full_like(start, width), key, mh.proposal_key(key, start, ones, 2))
    block_schedule = mh.build(mh.SamplerConfig(mcmc_steps=2, block_size=4), GenerationSettings(width, (), 0, 1, None,
                                                                                              None, False))
    suffix = _random_suffix(rows, width, rng)
    finished = torch.tensor([True, False, True, True, False, True])

    def refuse(*args, **kwargs):
        raise AssertionError("host sync inside an MH step")

    for name in ("item", "tolist", "cpu", "numpy", "__bool__", "__int__", "__float__", "__index__", "nonzero"):
        monkeypatch.setattr(torch.Tensor, name, refuse)
    cut_at = kernel.propose_cut(schedule.key, state)
    new_state, info = kernel.step(schedule.key, state, kernel.Proposals(finished, nobody, cut_at, suffix),
                                  alpha=2.0, cut_distribution=cut)
    schedule, done = block_schedule.advance(schedule, new_state, finished, Terminal((2,), None, width, "cpu"))
    monkeypatch.undo()
    assert torch.equal(new_state.proposals, finished.long())
    assert torch.equal(new_state.tokens[~finished], state.tokens[~finished])  # rows still decoding are untouched
    assert torch.equal(info.finished, finished) and done.shape == (rows,)
