"""The transformers-version layer."""

import torch
import transformers

from ecmh import compat

from conftest import tiny_model


def test_generation_defaults_include_transformers_top_k():
    assert compat.generation_defaults()["top_k"] == 50


def test_new_kv_cache_has_editable_full_attention_layers():
    model = tiny_model()
    cache = compat.new_kv_cache(model)
    model(torch.tensor([[0, 1, 2]]), past_key_values=cache, use_cache=True)
    assert cache.get_seq_length() == 3
    compat.map_kv_(cache, lambda x: x[:, :, :2])
    assert cache.get_seq_length() == 2
    compat.map_kv_(cache, lambda x: torch.cat([x, x], dim=0))
    assert all(layer.keys.shape[0] == 2 for layer in cache.layers)


def test_cache_edits_keep_forwards_valid():
    """A forward after cutting the cache back equals one from a fresh cache with the same tokens."""
    model = tiny_model()
    cache = compat.new_kv_cache(model)
    model(torch.tensor([[0, 1, 2, 3]]), past_key_values=cache, use_cache=True)
    compat.map_kv_(cache, lambda x: x[:, :, :2])
    edited = model(torch.tensor([[3]]), past_key_values=cache, position_ids=torch.tensor([[2]])).logits
    fresh = model(torch.tensor([[0, 1, 3]])).logits[:, -1:]
    assert torch.allclose(edited, fresh, atol=1e-5)


def test_logits_to_keep_detected():
    assert compat.accepts_logits_to_keep(tiny_model())
    assert transformers.__version__ >= "4.56"


def test_kv_tensors_fill_a_fresh_cache():
    model = tiny_model()
    source = compat.new_kv_cache(model)
    model(torch.tensor([[0, 1, 2]]), past_key_values=source, use_cache=True)
    copy = compat.new_kv_cache(model)
    compat.fill_kv_cache(copy, compat.kv_tensors(source))
    step = dict(input_ids=torch.tensor([[3]]), position_ids=torch.tensor([[3]]))
    assert torch.equal(model(past_key_values=copy, **step).logits, model(past_key_values=source, **step).logits)
