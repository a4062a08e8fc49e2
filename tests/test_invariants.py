"""Invariants of every returned row, over generated batch shapes (hypothesis).

For a correct sampler, the numbers it stores for each position of a row's answer (`log p`, `log Z`,
the entropy) are what one fresh forward pass over `prompt + y_<t` gives, whatever the other rows of
the batch did meanwhile: ragged left-padded prompts, chains finishing at different times, cache
compaction, rows leaving. So the returned `stats.log_p` and `trace` must equal a fresh pass over the
returned sequences, and each row must end where a plain reading of its tokens says it ends: at its first
EOS or stop string, or at `max_new_tokens`.

Tolerance: 1e-4 nats per position and 1e-3 per row. Both passes are float32 on the same weights and
differ only in how attention is batched and masked: measured worst differences are under 1e-6 per
position; a sampler whose cache serves a row the wrong keys and values is off by 0.02 to 15 nats.

`HYPOTHESIS_PROFILE=thorough` tries 10x more configurations.
"""

import torch
from hypothesis import given
from hypothesis import strategies as st

import ecmh
from conftest import EOS, PAD, tiny_model, tiny_tokenizer
from reference import recompute

PER_POSITION, PER_ROW = 1e-4, 1e-3
MH_ONLY = ("block_size", "mcmc_steps", "cut", "tries")  # options of `batches` that SMC refuses


def without_mh_options(options: dict) -> dict:
    return {key: value for key, value in options.items() if key not in MH_ONLY}


@st.composite
def batches(draw, vocab: int):
    """A ragged batch of prompts (1-64 rows in all) and the options of one `ecmh.generate` call."""
    chains = draw(st.sampled_from([1, 1, 2, 4]))
    max_new_tokens = draw(st.integers(1, 8))
    prompts = [draw(st.lists(st.integers(0, vocab - 1), min_size=1, max_size=5))
               for _ in range(draw(st.integers(1, 64 // chains)))]
    return prompts, dict(
        num_return_sequences=chains, max_new_tokens=max_new_tokens,
        block_size=draw(st.integers(1, max_new_tokens)), mcmc_steps=draw(st.integers(0, 20)),
        cut=draw(st.sampled_from(["entropy", "uniform", "restart"])), alpha=draw(st.sampled_from([1.0, 2.0, 4.0])),
        eos_token_id=draw(st.sampled_from([EOS, None])), top_k=draw(st.sampled_from([None, None, 3])),
        stop_strings=draw(st.sampled_from([None, None, ("bc", "cc"), ("a", "bb")])), tokenizer=tiny_tokenizer(vocab),
        seed=draw(st.integers(0, 2**16)), tries=draw(st.sampled_from([1, 1, 2, 3])),
    )


@st.composite
def configurations(draw):
    """A random tiny model and a batch for it."""
    vocab = draw(st.integers(5, 8))
    model = dict(vocab_size=vocab, sharpness=draw(st.sampled_from([3.0, 10.0])), seed=draw(st.integers(0, 2**16)),
                 num_key_value_heads=draw(st.sampled_from([1, 2])),
                 initializer_range=draw(st.sampled_from([0.02, 0.1])))
    return (model, *draw(batches(vocab)))


def left_padded(prompts):
    width = max(map(len, prompts))
    ids = torch.tensor([[PAD] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    return ids, mask


def check_against_a_fresh_pass(model, prompts, engine=None, **kwargs):
    """Sample on `engine` (default: `model` itself), recompute every returned row on `model`."""
    ids, mask = left_padded(prompts)
    out = ecmh.generate(model if engine is None else engine, ids, attention_mask=mask, pad_token_id=PAD,
                        return_dict_in_generate=True, **kwargs)
    chains = kwargs["num_return_sequences"]
    fresh = recompute(model, out.sequences, mask.repeat_interleave(chains, 0), kwargs["alpha"], kwargs["eos_token_id"],
                      kwargs["top_k"], stop_strings=kwargs["stop_strings"] or ())
    trace = type(out.trace)(*(x.cpu() for x in out.trace))
    assert torch.equal(trace.length, fresh.length)
    width = trace.log_p.shape[1]
    for name in ("log_p", "log_z", "entropy"):
        error = (getattr(trace, name) - getattr(fresh, name)[:, :width]).abs().max(1).values
        assert (error <= PER_POSITION).all(), f"{name}: rows {error.gt(PER_POSITION).nonzero().flatten().tolist()}"
    assert torch.allclose(out.stats.log_p.cpu(), fresh.log_p.sum(1), rtol=0, atol=PER_ROW)


@given(configurations())
def test_every_row_matches_a_fresh_forward_pass(config):
    model, prompts, options = config
    check_against_a_fresh_pass(tiny_model(**model), prompts, **options)


def settle_all(backend, rng):
    """Step `backend` until every row's proposal has finished (a streaming backend returns rows as they finish):
    each row's numbers as returned when it finished."""
    from ecmh.kernel import Suffix

    settled, finished = None, None
    while finished is None or not finished.all():
        if (decoded := backend.step(rng)) is None:
            continue
        now, suffix = decoded
        if settled is None:
            settled, finished = suffix, now.clone()
        else:
            settled = Suffix(*(torch.where(now.view(-1, *[1] * (new.dim() - 1)), new, old)
                               for new, old in zip(suffix, settled)))
            finished |= now
    return settled


def check_repeated_rows(backend, model, device="cpu"):
    """`select_rows` with repeated indices: each copy of a row goes on from the same kept prefix with its own cache,
    and every number it decodes equals a fresh forward pass over prompt + kept prefix + its own new tokens."""
    from ecmh.scoring import PowerProposal
    from ecmh.terminal import Terminal

    prompts = [[0, 1, 3], [2, 1]]
    ids, mask = left_padded(prompts)
    rng, alpha, kept = torch.Generator(device=device).manual_seed(0), 2.0, 3
    backend.prepare(ids.to(device), mask.to(device), proposal=PowerProposal(alpha), terminal=Terminal((), None, 12, device))
    everyone = torch.ones(2, dtype=torch.bool, device=device)
    backend.start(everyone, torch.zeros(2, dtype=torch.long, device=device), torch.full((2,), 6, device=device),
                  torch.zeros(2, 12, dtype=torch.long, device=device), torch.arange(2, device=device))
    answer = torch.zeros(2, 12, dtype=torch.long, device=device)
    answer[:, :6] = settle_all(backend, rng).tokens[:, :6]
    backend.commit(everyone, torch.zeros(2, dtype=torch.long, device=device))
    keep = torch.tensor([1, 0, 0, 1], device=device)
    backend.select_rows(keep)
    backend.start(torch.ones(4, dtype=torch.bool, device=device), torch.full((4,), kept, device=device),
                  torch.full((4,), 9, device=device), answer[keep], torch.arange(4, device=device))
    suffix = settle_all(backend, rng)
    assert (suffix.length == 9 - kept).all()
    sequences = torch.cat([ids[keep.cpu()], answer[keep][:, :kept].cpu(), suffix.tokens[:, : 9 - kept].cpu()], dim=1)
    fresh = recompute(model, sequences, mask[keep.cpu()], alpha, None)
    for name in ("log_p", "log_z", "entropy"):
        error = (getattr(suffix, name)[:, : 9 - kept].cpu() - getattr(fresh, name)[:, kept:9]).abs().max()
        assert error <= PER_POSITION, name
    backend.close()
