"""The step history of one `ecmh.generate` call: every settled proposal, as tensors.

`ecmh.generate(..., record_history=True)` returns it as `out.history`; `HistoryRecorder` is the
`on_step` callback behind it, for callers who drive the sampler themselves. Each entry is one
row's proposal settling: a block extension (kept without MH) or an MH step, with the cut, the
log acceptance ratio term by term and the uniform it was compared with, so
`accepted == (log_uniform < target + proposal + cut_term)` for every MH entry of a one-candidate run; with `tries=K`
(multiple-try ECMH) `history.tries` has every candidate's weight and the one selected, and
`accepted == (log_uniform < log_ratio)` with `log_ratio` the multiple-try ratio of those weights.
"""

from typing import NamedTuple, Optional

import torch

from .kernel import Info as StepInfo
from .multiple_try import Tries


class History(NamedTuple):
    """One entry per settled proposal `[E]`, in the order they settled (by `step`, then batch row)."""

    step: torch.Tensor  # long: the decoding step's index among those where proposals finished
    row: torch.Tensor  # long: the row in the returned batch
    block: torch.Tensor  # long: 0-based block
    extension: torch.Tensor  # bool: a block extension (kept without MH) rather than an MH step
    cut: torch.Tensor  # long: where the proposal starts (for an extension, the answer's length)
    proposal_length: torch.Tensor  # long
    accepted: torch.Tensor  # bool (extensions count as accepted)
    rejected_early: torch.Tensor  # bool: MH steps rejected by exact early rejection (decoding stopped there if enabled)
    log_ratio: torch.Tensor  # float: target + proposal + cut_term
    target: torch.Tensor  # float: alpha * (log p(y'_{>=m}) - log p(y_{>=m}))
    proposal: torch.Tensor  # float: log q(y_{>=m} | y_<m) - log q(y'_{>=m} | y_<m)
    cut_term: torch.Tensor  # float: log w_{y'}(m) - log w_y(m)
    log_uniform: torch.Tensor  # float: accepted iff log_uniform < log_ratio
    cut_log_prob: torch.Tensor  # float: MH steps: log w_y(m) under the state before
    cut_jump: torch.Tensor  # float: MH steps: the entropy jump at the cut
    cut_jump_rank: torch.Tensor  # long: MH steps: positions of the state before with a larger jump
    previous_length: torch.Tensor  # long: the answer's length before the step
    log_p: torch.Tensor  # float: the answer's log p after the step
    length: torch.Tensor  # long: the answer's length after the step
    tries: Optional[Tries] = None  # tries=K > 1: per entry every candidate's log W and length, the one selected;
    # log_ratio is then the multiple-try ratio and target/proposal/cut_term are the selected candidate's own terms

    @property
    def is_mh(self) -> torch.Tensor:
        return ~self.extension


class HistoryRecorder:
    """An `on_step` callback that keeps every `ecmh.Info` on the device; `history()` gathers them (one host sync).

    Example:
        >>> import ecmh
        >>> recorder = HistoryRecorder()
        >>> # ecmh.generate(model, ids, on_step=recorder); recorder.history().accepted
    """

    def __init__(self):
        self._infos: list[tuple[StepInfo, torch.Tensor, torch.Tensor]] = []

    def __call__(self, info) -> None:
        """`info`: an `ecmh.Info` (the kernel's step, and each entry's row and block)."""
        self._infos.append(info)

    def history(self) -> History:
        if not self._infos:
            raise ValueError("No proposal has settled yet: run `ecmh.generate(..., on_step=recorder)` first.")
        if self._infos[0].step.diagnostics is None:
            raise ValueError("These steps carry no diagnostics: record them with `ecmh.generate(..., record_history=True)` "
                             "or `on_step=HistoryRecorder()`, which ask the sampler for them.")
        columns = {name: [] for name in History._fields if name != "tries"}
        for step, (info, row, block) in enumerate(self._infos):
            terms = info.ratio_terms
            values = dict(info._asdict(), **info.diagnostics._asdict(), step=torch.full_like(info.cut, step), row=row,
                          block=block, target=terms.target, proposal=terms.proposal, cut_term=terms.cut)
            for name in columns:
                columns[name].append(values[name][info.finished])
        history = History(**{name: torch.cat(values) for name, values in columns.items()})
        if self._infos[0].step.tries is None:
            return history
        return history._replace(tries=Tries(*(torch.cat([getattr(info.step.tries, name)[info.step.finished]
                                                         for info in self._infos]) for name in Tries._fields)))
