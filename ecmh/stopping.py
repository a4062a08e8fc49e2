"""Stop strings as terminal events of the target: a continuation ends at its first stop string.

A sequence ends at EOS, at the length cap, or at the first token whose text completes an
occurrence of one of the stop strings in the continuation's text (the prompt's text does not
count, as in vLLM's `stop`). Ending is a deterministic property of each prefix, so the target
`p^alpha` over complete continuations is as well defined as with EOS alone, and the MH ratio is
unchanged: proposals stop at the event, the state is "done" when it ends in one, exactly as for EOS.

The continuation's text is the concatenation of its tokens' texts as bytes (`compat.token_bytes`:
transformers' `StopStringCriteria` vocabulary cleaning, byte-exact for byte-level tokenizers).
Matching runs on the device without leaving it: an Aho-Corasick automaton over the stop strings'
bytes is folded into per-token transition tables, `next_state[q, v]` and `completes[q, v]` (a
stop string ends inside token `v` read from automaton state `q`). Every stop string has at most
`window_size` bytes and every non-empty token at least one, so an occurrence that ends in the last
token starts within the last `window_size` tokens: reading them from the automaton's root decides it.
A token whose text is empty (a rare special token) resets the automaton: no stop string spans it.
"""

import copy
import functools
from collections import deque
from typing import Optional, Sequence, Union

import numpy as np
import torch


def as_stop_strings(value) -> tuple:
    """`stop_strings` as a tuple (None: none), or a ValueError naming what is wrong."""
    if value is None:
        return ()
    strings = (value,) if isinstance(value, str) else value
    if not isinstance(strings, (list, tuple)) or not all(isinstance(s, str) and s for s in strings):
        raise ValueError(f"`stop_strings` must be a non-empty string or a list of non-empty strings, got {value!r}.")
    return tuple(strings)


