"""Where an answer ends: the terminal rule, in one place.

An answer ends at the first token that is an EOS token or completes one of the stop strings in the
answer's text (the kept prefix included, the prompt not), or at the length cap. `ecmh.generate` builds
one `Terminal` per call; the sampler and every backend ask it, and no other copy of the rule exists.
It is part of the target: `p^alpha` is over answers that end at their first terminal event
(README, "Stop strings are exact").

Three views of the same rule, for the three ways the answer is held:
- `ends(tokens, length)`: whole answers in tensors (the sampler's state);
- `window(answer, start)` and `step(window, token)`: a decoder that appends one token per row and step
  keeps the last few tokens of each answer and learns, per token, whether it ends the answer;
- `first_end(ids, start)`: a host-side list of token ids (an engine that returns whole proposals).
"""

from typing import NamedTuple, Optional, Sequence

import torch

from .stopping import StopStrings


class Window(NamedTuple):
    """Per row, the last tokens of the answer that a stop string can still span (empty without stop strings)."""

    tokens: torch.Tensor  # [R, W] long
    valid: torch.Tensor  # [R, W] bool: which of them exist


class Terminal:
    """EOS tokens, stop strings and the length cap of one generation.

    Args:
        eos_token_ids: the EOS token ids (empty: never end early at a token).
        stop_strings: the stop strings' tables (`ecmh.stopping.StopStrings`, on `device`), or None.
        max_new_tokens: the cap on an answer's length.
        device: where the tensors live.

    Example:
        >>> terminal = Terminal((2,), None, max_new_tokens=4, device="cpu")
        >>> terminal.ends(torch.tensor([[0, 2, 0], [1, 1, 0]]), torch.tensor([2, 2])).tolist()
        [True, False]
    """

    def __init__(self, eos_token_ids: Sequence[int], stop_strings: Optional[StopStrings], max_new_tokens: int, device):
        self.eos_token_ids = tuple(int(t) for t in eos_token_ids)
        self.eos = torch.tensor(self.eos_token_ids, dtype=torch.long, device=device)
        self.stop_strings = stop_strings
        self.max_new_tokens = max_new_tokens

    def ends(self, tokens: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
        """Rows whose answer `tokens[r, :length[r]]` is non-empty and ends in a terminal event (`[R]` bool)."""
        last = tokens.gather(1, (length - 1).clamp_min(0)[:, None]).squeeze(1)
        terminal = torch.isin(last, self.eos)
        if self.stop_strings is not None:
            terminal = terminal | self.stop_strings.ends(*self.stop_strings.window(tokens, length))
        return (length > 0) & terminal

    def window(self, answer: torch.Tensor, start: torch.Tensor) -> Window:
        """The window of answers `answer[r, :start[r]]`, for a decoder that appends from `start` on."""
        if self.stop_strings is None:
            empty = answer[:, :0]
            return Window(empty, empty.bool())
        return Window(*self.stop_strings.window(answer, start))

    def step(self, window: Window, token: torch.Tensor) -> tuple[Window, torch.Tensor]:
        """Append `token` (`[R]`) to each row's answer: the new window, and the rows it ends (`[R]` bool)."""
        ended = torch.isin(token, self.eos)
        if self.stop_strings is None:
            return window, ended
        window = Window(torch.cat([window.tokens[:, 1:], token[:, None]], dim=1),
                        torch.cat([window.valid[:, 1:], torch.ones_like(window.valid[:, :1])], dim=1))
        return window, ended | self.stop_strings.ends(*window)

    def first_end(self, ids: Sequence[int], start: int = 0) -> Optional[int]:
        """The first position `t >= start` of the answer `ids` (a host-side list) whose token ends it, or None
        (no terminal event ends the answer before `start`)."""
        eos = set(self.eos_token_ids)
        at_eos = next((t for t in range(start, len(ids)) if ids[t] in eos), None)
        at_stop = self.stop_strings.first_end(ids, start) if self.stop_strings is not None else None
        found = [t for t in (at_eos, at_stop) if t is not None]
        return min(found) if found else None
