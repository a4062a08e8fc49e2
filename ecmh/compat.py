"""Everything that differs between the supported transformers versions (4.56 to 5.x).

ecmh keeps prefixes in a `DynamicCache` and edits its per-layer key/value tensors directly
(gather along the sequence axis, select rows); it never calls `DynamicCache.crop`, whose
argument changed meaning in 5.15-5.20, and never passes `cache_position`, which left model
forwards in 5.4: every supported version derives it from the cache length.
"""

import inspect
import json
import re
from typing import Any, Callable, Optional

import torch
import transformers
from transformers import DynamicCache, GenerationConfig

try:
    from transformers.cache_utils import DynamicLayer
except ImportError:  # pragma: no cover - older than 4.56
    raise ImportError(f"ecmh needs transformers >= 4.56, found {transformers.__version__}.") from None


def generation_defaults() -> dict[str, Any]:
    """The values transformers fills into a generation config that leaves them unset (e.g. `top_k=50`)."""
    defaults = getattr(GenerationConfig, "_get_default_generation_params", None)
    if defaults is not None:  # 5.x keeps them apart from the config class
        return dict(defaults())
    return GenerationConfig().to_dict()  # 4.x: they are the class defaults


def new_kv_cache(model) -> DynamicCache:
    """An empty cache whose layers ecmh can edit, or a clear error naming the layer type that cannot be."""
    cache = DynamicCache(config=model.config)
    unsupported = sorted({type(layer).__name__ for layer in cache.layers if type(layer) is not DynamicLayer})
    if unsupported:
        raise ValueError(
            f"ecmh cannot reuse prefixes with {type(model).__name__}: its cache has {', '.join(unsupported)} "
            "layers (sliding-window, chunked or linear attention), which drop or summarise old positions, so a "
            "kept prefix cannot be cut out of them. Use a model with full attention in every layer."
        )
    return cache


def map_kv_(cache: DynamicCache, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """Replace every layer's key and value tensors `[rows, heads, positions, dim]` by `fn(tensor)`."""
    for layer in cache.layers:
        layer.keys = fn(layer.keys)
        layer.values = fn(layer.values)


def kv_tensors(cache: DynamicCache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Every layer's (keys, values), `[rows, heads, positions, dim]`."""
    return [(layer.keys, layer.values) for layer in cache.layers]


def fill_kv_cache(cache: DynamicCache, layers: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Put these (keys, values) into an empty cache, one pair per layer."""
    for index, (keys, values) in enumerate(layers):
        cache.update(keys, values, index)


def accepts_logits_to_keep(model) -> bool:
    return "logits_to_keep" in inspect.signature(model.forward).parameters


def cache_keyword(model) -> str:
    """The keyword that hands a KV cache to the model's forward: `cache` from transformers 5.24 on (which deprecates
    `past_key_values`, to be removed in 5.40), `past_key_values` before."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def token_bytes(tokenizer, vocab_size: int = 0) -> list[bytes]:
    """Each token id's text as it appears inside decoded text, as bytes (byte-exact for byte-level and byte-fallback
    vocabularies), by transformers' own vocabulary cleaning for `stop_strings`; ids the tokenizer lacks, up to
    `vocab_size`, get b""."""
    from transformers.generation.stopping_criteria import StopStringCriteria

    matching_mode = getattr(StopStringCriteria, "_get_stop_string_matching_mode", None)  # 5.x
    if matching_mode is None:  # 4.x cleans to str: a token holding part of a UTF-8 character becomes U+FFFD
        raw_bytes = _raw_token_reader(_decoder_types(tokenizer))
        raw = {index: raw_bytes(token) for token, index in tokenizer.get_vocab().items()}
        if None in raw.values():
            texts, ids = StopStringCriteria.clean_tokenizer_vocab(tokenizer)
            texts = [raw[index] or text for text, index in zip(texts, ids)]
        else:
            texts, ids = list(raw.values()), list(raw)
    else:
        texts, ids = StopStringCriteria.clean_tokenizer_vocab(tokenizer, stop_string_matching_mode=matching_mode(tokenizer))
    out = [b""] * max(vocab_size, max(ids) + 1)
    for text, index in zip(texts, ids):
        out[index] = text.encode("utf-8") if isinstance(text, str) else bytes(text)
    return out


def _raw_token_reader(decoders: frozenset) -> Callable[[str], Optional[bytes]]:
    """For a byte-level vocabulary, a token's bytes (GPT-2's byte-to-character table); for a byte-fallback one, a
    `<0xE2>` token's byte; None for any other token (4.x only: 5.x's cleaning does this itself)."""
    if "ByteLevel" in decoders:
        from transformers.convert_slow_tokenizer import bytes_to_unicode

        byte_of = {char: byte for byte, char in bytes_to_unicode().items()}
        return lambda token: bytes(byte_of[c] for c in token) if all(c in byte_of for c in token) else None
    if "ByteFallback" in decoders:
        return lambda token: bytes([int(token[3:5], 16)]) if re.fullmatch(r"<0x[0-9A-Fa-f]{2}>", token) else None
    return lambda token: None


def _decoder_types(tokenizer) -> frozenset:
    """The `type`s in a fast tokenizer's decoder (a Sequence lists several)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return frozenset()
    found, todo = set(), [json.loads(backend.to_str()).get("decoder")]
    while todo:
        node = todo.pop()
        if isinstance(node, dict):
            found.add(node.get("type"))
            todo.extend(node.values())
        elif isinstance(node, list):
            todo.extend(node)
    return frozenset(found)
