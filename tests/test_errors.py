"""Bad input gets a clear error naming the argument."""

import pytest
import torch
from transformers import MistralConfig, MistralForCausalLM

import ecmh

from conftest import tiny_model

IDS = torch.tensor([[0, 1, 2]])


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"alpha": 0.5}, ValueError, "alpha"),
        ({"alpha": float("nan")}, ValueError, "alpha"),
        ({"alpha": float("inf")}, ValueError, "alpha"),
        ({"mcmc_steps": -1}, ValueError, "mcmc_steps"),
        ({"mcmc_steps": 1.5}, ValueError, "mcmc_steps"),
        ({"block_size": 0}, ValueError, "block_size"),
        ({"block_size": 9, "max_new_tokens": 8}, ValueError, "block_size"),
        ({"cut": "middle"}, ValueError, "cut"),
        ({"cut": 3}, TypeError, "cut"),
        ({"cut_power": 0.0}, ValueError, "cut_power"),
        ({"seed": "zero"}, TypeError, "seed"),
        ({"max_new_tokens": 0}, ValueError, "max_new_tokens"),
        ({"max_new_tokens": 62}, ValueError, "max_new_tokens"),  # 3 prompt tokens + 62 > 64 positions
        ({"top_k": -1}, ValueError, "top_k"),
        ({"top_p": 1.5}, ValueError, "top_p"),
        ({"temperature": 0.7}, ValueError, "temperature"),
        ({"repetition_penalty": 1.2}, ValueError, "repetition_penalty"),
        ({"num_beams": 4}, ValueError, "num_beams"),
        ({"stop_strings": ["\ndef "]}, ValueError, "tokenizer=tokenizer"),  # never silently ignored
        ({"no_such_option": 1}, TypeError, "no_such_option"),
    ],
)
def test_bad_arguments(model, kwargs, error, match):
    with pytest.raises(error, match=match):
        ecmh.generate(model, IDS, **{"max_new_tokens": 8, **kwargs})


def test_empty_prompt(model):
    with pytest.raises(ValueError, match="empty"):
        ecmh.generate(model, torch.zeros(1, 0, dtype=torch.long), max_new_tokens=4)
    with pytest.raises(ValueError, match="no prompt token"):
        ecmh.generate(model, IDS, attention_mask=torch.zeros_like(IDS), max_new_tokens=4)


def test_right_padded_batch(model):
    ids = torch.tensor([[0, 1, 2], [0, 1, 3]])
    with pytest.raises(ValueError, match="left padding"):
        ecmh.generate(model, ids, attention_mask=torch.tensor([[1, 1, 0], [1, 1, 1]]), max_new_tokens=4)


def test_input_ids_are_a_2d_tensor_or_lists_of_token_ids(model):
    as_lists = ecmh.generate(model, [[0, 1], [2]], max_new_tokens=4, seed=0, pad_token_id=3)
    as_tensor = ecmh.generate(model, torch.tensor([[0, 1], [3, 2]]), attention_mask=torch.tensor([[1, 1], [0, 1]]),
                              max_new_tokens=4, seed=0, pad_token_id=3)
    assert torch.equal(as_lists, as_tensor)
    for bad in ("0 1", torch.tensor([0, 1]), [[0, "a"]], []):
        with pytest.raises(TypeError, match="input_ids"):
            ecmh.generate(model, bad, max_new_tokens=4)


def test_nan_logits(model):
    broken = tiny_model()
    with torch.no_grad():
        broken.lm_head.weight.fill_(float("nan"))
    with pytest.raises(ValueError, match="NaN"):
        ecmh.generate(broken, IDS, max_new_tokens=4)


def test_sliding_window_model_is_refused_with_the_reason():
    config = MistralConfig(vocab_size=8, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                           num_attention_heads=2, num_key_value_heads=1, sliding_window=4)
    with pytest.raises(ValueError, match="sliding-window"):
        ecmh.generate(MistralForCausalLM(config).eval(), IDS, max_new_tokens=4)


def test_unknown_model_name():
    with pytest.raises(TypeError, match="name"):
        ecmh.load_model(3)


def test_a_prompt_longer_than_the_context_asks_to_shorten_it_and_a_long_answer_to_lower_the_cap(model):
    context = model.config.max_position_embeddings
    with pytest.raises(ValueError, match="leaving no room for an answer: shorten the prompt"):
        ecmh.generate(model, torch.zeros(1, context, dtype=torch.long), max_new_tokens=4)
    with pytest.raises(ValueError, match=f"lower `max_new_tokens` to at most {context - 3}"):
        ecmh.generate(model, torch.zeros(1, 3, dtype=torch.long), max_new_tokens=context)
