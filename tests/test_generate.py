"""The `ecmh.generate` contract: KV reuse, outputs, reproducibility, the custom_generate path."""

import pytest
import torch
import transformers
from packaging import version

import ecmh
from benchmarks.reencoding import ReencodingBackend
from benchmarks.timing import ForwardCounter
from ecmh.backends.transformers import TransformersBackend

from conftest import EOS, PAD, tiny_model

PROMPTS = torch.tensor([[PAD, PAD, 0, 1, 3], [0, 2, 1, 1, 0]])  # left-padded batch
MASK = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
SETTINGS = dict(alpha=2.0, mcmc_steps=3, max_new_tokens=12, block_size=4, num_return_sequences=3, seed=7)


@pytest.fixture(scope="module")
def model():
    return tiny_model(vocab_size=6, sharpness=12.0, seed=3)


def _run(model, **overrides):
    kwargs = {**SETTINGS, "attention_mask": MASK, "return_dict_in_generate": True, **overrides}
    return ecmh.generate(model, PROMPTS, **kwargs)


def test_tokens_forwarded_matches_a_forward_hook_and_no_prefix_is_reencoded(model):
    counter = ForwardCounter(model)
    try:
        out = _run(model)
    finally:
        counter.handle.remove()
    prompt_lengths = MASK.sum(1).repeat_interleave(SETTINGS["num_return_sequences"])
    prefills = [rows * width for rows, width in counter.shapes if width > 1]
    assert sum(prefills) == prompt_lengths.sum().item()  # each prompt once, its padding left out
    assert len(prefills) == 2 and all(width == 1 for _, width in counter.shapes[2:])  # then single new tokens
    assert counter.positions == out.stats.tokens_forwarded.sum().item()
    assert torch.equal(out.stats.tokens_forwarded, prompt_lengths + out.stats.tokens_decoded)  # no padding at all


def test_same_seed_same_output_and_other_seed_differs(model):
    first, second = _run(model), _run(model)
    assert torch.equal(first.sequences, second.sequences)
    assert all(torch.equal(a, b) for a, b in zip(first.stats.as_dict().values(), second.stats.as_dict().values())
               if a.dtype != torch.float32)
    assert not torch.equal(first.sequences, _run(model, seed=8).sequences)


needs_callable_kwargs = pytest.mark.skipif(
    version.parse(transformers.__version__) < version.parse("4.57"),
    reason="transformers 4.56 rejects a custom_generate function's own keyword arguments",
)


@needs_callable_kwargs
def test_custom_generate_path_returns_what_the_direct_call_does(model):
    direct = _run(model, top_p=0.9)
    through = model.generate(
        PROMPTS, attention_mask=MASK, custom_generate=ecmh.generate, return_dict_in_generate=True,
        do_sample=True, top_p=0.9, **SETTINGS,
    )
    assert torch.equal(direct.sequences, through.sequences)
    assert torch.equal(direct.stats.log_p, through.stats.log_p)
    plain = model.generate(PROMPTS, attention_mask=MASK, custom_generate=ecmh.generate, max_new_tokens=5, seed=1)
    assert torch.equal(plain, ecmh.generate(model, PROMPTS, attention_mask=MASK, max_new_tokens=5, seed=1))


def test_output_shape_padding_and_stats(model):
    out = _run(model)
    rows = PROMPTS.shape[0] * SETTINGS["num_return_sequences"]
    assert out.sequences.shape[0] == rows
    assert torch.equal(out.sequences[:, : PROMPTS.shape[1]], PROMPTS.repeat_interleave(3, 0))
    for sequence in out.sequences[:, PROMPTS.shape[1]:].tolist():
        if EOS in sequence:
            assert all(token == PAD for token in sequence[sequence.index(EOS) + 1 :])
    stats = out.stats
    assert all(value.shape == (rows,) for value in stats.as_dict().values())
    assert list(stats.as_dict())[:4] == ["log_p", "tokens_decoded", "tokens_forwarded", "sequential_passes"]
    for row in range(rows):  # one row as Python numbers: the tensors' values, NaN as None
        assert stats.row(row) == {name: None if value[row].isnan() else value[row].item()
                                  for name, value in stats.as_dict().items()}
    assert torch.allclose(stats.acceptance_rate, stats.accepted / stats.proposals)
    assert (stats.proposals >= SETTINGS["mcmc_steps"]).all()
    assert isinstance(ecmh.generate(model, PROMPTS, attention_mask=MASK, max_new_tokens=4), torch.Tensor)


def test_eos_none_never_stops_early(model):
    out = _run(model, eos_token_id=None, max_new_tokens=9, block_size=3)
    assert out.sequences.shape[1] == PROMPTS.shape[1] + 9
    assert (out.stats.proposals == 3 * SETTINGS["mcmc_steps"]).all()  # all three blocks ran for every row


