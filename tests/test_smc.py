"""Sequential Monte Carlo for p^alpha (`algorithm="smc"`), checked against exact enumeration and fresh passes.

SMC is consistent, not exact at a finite particle count N, so these tests check what the math promises:

1. Unbiasedness, exact at any N. For one particle system, `(1/N) sum_i w_i 1[x_i = y]` is an unbiased
   estimate of `p(y)^alpha` (unnormalised) and `exp(log_evidence)` of `Z = sum_y p(y)^alpha`. Over
   `SYSTEMS` independent systems per prompt (rows of one batch), each estimate's mean must be within
   `Z_MAX` standard errors of the truth, for every answer with at least `MIN_MASS` of p^alpha (rarer answers'
   sample means are too skewed for a normal approximation at this size) and for Z. Tolerance: the sweep
   makes about 150 such comparisons; a correct sampler measured |z| up to 3.7 (the largest of 150 normal
   draws is about 3 +- 0.4, and weights make the means a little skewed). `Z_MAX = 4.5` (a per-comparison
   two-sided normal tail of 7e-6). Negative controls that must fail on every model: the weights dropped
   (every particle weighs the same: low-temperature sampling; measured |z| = inf, the estimate of Z no longer
   varies) and resampling that ignores the weights (measured 7.4-55).
2. The returned answers' law approaches p^alpha at many particles: the answers drawn by the final
   weights of `LAW_SYSTEMS` systems of `LAW_PARTICLES` particles, compared with p^alpha by TV in units of
   the i.i.d. noise floor (as in tests/test_exactness.py), tolerance 2.5 (measured 0.5-1.9: the SMC law's bias
   at 128 particles is far below the floor of 2000 draws); with the weights dropped the same test must fail
   (measured 8-23).
3. Invariants over generated ragged batches (hypothesis): every stored per-position number equals a fresh
   forward pass, and every stored log-weight equals its fresh recomputation
   `anchor_log_weight + Phi(x) - Phi(x[:anchor_length])` from those fresh numbers.
"""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import ecmh
from ecmh import resampling, smc
from ecmh.algorithm import drive
from ecmh.backends.transformers import TransformersBackend
from ecmh.terminal import Terminal

from conftest import EOS, PAD, tiny_model
from reference import recompute
from test_exactness import MODELS, PROMPTS, case, noise_floor, tv
from test_invariants import batches, check_against_a_fresh_pass, left_padded, without_mh_options

SYSTEMS, PARTICLES = 400, 8
Z_MAX, MIN_MASS = 4.5, 0.05
LAW_SYSTEMS, LAW_PARTICLES, LAW_DRAWS = 250, 128, 8
TOLERANCE = 2.5
# SMC options per model of the sweep: every scheme, bridging, and a resampling at every check (threshold 1)
OPTIONS = {
    "v5-len4-gqa-eos": dict(resampling="systematic", resample_every=1, ess_threshold=1.0),
    "v6-len3-plain": dict(resampling="residual", resample_every=1, ess_threshold=0.5),
    "v7-len3-gqa-eos": dict(resampling="multinomial", resample_every=1, ess_threshold=1.0, bridge_tokens=2),
    "v8-len3-plain-eos": dict(resampling="systematic", resample_every=2, ess_threshold=1.0),
    "v5-len5-plain-eos": dict(resampling="residual", resample_every=1, ess_threshold=1.0, bridge_tokens=3),
    "v6-len4-gqa": dict(resampling="systematic", resample_every=1, ess_threshold=0.5, bridge_tokens=4),
    "v6-len4-plain-eos-stop": dict(resampling="systematic", resample_every=1, ess_threshold=1.0),
}


def run_systems(c, systems: int, particles: int, draws: int = 1, engine=None, **options):
    """`systems` independent particle systems per prompt of `PROMPTS`, all in one batch, on `engine` (default: the
    transformers model)."""
    width = max(map(len, PROMPTS))
    rows = [p for p in PROMPTS for _ in range(systems)]
    ids = torch.tensor([[PAD] * (width - len(p)) + p for p in rows])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in rows])
    out = ecmh.generate(c.model if engine is None else engine, ids, attention_mask=mask, alpha=c.alpha, max_new_tokens=c.length, seed=0,
                        eos_token_id=c.eos, pad_token_id=PAD, return_dict_in_generate=True, algorithm="smc",
                        particles=particles, num_return_sequences=draws, **c.stop, **options)
    index = {seq: i for i, seq in enumerate(c.seqs)}
    def answers(sequences, lengths):
        return torch.tensor([index[tuple(row[:n])] for row, n in zip(sequences[:, width:].tolist(), lengths.tolist())])
    return out, answers(out.particles.sequences, out.particles.trace.length), answers(out.sequences, out.trace.length)


