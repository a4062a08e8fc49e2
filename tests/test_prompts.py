"""`ecmh.encode_prompts` refuses an empty prompt, as `ecmh generate ""` does."""

import pytest
from transformers import AutoTokenizer

from ecmh import cli, encode_prompts


@pytest.mark.parametrize("texts", [[""], ["What is 2 + 2?", "  \n"]])
def test_an_empty_prompt_is_refused_in_python_as_on_the_command_line(tiny_chat_model_dir, texts, capsys):
    tokenizer = AutoTokenizer.from_pretrained(tiny_chat_model_dir)
    with pytest.raises(ValueError, match=f"prompt {len(texts) - 1} of `texts` is empty: ask something"):
        encode_prompts(tokenizer, texts)
    assert cli.main(["generate", texts[-1]]) == 2
    assert "the prompt is empty: ask something" in capsys.readouterr().err
    assert encode_prompts(tokenizer, ["What is 2 + 2?"]).input_ids.shape[0] == 1  # a prompt with text is encoded