def test_top_k_one_is_greedy_decoding(model):
    ours = ecmh.generate(model, PROMPTS, attention_mask=MASK, top_k=1, max_new_tokens=8, eos_token_id=None, seed=0)
    greedy = model.generate(PROMPTS, attention_mask=MASK, do_sample=False, max_new_tokens=8, eos_token_id=None,
                            min_new_tokens=8, pad_token_id=PAD)
    assert torch.equal(ours, greedy)


@needs_callable_kwargs
def test_no_top_k_by_default_on_either_path():
    wide = tiny_model(vocab_size=64, sharpness=1.0, seed=0)  # near-uniform over 64 tokens
    ids = torch.zeros(1, 1, dtype=torch.long)
    for out in (
        ecmh.generate(wide, ids, max_new_tokens=2, mcmc_steps=0, alpha=1.0, num_return_sequences=400, seed=0),
        wide.generate(ids, custom_generate=ecmh.generate, do_sample=True, max_new_tokens=2, mcmc_steps=0, alpha=1.0,
                      num_return_sequences=400, seed=0),
    ):
        # 400 near-uniform draws over 64 tokens hit nearly all of them; top_k=50 would cap this at 50
        assert out[:, 1].unique().numel() > 50


def test_default_block_size_is_a_sixteenth_with_a_floor_of_16_tokens(model):
    out = _run(model, block_size=None, max_new_tokens=32, eos_token_id=None, mcmc_steps=1)
    assert (out.stats.proposals == 2).all()  # 32 // 16 = 2 is below the floor: 16-token blocks, 2 blocks, 1 step each
    out = _run(model, block_size=None, max_new_tokens=8, eos_token_id=None, mcmc_steps=1)
    assert (out.stats.proposals == 1).all()  # the floor is capped at the answer: one 8-token block
    assert ecmh.SamplerConfig().block_size_for(512) == 32 and ecmh.SamplerConfig().block_size_for(3072) == 192


def test_step_callback_sees_every_finished_proposal(model):
    infos = []
    out = _run(model, eos_token_id=None, on_step=infos.append)
    finished = sum(int(info.step.finished.sum()) for info in infos)
    extensions = sum(int((info.step.finished & info.step.extension).sum()) for info in infos)
    rows, blocks = PROMPTS.shape[0] * SETTINGS["num_return_sequences"], SETTINGS["max_new_tokens"] // SETTINGS["block_size"]
    assert extensions == rows * blocks
    assert finished - extensions == out.stats.proposals.sum().item() == rows * blocks * SETTINGS["mcmc_steps"]
    per_row = torch.zeros(rows, blocks, dtype=torch.long)  # MH proposals by (row, block), from info.row/block
    for info in infos:
        mh = info.step.finished & ~info.step.extension
        per_row.index_put_((info.row[mh], info.block[mh]), torch.ones(int(mh.sum()), dtype=torch.long), accumulate=True)
    assert (per_row == SETTINGS["mcmc_steps"]).all()


@pytest.mark.parametrize("with_on_step", [False, True])
def test_progress_counts_every_settled_proposal_beside_on_step(model, monkeypatch, with_on_step):
    import ecmh.mh

    bars = []

    class Recorded(ecmh.mh.tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            bars.append(self)

    monkeypatch.setattr(ecmh.mh, "tqdm", Recorded)
    infos = []
    out = _run(model, eos_token_id=None, progress=True, **({"on_step": infos.append} if with_on_step else {}))
    (bar,) = bars
    assert bar.n == out.stats.proposals.sum().item() > 0  # the MH proposals the summary counts, not the extensions
    assert not with_on_step or sum(int((info.step.finished & ~info.step.extension).sum()) for info in infos) == bar.n
    with pytest.raises(ValueError, match='`progress` is an option of algorithm="mh", not of algorithm="smc"'):
        ecmh.generate(model, [[0, 1]], algorithm="smc", progress=True, max_new_tokens=4)


def test_reencode_baseline_gives_the_same_samples_at_a_higher_forward_count(model):
    cached = _run(model)
    reencoded = _run(ReencodingBackend(model))
    assert torch.equal(cached.sequences, reencoded.sequences)
    assert torch.allclose(cached.stats.log_p, reencoded.stats.log_p, atol=1e-4)
    assert (reencoded.stats.tokens_forwarded > cached.stats.tokens_forwarded).all()


def test_a_generation_config_is_honoured_like_keyword_arguments(model):
    from transformers import GenerationConfig

    config = GenerationConfig(max_new_tokens=6, top_k=2, num_return_sequences=2, do_sample=True)
    through_config = ecmh.generate(model, PROMPTS, config, attention_mask=MASK, seed=3)
    through_kwargs = ecmh.generate(model, PROMPTS, attention_mask=MASK, seed=3, max_new_tokens=6, top_k=2,
                                   num_return_sequences=2)
    assert through_config.shape[0] == 4 and through_config.shape[1] <= PROMPTS.shape[1] + 6
    assert torch.equal(through_config, through_kwargs)


def test_select_rows_copies_a_row_with_its_cache(model):
    from test_invariants import check_repeated_rows

    check_repeated_rows(TransformersBackend(model), model, device=str(model.device))
