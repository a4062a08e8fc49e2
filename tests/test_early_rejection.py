"""Exact early rejection (issue 43): a proposal stopped once its running bound falls below `log u` is settled exactly
as the same proposal decoded to its end, so the chain is the same, for fewer decoded tokens.

Three ways: the bound itself (hypothesis over random states, cuts and proposals: never rises with k, bit for bit;
a prefix's bound ignores what follows; at the end it is the MH ratio; when it crosses, the ratio rejects too), the
decisions (every MH decision and returned sequence with early rejection equals the one without, on toy models over
many seeds, and on the embedded SmolLM2 with one row), and the exactness sweep (`tests/test_exactness.py` runs with
early rejection on: it is the default). Negative controls: a cut whose weights change as the answer grows past them (its normaliser is no running sum)
declared as growing changes the chain.
"""

import pytest
import torch
from hypothesis import given, strategies as st

import ecmh
from ecmh import kernel
from ecmh.cuts import EntropyCut, RestartCut, UniformCut

from conftest import EOS, PAD, tiny_model

CUTS = {"entropy": EntropyCut(), "entropy-p1": EntropyCut(power=1.0), "uniform": UniformCut(), "restart": RestartCut()}


@st.composite
def proposals(draw):
    """A state of `rows` answers, a cut in each, and a decoded suffix; `log Z` values mostly below 0, some a hair
    above (as float32 gives where one token holds all the mass), entropies with ties and zeros."""
    rows, width = draw(st.integers(1, 4)), draw(st.integers(2, 10))
    seed = draw(st.integers(0, 2**31 - 1))
    generator = torch.Generator().manual_seed(seed)
    cut = CUTS[draw(st.sampled_from(sorted(CUTS)))]

    def log_z(shape):
        values = -torch.rand(shape, generator=generator) * 3
        hair = torch.rand(shape, generator=generator) < 0.2
        return torch.where(hair, torch.full(shape, 2e-7), values)

    def entropy(shape):
        values = torch.rand(shape, generator=generator) * 2
        return torch.where(torch.rand(shape, generator=generator) < 0.2, torch.zeros(shape), values)

    length = torch.randint(1, width + 1, (rows,), generator=generator)
    state = kernel.init(rows, width, torch.zeros(rows, dtype=torch.long))
    state = state._replace(log_p=-torch.rand(rows, width, generator=generator) * 4, log_z=log_z((rows, width)),
                           entropy=entropy((rows, width)), length=length)
    state = state._replace(cut_log_prob=kernel.cut_log_probs(cut, state.entropy, length))
    key = torch.randint(0, 2**62, (rows,), generator=generator)
    start = kernel.propose_cut(key, state)  # as the sampler cuts: a position the state's cut distribution can pick
    suffix_length = torch.minimum(torch.randint(1, width + 1, (rows,), generator=generator), width - start)
    suffix = kernel.Suffix(torch.randint(0, 5, (rows, width), generator=generator),
                           -torch.rand(rows, width, generator=generator) * 4, log_z((rows, width)),
                           entropy((rows, width)), suffix_length, suffix_length)
    return cut, state, start, suffix, key


def _valid(values, suffix):
    return torch.arange(values.shape[1])[None, :] < suffix.length[:, None]


@given(proposals())
def test_the_running_bound_never_rises_and_ignores_what_follows(case):
    cut, state, start, suffix, key = case
    values = kernel.running_bound(cut, state.entropy, start, suffix)
    valid = _valid(values, suffix)
    pairs = valid[:, 1:]
    assert (values[:, :-1][pairs] >= values[:, 1:][pairs]).all()  # bit for bit: no tolerance
    for k in range(1, int(suffix.length.max()) + 1):  # column k-1 from the first k tokens only
        junk = torch.full_like(suffix.log_z, -5.0), torch.full_like(suffix.entropy, 9.0)
        later = torch.arange(suffix.log_z.shape[1])[None, :] >= k
        cut_short = suffix._replace(log_z=torch.where(later, junk[0], suffix.log_z),
                                    entropy=torch.where(later, junk[1], suffix.entropy),
                                    length=suffix.length.clamp_max(k))
        short = kernel.running_bound(cut, state.entropy, start, cut_short)
        rows = suffix.length >= k
        assert torch.equal(short[rows, k - 1], values[rows, k - 1])


@given(proposals())
def test_at_the_end_the_bound_is_the_mh_ratio_and_a_crossing_is_a_rejection(case):
    cut, state, start, suffix, key = case
    proposed = kernel.candidate(state, suffix, start, cut)
    terms = kernel.log_ratio(2.0, state, proposed, start)
    mh = torch.ones_like(start, dtype=torch.bool)
    bound = kernel.bound(key, state, start, mh)
    values = kernel.running_bound(cut, state.entropy, start, suffix)
    final = values.gather(1, (suffix.length - 1)[:, None]).squeeze(1)
    log_u = kernel.log_uniform(key)
    # the clamp moves each `log Z` by at most the hair above 0 the strategy puts there
    slack = 2e-7 * (suffix.length + state.length) + 1e-5
    bound_gap, ratio_gap = final - bound.threshold, terms.total() - log_u  # both -inf where w_{y'}(m) = 0
    assert ((bound_gap == ratio_gap) | (bound_gap - ratio_gap).abs().le(slack)).all()
    crossed = kernel.rejected(cut, bound, start, suffix)
    assert (~crossed | (log_u >= terms.total() - slack)).all()  # never rejects what the ratio accepts