def _automaton(patterns: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """The Aho-Corasick DFA over bytes: `delta[state, byte]` and `accepting[state]` (a pattern ends here)."""
    goto, accepting = [{}], [False]
    for pattern in patterns:
        state = 0
        for byte in pattern:
            if byte not in goto[state]:
                goto.append({})
                accepting.append(False)
                goto[state][byte] = len(goto) - 1
            state = goto[state][byte]
        accepting[state] = True
    delta = np.zeros((len(goto), 256), dtype=np.int64)
    fail = [0] * len(goto)
    queue = deque()
    for byte, child in goto[0].items():
        delta[0, byte] = child
        queue.append(child)
    while queue:  # breadth first: a state's fail link is complete before its children need it
        state = queue.popleft()
        accepting[state] = accepting[state] or accepting[fail[state]]
        delta[state] = delta[fail[state]]
        for byte, child in goto[state].items():
            delta[state, byte] = child
            fail[child] = delta[fail[state], byte]
            queue.append(child)
    return delta, np.array(accepting)


class StopStrings:
    """Ends continuations at the first occurrence of any of `stop_strings` (see the module docstring).

    Args:
        stop_strings: a string or a list of non-empty strings.
        token_texts: each token id's text, as bytes (or str, read as UTF-8); see `from_tokenizer`.

    Example:
        >>> import torch
        >>> stop = StopStrings(["\\ndef "], [b"a", b"\\n", b"def", b" ", b"\\nde", b"f x"])
        >>> window, valid = stop.window(torch.tensor([[0, 4, 5, 0], [1, 2, 3, 0]]), torch.tensor([3, 3]))
        >>> stop.ends(window, valid).tolist()
        [True, True]
    """

    def __init__(self, stop_strings: Union[str, Sequence[str]], token_texts: Sequence[Union[bytes, str]]):
        self.stop_strings = as_stop_strings(stop_strings)
        if not self.stop_strings:
            raise ValueError("`stop_strings` is empty: give at least one string.")
        patterns = [s.encode("utf-8") for s in self.stop_strings]
        self.window_size = max(map(len, patterns))
        delta, accepting = _automaton(patterns)
        texts = [t.encode("utf-8") if isinstance(t, str) else bytes(t) for t in token_texts]
        self.next_state, self.completes = self._token_tables(delta, accepting, texts)

    @classmethod
    def from_tokenizer(cls, stop_strings: Union[str, Sequence[str]], tokenizer, vocab_size: int = 0) -> "StopStrings":
        """The stop strings over `tokenizer`'s vocabulary (a transformers tokenizer), for a model with `vocab_size`
        logits (ids past the tokenizer's vocabulary have no text). Cached: building the tables takes seconds."""
        return _for_tokenizer(cls, as_stop_strings(stop_strings), tokenizer, vocab_size)

    @staticmethod
    def _token_tables(delta: np.ndarray, accepting: np.ndarray, texts: list[bytes]):
        """`next_state[q, v]` after reading token v's bytes from state q, and whether a pattern ended inside them."""
        states, vocab = delta.shape[0], len(texts)
        lengths = np.array([len(t) for t in texts])
        order = np.argsort(-lengths, kind="stable")  # longest first: the tokens still reading byte j are a prefix
        padded = np.zeros((vocab, max(int(lengths.max()), 1)), dtype=np.int64)
        for row, v in enumerate(order):
            padded[row, : lengths[v]] = np.frombuffer(texts[v], dtype=np.uint8)
        reading = [int((lengths > j).sum()) for j in range(padded.shape[1])]
        next_state = np.zeros((states, vocab), dtype=np.int64)  # an empty token resets to the root
        completes = np.zeros((states, vocab), dtype=bool)
        for q in range(states):
            state, done = np.full(vocab, q), np.zeros(vocab, dtype=bool)
            for j, count in enumerate(reading):
                state[:count] = delta[state[:count], padded[:count, j]]
                done[:count] |= accepting[state[:count]]
            nonempty = lengths[order] > 0
            next_state[q, order[nonempty]], completes[q, order[nonempty]] = state[nonempty], done[nonempty]
        return torch.from_numpy(next_state), torch.from_numpy(completes)

    def to(self, device) -> "StopStrings":
        """A copy whose tables live on `device`."""
        moved = copy.copy(self)
        moved.next_state, moved.completes = self.next_state.to(device), self.completes.to(device)
        return moved

    def window(self, tokens: torch.Tensor, length: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The last `window_size` tokens of each continuation `tokens[r, :length[r]]`, and which of them exist."""
        position = length[:, None] - self.window_size + torch.arange(self.window_size, device=tokens.device)[None, :]
        return tokens.gather(1, position.clamp_min(0)), position >= 0

    def ends(self, window: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Rows whose continuation (last tokens `window` `[R, W]`, `valid` where they exist) has a stop string
        ending inside its last token, which must exist."""
        state = torch.zeros(window.shape[0], dtype=torch.long, device=window.device)
        for j in range(window.shape[1] - 1):
            state = torch.where(valid[:, j], self.next_state[state, window[:, j]], 0)
        return valid[:, -1] & self.completes[state, window[:, -1]]

    def first_end(self, continuation: Sequence[int], start: int = 0) -> Optional[int]:
        """The first position `t >= start` whose token ends a stop string in `continuation` (a host-side list),
        or None; as `ends` (no stop string ends before `start`, or the continuation would have ended there)."""
        next_state, completes = self.next_state.cpu().numpy(), self.completes.cpu().numpy()
        state = 0
        for t in range(max(0, start - self.window_size + 1), len(continuation)):
            token = continuation[t]
            if t >= start and completes[state, token]:
                return t
            state = next_state[state, token]
        return None


def text_before_stop_string(text: str, stop_strings: Sequence[str]) -> str:
    """`text` up to its first stop string (the string itself, and what its last token added after it, dropped)."""
    ends = [i for i in (text.find(s) for s in stop_strings) if i >= 0]
    return text[: min(ends)] if ends else text


@functools.lru_cache(maxsize=8)
def _for_tokenizer(cls, stop_strings: tuple, tokenizer, vocab_size: int) -> StopStrings:
    from .compat import token_bytes

    return cls(stop_strings, token_bytes(tokenizer, vocab_size))