def unbiasedness_z(name: str, c=None, engine=None, systems: int = SYSTEMS, **options) -> float:
    """The largest |z| of the unnormalised estimates of p(y)^alpha (answers with MIN_MASS) and of Z, over the prompts
    (`c`: the case of model `name`, default `case(name)`)."""
    c = case(name) if c is None else c
    out, particle_answer, _ = run_systems(c, systems, PARTICLES, engine=engine, **options)
    weights = out.particles.log_weights.double().exp()  # [3 * SYSTEMS, N]
    estimates = torch.zeros(weights.shape[0], len(c.seqs), dtype=torch.float64)
    estimates.scatter_add_(1, particle_answer.view(weights.shape), weights / PARTICLES)
    worst = 0.0
    for prompt, target in enumerate(c.target):
        mine = estimates[prompt * systems : (prompt + 1) * systems]
        unnormalised = torch.exp(c.alpha * exact_log_p(c, prompt))
        z_total = unnormalised.sum()
        kept = target >= MIN_MASS
        columns = torch.cat([mine[:, kept], mine.sum(1, keepdim=True)], dim=1)
        truth = torch.cat([unnormalised[kept], z_total[None]])
        z = (columns.mean(0) - truth) / (columns.std(0) / math.sqrt(systems))
        worst = max(worst, z.abs().max().item())
    print(f"{name} {options}: largest |z| {worst:.2f}")
    return worst


def exact_log_p(c, prompt: int) -> torch.Tensor:
    """log p(y | prompt) of every answer, from the case's own enumeration (`target` is its normalised power)."""
    from test_exactness import enumerate_log_probs

    return enumerate_log_probs(c.model, PROMPTS[prompt], c.seqs, c.alpha)[0]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_weighted_particles_are_unbiased_for_p_alpha_and_its_normaliser(name):
    assert unbiasedness_z(name, **OPTIONS[name]) <= Z_MAX


def test_with_the_weights_dropped_the_unbiasedness_test_fails(monkeypatch):
    monkeypatch.setattr(smc, "potential", lambda algorithm, log_p, *rest: torch.zeros(log_p.shape[0]))
    assert min(unbiasedness_z(name, **OPTIONS[name]) for name in sorted(MODELS)) > Z_MAX


def test_resampling_that_ignores_the_weights_fails(monkeypatch):
    monkeypatch.setattr(resampling, "normalised", lambda log_w: torch.full(log_w.shape, 1 / log_w.shape[1],
                                                                           dtype=torch.float64))
    resampled = {name: options for name, options in OPTIONS.items() if options["ess_threshold"] == 1.0}
    assert min(unbiasedness_z(name, **options) for name, options in resampled.items()) > Z_MAX


def law_ratio(name: str) -> float:
    c = case(name)
    _, _, answer = run_systems(c, LAW_SYSTEMS, LAW_PARTICLES, draws=LAW_DRAWS, **OPTIONS[name])
    draws = LAW_SYSTEMS * LAW_DRAWS
    counts = answer.view(len(PROMPTS), draws)
    ratios = [tv(torch.bincount(row, minlength=len(c.seqs)).double() / draws, target) / noise_floor(target, draws)
              for row, target in zip(counts, c.target)]
    print(f"{name}: TV / noise floor per prompt " + ", ".join(f"{r:.2f}" for r in ratios))
    return max(ratios)


LAW_MODELS = ["v5-len4-gqa-eos", "v6-len4-gqa", "v6-len4-plain-eos-stop"]


@pytest.mark.parametrize("name", LAW_MODELS)
def test_returned_answers_approach_p_alpha_at_many_particles(name):
    assert law_ratio(name) <= TOLERANCE


def test_with_the_weights_dropped_the_law_test_fails(monkeypatch):
    monkeypatch.setattr(smc, "potential", lambda algorithm, log_p, *rest: torch.zeros(log_p.shape[0]))
    assert min(law_ratio(name) for name in LAW_MODELS) > TOLERANCE


# --- invariants -------------------------------------------------------------------------------------------

PER_POSITION, PER_ROW = 1e-4, 1e-3


@st.composite
def smc_runs(draw):
    vocab = draw(st.integers(5, 8))
    model = dict(vocab_size=vocab, sharpness=draw(st.sampled_from([3.0, 10.0])), seed=draw(st.integers(0, 2**16)),
                 num_key_value_heads=draw(st.sampled_from([1, 2])), initializer_range=0.1)
    prompts = [draw(st.lists(st.integers(0, vocab - 1), min_size=1, max_size=5)) for _ in range(draw(st.integers(1, 6)))]
    max_new_tokens = draw(st.integers(1, 8))
    options = dict(particles=draw(st.integers(1, 9)), ess_threshold=draw(st.sampled_from([0.0, 0.5, 1.0])),
                   resampling_scheme=draw(st.sampled_from(resampling.SCHEMES)),
                   resample_every=draw(st.integers(1, max_new_tokens)),
                   bridge_tokens=draw(st.sampled_from([0, 0, 1, max_new_tokens + 2])))
    return model, prompts, max_new_tokens, draw(st.sampled_from([1.0, 2.0, 4.0])), draw(st.sampled_from([EOS, None])), \
        options, draw(st.integers(0, 2**16))


