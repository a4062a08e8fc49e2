"""Tiny randomly initialised transformers models, small enough to enumerate every continuation."""

import itertools

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

EOS = 2
PAD = 3  # an ordinary token too: continuations are read up to their first EOS


def tiny_model(vocab_size: int = 4, sharpness: float = 3.0, seed: int = 0, **config) -> LlamaForCausalLM:
    """A 2-layer Llama whose output head is scaled up so next-token distributions are peaked and varied.

    `config` overrides the LlamaConfig fields (sizes, head_dim, context)."""
    torch.manual_seed(seed)
    config = LlamaConfig(**{
        "vocab_size": vocab_size, "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 2,
        "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 64,
        "bos_token_id": 0, "eos_token_id": EOS, "pad_token_id": PAD, "tie_word_embeddings": False, **config,
    })
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(sharpness)
    return model


@pytest.fixture(scope="session")
def model():
    return tiny_model()


def continuations(vocab: list[int], max_len: int, eos: int | None) -> list[tuple[int, ...]]:
    """Every complete continuation: ends in `eos` (length <= max_len) or has length max_len."""
    out = []
    for n in range(1, max_len + 1):
        for seq in itertools.product(vocab, repeat=n):
            if eos is not None and eos in seq[:-1]:
                continue
            if n == max_len or (eos is not None and seq[-1] == eos):
                out.append(seq)
    return out


def read_continuation(row: list[int], eos: int | None) -> tuple[int, ...]:
    """A returned continuation up to and including its first EOS (the rest is padding)."""
    if eos is not None and eos in row:
        row = row[: row.index(eos) + 1]
    return tuple(row)


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
