"""Tiny randomly initialised transformers models, small enough to enumerate every continuation."""

import itertools
import os

import pytest
import torch
from hypothesis import HealthCheck, settings
from transformers import LlamaConfig, LlamaForCausalLM

from ecmh.toy import random_model

settings.register_profile("ci", max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("quick", max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))  # `HYPOTHESIS_PROFILE=thorough`: 10x the examples

EOS = 2
PAD = 3  # an ordinary token too: continuations are read up to their first EOS
TEXTS = ["a", "b", "<eos>", "c", "ab", "ca", "bb", "ac"]  # token i's text in `tiny_tokenizer`, for stop strings


if "PYTEST_XDIST_WORKER_COUNT" in os.environ:  # `pytest -n N`: N processes share the cores, and so do their threads
    THREADS = max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    torch.set_num_threads(THREADS)
    os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))  # for the programs the tests start

DEVICE = os.environ.get("ECMH_TEST_DEVICE", "cpu")  # `ECMH_TEST_DEVICE=cuda`: the models live there (benchmarks/gpu_check.sh)


def tiny_model(vocab_size: int = 4, sharpness: float = 3.0, seed: int = 0, **config):
    """`ecmh.toy.random_model`: a 2-layer Llama with a sharpened output head (EOS 2, padding 3), on `DEVICE`."""
    return random_model(vocab_size, sharpness, seed, **config).to(DEVICE)


@pytest.fixture(scope="session")
def model():
    return tiny_model()


def tiny_tokenizer(vocab_size: int):
    """A byte-level tokenizer whose token i reads `TEXTS[i]` (for stop strings; never used to encode)."""
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE(vocab={text: i for i, text in enumerate(TEXTS[:vocab_size])}, merges=[]))
    backend.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=backend)


def terminal_length(seq, eos: int | None, stop_strings=()) -> int | None:
    """Where `seq` ends (one past its first EOS or first stop string, read plainly from `TEXTS`), or None."""
    text = ""
    for t, token in enumerate(seq):
        if token == eos:
            return t + 1
        if stop_strings:
            before, text = len(text), text + TEXTS[token]
            if any(text.find(s, max(0, before - len(s) + 1)) >= 0 for s in stop_strings):
                return t + 1
    return None


def continuations(vocab: list[int], max_len: int, eos: int | None, stop_strings=()) -> list[tuple[int, ...]]:
    """Every complete continuation: ends at its first EOS or stop string (length <= max_len), or has length max_len."""
    out = []
    for n in range(1, max_len + 1):
        for seq in itertools.product(vocab, repeat=n):
            end = terminal_length(seq, eos, stop_strings)
            if end == n or (end is None and n == max_len):
                out.append(seq)
    return out


@pytest.fixture(scope="session")
def tiny_chat_model_dir(tmp_path_factory):
    """A directory with a tiny random Llama and a byte-level tokenizer with a chat template (no downloads)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    byte_tokens = sorted(pre_tokenizers.ByteLevel.alphabet())
    backend = Tokenizer(models.BPE(vocab={token: i for i, token in enumerate(byte_tokens)}, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tokenizer.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=16384, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=None,
    )
    directory = tmp_path_factory.mktemp("tiny-chat")
    LlamaForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