def fresh_potential(algorithm, fresh, length, finished) -> torch.Tensor:
    return smc.potential(algorithm, fresh.log_p, fresh.log_z, length, finished)


@given(smc_runs())
def test_stored_numbers_and_log_weights_equal_a_fresh_recomputation(config):
    model_options, prompts, max_new_tokens, alpha, eos, options, seed = config
    model = tiny_model(**model_options)
    algorithm = smc.particle_system(alpha, **options)
    ids, mask = left_padded(prompts)
    backend = TransformersBackend(model)
    terminal = Terminal(() if eos is None else (eos,), None, max_new_tokens, "cpu")
    forwarded = backend.prepare(ids, mask, proposal=algorithm.proposal, terminal=terminal)
    result = algorithm.result(drive(algorithm, torch.Generator().manual_seed(seed), backend, forwarded, terminal))
    backend.close()
    state, n = result.state, algorithm.particles

    assert state.finished.all()
    sequences = torch.cat([ids.repeat_interleave(n, 0), torch.where(
        torch.arange(max_new_tokens)[None, :] < state.length[:, None], state.tokens, PAD)], dim=1)
    fresh = recompute(model, sequences, mask.repeat_interleave(n, 0), alpha, eos)
    assert torch.equal(fresh.length, state.length)  # each particle ends at its first EOS, or at the cap
    valid = torch.arange(max_new_tokens)[None, :] < state.length[:, None]
    for name in ("log_p", "log_z", "entropy"):
        error = torch.where(valid, getattr(state, name) - getattr(fresh, name), 0.0).abs().max()
        assert error <= PER_POSITION, name

    at_anchor_finished = state.anchor_length == state.length  # a particle still growing at a resampling grew after it
    expected = (state.anchor_log_weight + fresh_potential(algorithm, fresh, state.length, state.finished)
                - fresh_potential(algorithm, fresh, state.anchor_length, at_anchor_finished))
    assert torch.allclose(state.log_weight, expected, rtol=0, atol=PER_ROW * max_new_tokens)
    lineage = smc.by_group(state.length, n).max(1).values
    assert (result.tally.steps >= lineage).all() and (result.tally.steps <= max_new_tokens).all()
    # a resampled particle shares its ancestor's tokens, decoded once: without a resampling, each token is its own
    untouched = (result.tally.resamples == 0) & (result.tally.move_steps == 0)  # no resampling, no moves
    assert torch.equal(result.tally.tokens_decoded[untouched], smc.by_group(state.length, n).sum(1)[untouched])
    sequential = result.tally.steps + result.tally.move_steps  # resample-move phases decode after the intervals
    assert (result.tally.tokens_decoded >= lineage).all() and (result.tally.tokens_decoded <= n * sequential).all()
    assert (result.tally.resamples <= result.ess.shape[1]).all()


@given(batches(vocab=6), st.integers(1, 6), st.sampled_from(resampling.SCHEMES), st.integers(1, 4))
def test_returned_rows_match_a_fresh_forward_pass(batch, particles, scheme, resample_every):
    prompts, options = batch
    smc_options = without_mh_options(options)
    check_against_a_fresh_pass(tiny_model(vocab_size=6, sharpness=5.0, initializer_range=0.1), prompts,
                               algorithm="smc", particles=particles, resampling=scheme, resample_every=resample_every,
                               **smc_options)


def test_without_bridging_a_particles_log_weight_is_its_sum_of_log_normalisers(model):
    out = ecmh.generate(model, torch.tensor([[0, 1]]), algorithm="smc", particles=6, ess_threshold=0.0,
                        max_new_tokens=6, seed=3, return_dict_in_generate=True)
    trace = out.particles.trace
    assert torch.allclose(out.particles.log_weights.flatten(), trace.log_z.sum(1), atol=1e-5)
    assert out.particles.resamples.tolist() == [0]
    assert torch.allclose(out.particles.log_evidence, torch.logsumexp(trace.log_z.sum(1), 0)[None] - math.log(6))


