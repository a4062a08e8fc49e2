"""Turn prompt texts into a left-padded batch of token ids, with the model's chat template when it has one."""

from typing import Sequence


def encode_prompts(tokenizer, texts: Sequence[str], chat: bool = True):
    """A left-padded `BatchEncoding` (`input_ids`, `attention_mask`) for `texts`.

    With `chat=True` and a tokenizer that has a chat template, each text becomes one user message
    followed by the assistant's turn; the template brings its own special tokens.

    Example:
        >>> import ecmh
        >>> model, tokenizer = ecmh.load_model()  # doctest: +SKIP
        >>> batch = encode_prompts(tokenizer, ["What is 2 + 2?", "Name a prime."])  # doctest: +SKIP
    """
    if isinstance(texts, str):
        raise TypeError("`texts` must be a list of prompt strings, not one string.")
    empty = [index for index, text in enumerate(texts) if not text.strip()]
    if empty:  # as `ecmh generate ""` refuses it: an empty prompt gives the model nothing to answer
        raise ValueError(f"prompt {empty[0]} of `texts` is empty: ask something, e.g. \"What is 17 * 23?\".")
    templated = chat and bool(getattr(tokenizer, "chat_template", None))
    if templated:
        texts = [tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                               add_generation_prompt=True) for text in texts]
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    # padding_side per call: vLLM's `llm.get_tokenizer()` ignores attributes set after the engine started
    return tokenizer(list(texts), return_tensors="pt", padding=True, padding_side="left",
                     add_special_tokens=not templated)