class SettledCut:
    """Negative control: weight e^-5 on the last two positions and 1 before them, so a position's weight rises once
    the answer grows past it: a short prefix of a proposal understates the cut's final probability, and its bound
    can cross where the complete ratio accepts. It wrongly declares that its normaliser only grows."""

    normaliser_only_grows = True

    def log_weights(self, entropy, length):
        recent = torch.arange(entropy.shape[1])[None, :] >= length[:, None] - 2
        return torch.where(recent, -5.0, 0.0).expand(entropy.shape[0], -1)


class UndeclaredCut(UniformCut):
    normaliser_only_grows = False  # a custom cut that does not declare it: decoded to the end, as before


PROMPTS = [[0, 1, 3], [2], [1, 1, 0, 2]]


def _both(model, seed, **options):
    settings = dict(alpha=2.0, mcmc_steps=4, max_new_tokens=8, block_size=4, num_return_sequences=2, seed=seed,
                    eos_token_id=EOS, pad_token_id=PAD, return_dict_in_generate=True, record_history=True, **options)
    return (ecmh.generate(model, PROMPTS, early_rejection=True, **settings),
            ecmh.generate(model, PROMPTS, early_rejection=False, **settings))


DECISIONS = ("row", "block", "cut", "accepted", "rejected_early", "extension")


@pytest.mark.parametrize("cut", ["entropy", "uniform", "restart"])
def test_every_decision_and_answer_is_the_same_with_and_without_early_rejection(cut):
    model = tiny_model(vocab_size=6, sharpness=3.0, seed=3, initializer_range=0.1)
    saved = stopped = 0
    for seed in range(6):
        early, full = _both(model, seed, cut=cut)
        assert torch.equal(early.sequences, full.sequences), seed
        for name in ("proposals", "accepted", "early_rejections"):
            assert torch.equal(getattr(early.stats, name), getattr(full.stats, name)), (seed, name)
        by_row = [torch.argsort(run.history.row, stable=True) for run in (early, full)]  # each row's own order
        for name in DECISIONS:
            mine, theirs = (getattr(run.history, name)[order] for run, order in zip((early, full), by_row))
            assert torch.equal(mine, theirs), (seed, name)
        assert (early.stats.tokens_decoded <= full.stats.tokens_decoded).all()
        lengths = [run.history.proposal_length[order] for run, order in zip((early, full), by_row)]
        assert (lengths[0] <= lengths[1]).all()
        assert not (early.history.accepted & early.history.rejected_early).any()
        saved += int((full.stats.tokens_decoded - early.stats.tokens_decoded).sum())
        stopped += int(early.stats.early_rejections.sum())
    assert stopped > 0 and saved > 0  # it did stop proposals, and decoded less for it


def test_a_cut_that_breaks_its_declaration_changes_the_chain():
    """Negative control: with weights that change as the answer grows, stopping at the first crossing settles other
    decisions than decoding on."""
    model = tiny_model(vocab_size=6, sharpness=3.0, seed=3, initializer_range=0.1)
    def differs(seed):
        early, full = _both(model, seed, cut=SettledCut())
        return not torch.equal(early.sequences, full.sequences) or not torch.equal(early.stats.accepted,
                                                                                    full.stats.accepted)

    assert any(differs(seed) for seed in range(12))


def test_a_custom_cut_without_the_declaration_decodes_every_proposal_to_its_end():
    model = tiny_model(vocab_size=6, sharpness=3.0, seed=3, initializer_range=0.1)
    for seed in range(4):
        early, full = _both(model, seed, cut=UndeclaredCut())
        assert torch.equal(early.sequences, full.sequences)
        assert torch.equal(early.stats.tokens_decoded, full.stats.tokens_decoded)
        assert (early.stats.early_rejections == 0).all() and not early.history.rejected_early.any()


def test_the_embedded_smollm2_gives_the_same_answers_with_one_row():
    model, tokenizer = ecmh.load_model("smollm2-135m-instruct", device="cpu")
    ids = ecmh.encode_prompts(tokenizer, ["What is 17 * 23? Think step by step."]).input_ids
    saved = 0
    for seed in range(2):
        runs = [ecmh.generate(model, ids, alpha=4.0, mcmc_steps=4, block_size=16, max_new_tokens=32, seed=seed,
                              early_rejection=flag, return_dict_in_generate=True) for flag in (True, False)]
        assert torch.equal(runs[0].sequences, runs[1].sequences), seed
        assert torch.equal(runs[0].stats.accepted, runs[1].stats.accepted), seed
        saved += int(runs[1].stats.tokens_decoded - runs[0].stats.tokens_decoded)
    assert saved > 0