def test_output_shape_stats_and_seed(model):
    ids = torch.tensor([[0, 1], [1, 0]])
    kwargs = dict(algorithm="smc", particles=5, max_new_tokens=7, num_return_sequences=3, return_dict_in_generate=True)
    out = ecmh.generate(model, ids, seed=11, **kwargs)
    again = ecmh.generate(model, ids, seed=11, **kwargs)
    assert torch.equal(out.sequences, again.sequences) and torch.equal(out.particles.chosen, again.particles.chosen)
    assert out.sequences.shape[0] == 6 and out.particles.sequences.shape[0] == 10
    assert out.particles.weights.shape == (2, 5) and torch.allclose(out.particles.weights.sum(1), torch.ones(2))
    rows = (torch.arange(2)[:, None] * 5 + out.particles.chosen).flatten()
    assert torch.equal(out.sequences, out.particles.sequences[rows, : out.sequences.shape[1]])
    assert type(out) is ecmh.SMCOutput and type(out.stats) is ecmh.Stats  # no MH statistics to fill with placeholders
    assert (out.stats.tokens_decoded >= out.trace.length).all()
    assert (out.stats.sequential_passes <= 7 + 1).all() and (out.stats.sequential_passes >= out.trace.length + 1).all()
    plain = ecmh.generate(model, ids, seed=11, max_new_tokens=7, num_return_sequences=3, return_dict_in_generate=True)
    assert torch.equal(plain.stats.sequential_passes, plain.stats.tokens_decoded + 1)


def test_the_prompt_is_encoded_once_per_prompt_not_per_particle(model):
    out = ecmh.generate(model, torch.tensor([[0, 1, 3]]), algorithm="smc", particles=8, max_new_tokens=4,
                        eos_token_id=None, ess_threshold=0.0, seed=0, return_dict_in_generate=True)
    # 3 prompt positions once, then one position per decoded token of every particle
    assert out.stats.tokens_forwarded.tolist() == [3 + 8 * 4]
    assert out.stats.tokens_decoded.tolist() == [8 * 4]


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(particles=4), ValueError, "algorithm=\"smc\""),
    (dict(algorithm="smc", particles=0), ValueError, "`particles` must be an integer >= 1"),
    (dict(algorithm="smc", ess_threshold=1.5), ValueError, "`ess_threshold` must be a number in \\[0, 1\\]"),
    (dict(algorithm="smc", resampling="stratified"), ValueError, "`resampling` must be one of"),
    (dict(algorithm="smc", resample_every=0), ValueError, "`resample_every` must be an integer >= 1"),
    (dict(algorithm="smc", bridge_tokens=-1), ValueError, "`bridge_tokens` must be an integer >= 0"),
    (dict(algorithm="beam"), ValueError, "`algorithm` must be one of"),
    (dict(algorithm="smc", record_history=True, return_dict_in_generate=True), ValueError, "out.particles"),
])
def test_bad_smc_arguments_are_refused_before_decoding(model, kwargs, error, match):
    with pytest.raises(error, match=match):
        ecmh.generate(model, torch.tensor([[0, 1]]), max_new_tokens=4, **kwargs)


# --- resampling schemes -----------------------------------------------------------------------------------

@pytest.mark.parametrize("scheme", resampling.SCHEMES)
def test_each_scheme_copies_each_particle_n_w_times_on_average(scheme):
    """Mean copy counts over 4000 resamplings of 3 weight vectors equal N * w within 5 standard errors; a scheme
    that draws by the wrong weights (the control, uniform) is off by far more."""
    weights = torch.tensor([[0.5, 0.25, 0.125, 0.125, 0.0], [0.05, 0.05, 0.3, 0.3, 0.3], [0.2] * 5], dtype=torch.float64)
    rng = torch.Generator().manual_seed(0)
    repeats = 4000
    many = weights.repeat(repeats, 1)
    ancestors = resampling.resample(scheme, many, rng)
    assert (ancestors[:, 1:] >= ancestors[:, :-1]).all()  # copies are grouped, ancestors in order
    counts = torch.zeros_like(ancestors).scatter_add_(1, ancestors, torch.ones_like(ancestors)).view(repeats, 3, 5).double()
    mean, se = counts.mean(0), counts.std(0) / math.sqrt(repeats)
    expected = 5 * weights
    assert ((mean - expected).abs() <= 5 * se + 1e-9).all()
    assert (counts.sum(2) == 5).all()
    if scheme == "systematic":  # floor(N w) or ceil(N w) copies (residual draws its rest with replacement)
        assert ((counts >= expected.floor() - 1e-9) & (counts <= expected.ceil() + 1e-9)).all()
    wrong = resampling.resample(scheme, torch.full_like(many, 0.2), rng)
    wrong_counts = torch.zeros_like(wrong).scatter_add_(1, wrong, torch.ones_like(wrong)).view(repeats, 3, 5).double()
    assert ((wrong_counts.mean(0) - expected).abs() > 5 * se + 1e-9).any()


def test_effective_sample_size():
    log_w = torch.log(torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 0.0, 0.0], [2.0, 1.0, 1.0, 0.0]]))
    assert torch.allclose(resampling.effective_sample_size(log_w), torch.tensor([4.0, 1.0, 16 / 6]))
