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
    model(torch.tensor([[0, 1, 2]]), **{compat.cache_keyword(model): cache}, use_cache=True)
    assert cache.get_seq_length() == 3
    compat.map_kv_(cache, lambda x: x[:, :, :2])
    assert cache.get_seq_length() == 2
    compat.map_kv_(cache, lambda x: torch.cat([x, x], dim=0))
    assert all(layer.keys.shape[0] == 2 for layer in cache.layers)


def test_cache_edits_keep_forwards_valid():
    """A forward after cutting the cache back equals one from a fresh cache with the same tokens."""
    model = tiny_model()
    cache = compat.new_kv_cache(model)
    model(torch.tensor([[0, 1, 2, 3]]), **{compat.cache_keyword(model): cache}, use_cache=True)
    compat.map_kv_(cache, lambda x: x[:, :, :2])
    edited = model(torch.tensor([[3]]), **{compat.cache_keyword(model): cache}, position_ids=torch.tensor([[2]])).logits
    fresh = model(torch.tensor([[0, 1, 3]])).logits[:, -1:]
    assert torch.allclose(edited, fresh, atol=1e-5)


def test_logits_to_keep_detected():
    assert compat.accepts_logits_to_keep(tiny_model())
    assert transformers.__version__ >= "4.56"


def test_kv_tensors_fill_a_fresh_cache():
    model = tiny_model()
    source = compat.new_kv_cache(model)
    model(torch.tensor([[0, 1, 2]]), **{compat.cache_keyword(model): source}, use_cache=True)
    copy = compat.new_kv_cache(model)
    compat.fill_kv_cache(copy, compat.kv_tensors(source))
    step = dict(input_ids=torch.tensor([[3]]), position_ids=torch.tensor([[3]]))
    assert torch.equal(model(**{compat.cache_keyword(model): copy}, **step).logits, model(**{compat.cache_keyword(model): source}, **step).logits)


def test_forwards_use_the_cache_keyword_of_the_installed_transformers(monkeypatch):
    """pyproject's filterwarnings makes transformers' deprecation of `past_key_values` an error: with the old
    keyword forced, a generation fails on a transformers that deprecates it, and passes with `cache_keyword`'s."""
    import inspect

    import pytest

    import ecmh
    from conftest import tiny_model
    from ecmh import compat

    model = tiny_model()
    run = lambda: ecmh.generate(model, [[0, 1]], max_new_tokens=4, mcmc_steps=1, seed=0)  # noqa: E731
    run()
    if "cache" not in inspect.signature(model.forward).parameters:
        pytest.skip("this transformers has no `cache` keyword: `past_key_values` is not deprecated")
    monkeypatch.setattr(compat, "cache_keyword", lambda model: "past_key_values")
    with pytest.raises(FutureWarning, match="past_key_values"):
        run()
