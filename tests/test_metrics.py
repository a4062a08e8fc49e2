"""ecmh.metrics, ecmh.select, the step history and the diagnostics built on it."""

import math

import pytest
import torch

import ecmh
from conftest import EOS, PAD, tiny_model
from ecmh import diagnostics, metrics
from ecmh.outputs import Trace


def trace_of(entropies, log_ps=None):
    """A constructed trace: rows of different lengths, zero-padded."""
    width = max(map(len, entropies))
    pad = lambda rows: torch.tensor([r + [0.0] * (width - len(r)) for r in rows])  # noqa: E731
    return Trace(pad(log_ps or [[0.0] * len(e) for e in entropies]), pad([[0.0] * len(e) for e in entropies]),
                 pad(entropies), torch.tensor([len(e) for e in entropies]))


def test_hand_computed_metrics():
    trace = trace_of([[1.0, 3.0, 2.0], [0.5]], [[-1.0, -2.0, -3.0], [-4.0]])
    assert metrics.entropy_jumps(trace).tolist() == [[1.0, 2.0, -1.0], [0.5, 0.0, 0.0]]
    assert metrics.mean_entropy(trace).tolist() == [2.0, 0.5]
    assert metrics.mean_log_likelihood(trace).tolist() == [-2.0, -4.0]
    reasoning, answer = metrics.entropy_profile(trace, torch.tensor([2, 0]))
    assert reasoning[0] == 2.0 and math.isnan(reasoning[1]) and answer.tolist() == [2.0, 0.5]


@pytest.mark.parametrize("length,share,top", [
    (1, 0.005, 1),  # at least one token
    (200, 0.005, 1),  # exactly 1.0
    (201, 0.005, 2),  # 1.005 rounds up
    (400, 0.005, 2),
    (10, 0.25, 3),  # 2.5 rounds up
    (10, 1.0, 10),
])
def test_high_entropy_sum_sums_the_top_ceil_share_tokens(length, share, top):
    entropies = [float(i) for i in range(length)]
    expected = sum(sorted(entropies, reverse=True)[:top])
    got = metrics.high_entropy_sum(trace_of([entropies, []]), share)
    assert got.tolist() == [expected, 0.0]


def test_high_entropy_sum_rejects_a_bad_share():
    with pytest.raises(ValueError, match="share"):
        metrics.high_entropy_sum(trace_of([[1.0]]), 0.0)


