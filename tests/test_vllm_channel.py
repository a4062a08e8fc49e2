"""The channel that carries the vLLM processor's numbers through logprobs (`ecmh.backends.vllm.channel`),
checked without vLLM: every vocabulary size from the smallest allowed, every slot position of the drawn
token, batch sizes up to 256, and the logits dtypes the numbers can and cannot ride in."""

from types import SimpleNamespace

import pytest
import torch

from ecmh.backends.vllm import channel


def logprobs_of(row: torch.Tensor) -> dict:
    """What vLLM returns with `logprobs_mode="processed_logits"`: the top `LOGPROBS` values of the row."""
    values, ids = torch.topk(row.float(), channel.LOGPROBS)
    return {int(i): SimpleNamespace(logprob=float(v)) for i, v in zip(ids, values)}


@pytest.mark.parametrize("vocab_size", [channel.LOGPROBS, 5, 151_936])
@pytest.mark.parametrize("rows", [1, 7, 256])
def test_numbers_come_back_exactly_in_float32(vocab_size, rows):
    generator = torch.Generator().manual_seed(vocab_size + rows)
    token = torch.randint(vocab_size, (rows,), generator=generator)
    token[: min(rows, channel.LOGPROBS)] = torch.arange(min(rows, channel.LOGPROBS))  # drawn token in every slot position
    numbers = torch.stack([-torch.rand(rows, generator=generator) * 30, torch.randn(rows, generator=generator) * 5,
                           torch.rand(rows, generator=generator) * 12], dim=1)
    logits = channel.encode(token, numbers, vocab_size, torch.float32)
    assert torch.equal(logits.argmax(1), token)  # a greedy sampler emits the drawn token
    for row in range(rows):
        assert channel.decode(int(token[row]), logprobs_of(logits[row])) == numbers[row].tolist()


def test_half_precision_logits_would_round_the_numbers():
    # Why the channel relies on vLLM's float32 logits: in a 16-bit row the numbers would not survive.
    numbers = torch.tensor([[-1.2345678, 3.3333333, 0.1234567]])
    logits = channel.encode(torch.tensor([0]), numbers, 8, torch.bfloat16)
    assert channel.decode(0, logprobs_of(logits[0])) != numbers[0].tolist()


def test_missing_numbers_are_a_clear_error():
    with pytest.raises(RuntimeError, match="load_vllm"):
        channel.decode(0, None)
    with pytest.raises(RuntimeError, match="load_vllm"):
        channel.decode(0, {0: SimpleNamespace(logprob=float("inf"))})
