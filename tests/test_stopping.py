"""Stop strings: the device-side matcher against a plain string search, and the errors around them.

That stop strings are terminal events of the target (the chains reach p^alpha over continuations
that end at their first stop string) is checked by enumeration in `tests/test_exactness.py`; that
every returned row ends exactly there, by `tests/test_invariants.py`.
"""

import pytest
import torch
import transformers
from hypothesis import given
from hypothesis import strategies as st
from packaging import version

import ecmh
from conftest import PAD, terminal_length, tiny_model, tiny_tokenizer
from ecmh import compat
from ecmh.stopping import StopStrings

LETTERS = st.text("ab\né", max_size=5).map(str.encode)  # few letters, so stop strings occur often; é is two bytes


@st.composite
def vocabularies_and_answers(draw):
    """Stop strings; answers whose texts hold some of them, cut into tokens of 1-4 bytes at random (so a
    stop string spans one to five tokens, or starts or ends inside one, or splits a character), with
    random extra tokens, some of them empty, in between; the vocabulary those tokens make up."""
    stop_strings = draw(st.lists(st.text("ab\né", min_size=1, max_size=5), min_size=1, max_size=3))
    vocabulary = {text: i for i, text in enumerate(draw(st.lists(LETTERS, min_size=1, max_size=4, unique=True)))}
    sequences = []
    for _ in range(draw(st.integers(1, 6))):
        parts = draw(st.lists(st.one_of(LETTERS, st.sampled_from(stop_strings).map(str.encode)), min_size=1, max_size=4))
        text, sequence = b"".join(parts), []
        while text or not sequence:
            if draw(st.booleans()):
                sequence.append(draw(st.sampled_from(sorted(vocabulary.values()))))
            else:
                size = draw(st.integers(1, 4))
                sequence.append(vocabulary.setdefault(text[:size], len(vocabulary)))
                text = text[size:]
        sequences.append(sequence)
    texts = sorted(vocabulary, key=vocabulary.get)
    return texts, stop_strings, sequences


def plain_search(texts, stop_strings, sequence):
    """Per position t: does the text of `sequence[:t + 1]` hold a stop string that ends inside token t? An empty
    token is a separator (as `ecmh.stopping` defines it)."""
    pieces = [t or b"\xff" for t in texts]  # \xff: no stop string's UTF-8 contains it
    text, out = b"", []
    for token in sequence:
        before, text = len(text), text + pieces[token]
        out.append(any(text.find(s.encode(), max(0, before - len(s.encode()) + 1)) >= 0 for s in stop_strings))
    return out


@given(vocabularies_and_answers())
def test_the_device_matcher_agrees_with_a_plain_string_search(case):
    texts, stop_strings, sequences = case
    stop = StopStrings(stop_strings, texts)
    width = max(map(len, sequences))
    tokens = torch.tensor([s + [0] * (width - len(s)) for s in sequences])
    for t in range(width):
        length = torch.tensor([min(t + 1, len(s)) for s in sequences])
        ends = stop.ends(*stop.window(tokens, length)).tolist()
        for sequence, n, got in zip(sequences, length.tolist(), ends):
            assert got == plain_search(texts, stop_strings, sequence[:n])[-1]
    for sequence in sequences:
        expected = plain_search(texts, stop_strings, sequence)
        for start in range(len(sequence)):
            first = next((t for t in range(start, len(sequence)) if expected[t]), None)
            if not any(expected[:start]):  # a kept prefix never holds a stop string
                assert stop.first_end(sequence, start) == first


def test_token_texts_are_the_decoded_bytes_of_a_byte_level_vocabulary(tiny_chat_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_chat_model_dir)
    texts = compat.token_bytes(tokenizer, vocab_size=len(tokenizer) + 3)
    assert len(texts) == len(tokenizer) + 3 and texts[-1] == b""  # ids past the tokenizer have no text
    ids = tokenizer("déf f(x):\n  return 'ü'", add_special_tokens=False).input_ids
    assert b"".join(texts[i] for i in ids) == "déf f(x):\n  return 'ü'".encode()


def _byte_fallback_tokenizer():
    """A sentencepiece-style vocabulary: letters, `▁` for a space, and `<0xNN>` tokens for any other byte."""
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    vocab = {c: i for i, c in enumerate(["<unk>", *"abcdef", "▁", "▁a"])}
    vocab.update({f"<0x{b:02X}>": len(vocab) + k for k, b in enumerate("é€".encode())})
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>", byte_fallback=True))
    backend.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    return PreTrainedTokenizerFast(tokenizer_object=backend)


@pytest.mark.skipif(version.parse(transformers.__version__) < version.parse("5"), reason="compares with 5.x's cleaning")
@pytest.mark.parametrize("kind", ["byte_level", "byte_fallback"])
def test_the_4x_reading_of_a_vocabulary_equals_5x_cleaning(kind, tiny_chat_model_dir, monkeypatch):
    from transformers import AutoTokenizer
    from transformers.generation.stopping_criteria import StopStringCriteria

    tokenizer = AutoTokenizer.from_pretrained(tiny_chat_model_dir) if kind == "byte_level" else _byte_fallback_tokenizer()
    by_5x = compat.token_bytes(tokenizer)
    assert any(len(text) == 1 and text[0] >= 0x80 for text in by_5x)  # the case 4.x's own cleaning gets wrong
    monkeypatch.delattr(StopStringCriteria, "_get_stop_string_matching_mode")  # as on 4.x
    assert compat.token_bytes(tokenizer) == by_5x


def test_a_stop_string_split_over_tokens_ends_the_answer_where_it_completes():
    model = tiny_model(vocab_size=6, seed=3)
    prompt = torch.tensor([[1, 0]])
    out = ecmh.generate(model, prompt, max_new_tokens=12, block_size=4, mcmc_steps=3, seed=0, eos_token_id=None,
                        num_return_sequences=16, stop_strings=["bc", "cc"], tokenizer=tiny_tokenizer(6),
                        pad_token_id=PAD, return_dict_in_generate=True)
    for row, n in zip(out.sequences[:, 2:].tolist(), out.trace.length.tolist()):
        assert terminal_length(row[:n], None, ("bc", "cc")) in (n, None if n == 12 else -1)
    assert (out.trace.length < 12).any()  # the test sees stop strings end answers


@pytest.mark.parametrize("kwargs,match", [
    (dict(stop_strings=[""]), "non-empty"),
    (dict(stop_strings=[3]), "non-empty string"),
])
def test_bad_stop_strings_are_refused_with_the_fix(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ecmh.generate(tiny_model(vocab_size=6), torch.tensor([[1]]), max_new_tokens=2, **kwargs)


@pytest.mark.skipif(version.parse(transformers.__version__) < version.parse("5"),
                    reason="transformers 4.x builds its own StopStringCriteria before calling custom_generate")
def test_stop_strings_through_custom_generate_are_refused_not_ignored():
    """transformers keeps the tokenizer from a custom_generate function (5.x), so it refuses them itself."""
    model = tiny_model(vocab_size=6)
    with pytest.raises(ValueError, match="tokenizer"):
        model.generate(torch.tensor([[1]]), custom_generate=ecmh.generate, max_new_tokens=2, stop_strings=["bc"],
                       tokenizer=tiny_tokenizer(6), do_sample=True)