def test_cross_model_entropy_equals_a_direct_forward_pass(tiny_chat_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    verifier = AutoModelForCausalLM.from_pretrained(tiny_chat_model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_chat_model_dir)
    prompts, responses = ["2 + 2 =", "Name a colour:", "x"], [" 4", " blue, or maybe red", ""]
    scored = metrics.cross_model(verifier, tokenizer, prompts, responses, batch_size=2)
    for i, (prompt, response) in enumerate(zip(prompts, responses)):
        p, r = tokenizer(prompt).input_ids, tokenizer(response).input_ids
        with torch.no_grad():
            log_p = torch.log_softmax(verifier(torch.tensor([p + r])).logits[0].float(), -1)[len(p) - 1 : -1]
        assert scored.tokens[i] == len(r)
        if r:
            assert torch.isclose(scored.cross_model_entropy[i], log_p[torch.arange(len(r)), r].mean(), atol=1e-5)
            assert torch.isclose(scored.verifier_entropy[i], -(log_p.exp() * log_p).sum(-1).mean(), atol=1e-5)


def test_self_certainty_equals_a_direct_forward_pass():
    model = tiny_model(vocab_size=6)
    out = ecmh.generate(model, [[1], [0, 4]], max_new_tokens=4, mcmc_steps=2, seed=0, eos_token_id=EOS,
                        pad_token_id=PAD, return_dict_in_generate=True)
    mask = torch.tensor([[0, 1], [1, 1]])
    got = metrics.self_certainty(model, out.sequences, mask, out.trace)
    for row, prompt in enumerate([[1], [0, 4]]):
        n = int(out.trace.length[row])
        ids = torch.tensor([prompt + out.sequences[row, 2:2 + n].tolist()])
        log_p = torch.log_softmax(model(ids).logits[0, len(prompt) - 1 : -1].float(), -1)
        assert torch.isclose(got[row], (-math.log(6) - log_p.mean(-1)).mean(), atol=1e-5)


def test_select_picks_per_prompt():
    trace = trace_of([[1.0, 1.0], [3.0, 0.0], [0.1], [2.0]], [[-1.0, -1.0], [-0.5, -0.5], [-3.0], [-0.1]])
    output = ecmh.Output(torch.zeros(4, 3, dtype=torch.long), None, trace)
    assert ecmh.select(output, 2, by="log_p").tolist() == [1, 3]
    assert ecmh.select(output, 2, by="hes").tolist() == [0, 2]
    assert ecmh.select(output, 2, by="majority", answers=["a", "b", None, "c"]).tolist() == [1, 3]
    assert ecmh.select(output, 2, by=lambda out: torch.tensor([0, 1, 1, 0])).tolist() == [1, 2]
    crossed = metrics.CrossModel(torch.tensor([-1.0, -2.0, -0.1, -0.2]), torch.zeros(4), torch.ones(4))
    assert ecmh.select(output, 2, by="cme", cross_model=crossed).tolist() == [0, 2]
    with pytest.raises(ValueError, match="answers"):
        ecmh.select(output, 2, by="majority")
    with pytest.raises(ValueError, match="divide"):
        ecmh.select(output, 3)


def test_select_majority_prefers_the_common_answer_over_likelihood():
    trace = trace_of([[1.0]] * 3, [[-0.1], [-5.0], [-4.0]])
    output = ecmh.Output(torch.zeros(3, 2, dtype=torch.long), None, trace)
    assert ecmh.select(output, 3, by="majority", answers=["x", "y", "y"]).tolist() == [2]


@pytest.fixture(scope="module")
def run():
    model = tiny_model(vocab_size=6, sharpness=4.0, initializer_range=0.1)
    out = ecmh.generate(model, [[1], [0, 4], [3, 3, 1]], max_new_tokens=12, block_size=4, mcmc_steps=6, seed=3,
                        eos_token_id=EOS, pad_token_id=PAD, num_return_sequences=4, record_history=True,
                        return_dict_in_generate=True)
    return out


def test_the_history_reproduces_every_decision_and_counter(run):
    h = run.history
    mh = h.is_mh
    assert torch.allclose(h.log_ratio, h.target + h.proposal + h.cut_term, atol=1e-5)
    assert torch.equal(h.accepted[mh], h.log_uniform[mh] < h.log_ratio[mh])  # the sampler's own decision
    assert h.accepted[~mh].all()
    rows = run.sequences.shape[0]
    assert torch.equal(torch.bincount(h.row[mh], minlength=rows), run.stats.proposals)
    assert torch.equal(torch.bincount(h.row[mh & h.accepted], minlength=rows), run.stats.accepted)
    last = torch.zeros(rows, dtype=torch.long).scatter_reduce(0, h.row, torch.arange(len(h.row)), reduce="amax")
    assert torch.allclose(h.log_p[last], run.stats.log_p, atol=1e-5) and torch.equal(h.length[last], run.trace.length)
    assert ((h.cut_log_prob[mh] <= 0) & (h.cut[mh] < h.previous_length[mh])).all()


def test_acceptance_by_block_and_the_decision_point_audit(run):
    h = run.history
    rates = diagnostics.acceptance_by_block(h, run.sequences.shape[0])
    for row, block in [(0, 0), (5, 1), (11, 2)]:
        mine = h.is_mh & (h.row == row) & (h.block == block)
        if mine.any():
            assert rates[row, block] == h.accepted[mine].float().mean()
    audit = diagnostics.decision_point_audit(h, top=1)
    mh = h.is_mh & (h.previous_length > 0)
    assert audit.proposals == int(mh.sum()) and 0 < audit.uniform_expectation <= 1
    assert audit.on_top_jumps > audit.uniform_expectation  # entropy cuts favour the largest jump


def test_convergence_is_arviz_on_the_exported_chains(run):
    az = pytest.importorskip("arviz")
    h = run.history
    draws = diagnostics.last_block_draws(h, 4)
    for row in range(12):  # chain row % 4 of prompt row // 4: its last block's MH states
        mine = h.is_mh & (h.row == row) & (h.block == h.block[h.row == row].max())
        assert draws["log_p"][row % 4, :, row // 4].tolist() == h.log_p[mine][-draws["log_p"].shape[1]:].double().tolist()
    idata = diagnostics.to_inference_data(h, 4)
    summary = diagnostics.convergence(h, 4)
    for prompt in range(3):
        rhat = az.rhat(draws["log_p"][:, :, prompt])
        assert summary.loc[f"log_p[{prompt}]", "r_hat"] == pytest.approx(float(rhat), abs=0.01)
    assert set(idata.posterior.data_vars) == {"log_p", "length"}


def test_plots_draw(run):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    from ecmh import plots

    assert plots.plot_entropy(run, run.history, row=0).lines
    assert plots.plot_chains(run.history, 4, prompt=1).lines
    assert plots.plot_acceptance_by_block(run.history, 12).lines


def test_record_history_needs_the_output_object():
    with pytest.raises(ValueError, match="return_dict_in_generate"):
        ecmh.generate(tiny_model(vocab_size=6), [[1]], max_new_tokens=2, record_history=True)


def test_convergence_says_why_it_is_nan_with_too_few_draws():
    pytest.importorskip("arviz")
    out = ecmh.generate(tiny_model(vocab_size=6, sharpness=4.0, initializer_range=0.1), [[1]], max_new_tokens=4,
                        block_size=4, mcmc_steps=2, seed=0, eos_token_id=None, num_return_sequences=4,
                        record_history=True, return_dict_in_generate=True)
    with pytest.warns(UserWarning, match=r"each chain has 2 draws .* raise `mcmc_steps`"):
        summary = diagnostics.convergence(out.history, 4)
    assert summary.isna().to_numpy().any()


def test_answer_start_positions_wants_token_ids_and_says_so():
    with pytest.raises(TypeError, match="token-id lists .* not decoded text; got an item of type str"):
        ecmh.metrics.answer_start_positions(None, ["The answer is \\boxed{4}"])
