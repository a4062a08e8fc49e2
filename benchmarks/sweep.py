"""What a run is made of: how the model loads (`ModelSpec`), what its units share (`Sweep`), the units themselves
(`Unit`, `plan`), the sampling and grading of a unit on a loaded model (`UnitSampler`: in the runner's process, or
in a Ray actor) and the run's results files (`Results`: the one writer). `run.py` runs units one after another,
`ray_sweep.py` on Ray actors; both read this module, neither the other.
"""

import contextlib
import itertools
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Optional, Sequence

from ecmh.backends.vllm import is_vllm_engine
from ecmh.stopping import text_before_stop_string

from . import methods, plugin_methods
from .registry import METHODS
from .results_file import ResultsFile, row_key
from .tasks import get_task

# `--backend`: what loads the model (`ecmh.load_model`, `ecmh.load_vllm`); `ecmh.generate` then runs it on the first
# runtime that accepts it (`ecmh.backends.factory`, an installed package's `ecmh.backends` entry points included)
BACKENDS = ("transformers", "vllm")


@dataclass(frozen=True)
class ModelSpec:
    """How to load the model: what a Ray actor needs to load its own copy."""

    name: str
    backend: str = BACKENDS[0]  # one of BACKENDS
    dtype: Optional[str] = None
    device: Optional[str] = None  # transformers backend
    vllm_options: tuple = ()  # (name, value) pairs for `ecmh.load_vllm` (parallel sizes, executor backend)

    @property
    def device_type(self) -> str:
        """Where the transformers backend puts the model ("cpu", "cuda", ...; "vllm": the engine decides)."""
        from ecmh.models import check_device, default_device

        return "vllm" if self.backend == "vllm" else check_device(self.device or default_device()).type

    def describe(self) -> str:
        """The model, backend, device and dtype, in words."""
        where = "" if self.backend == "vllm" else f" on {self.device or self.device_type}"
        dtype = self.dtype or "the checkpoint's dtype"
        return f"{self.name} ({self.backend} backend{where}, {dtype})"

    def load(self):
        """The model (or `vllm.LLM`) and its tokenizer."""
        import ecmh

        if self.backend == "vllm":
            llm = ecmh.load_vllm(self.name, **dict(self.vllm_options), **({"dtype": self.dtype} if self.dtype else {}))
            return llm, llm.get_tokenizer()
        return ecmh.load_model(self.name, dtype=self.dtype, device=self.device)


@dataclass(frozen=True)
class Sweep:
    """What every unit of a run shares."""

    task_name: str
    data: Optional[str]
    model_name: str
    settings: methods.RunSettings
    chat: bool
    select: str
    version: str


class Unit(NamedTuple):
    """One sampler call: a batch of problems for one method and seed. Batches are cut from the whole problem
    list, so a unit samples the same problems with the same seed however often the run is resumed."""

    seed: int
    method: str
    problems: tuple  # problem dicts
    note: str = ""  # why it runs, where the run was not asked for its method

    def keys(self, sweep: Sweep, method: Optional[str] = None) -> list[tuple]:
        return [(sweep.model_name, sweep.task_name, method or self.method, self.seed, p["id"]) for p in self.problems]

    @property
    def label(self) -> str:
        """What the progress bar says runs."""
        return f"{self.method} seed {self.seed}" + (f" ({self.note})" if self.note else "")


def plan(task, order: Sequence[str], seeds: Sequence[int], limit: Optional[int], shard: Optional[tuple],
         batch_size: int, done: set, sweep: Sweep, notes: Optional[dict] = None) -> list[Unit]:
    """Every unit with a sample not in `done` (row keys), in run order: seed by seed, method by method (`notes`:
    why a method runs, for the ones not asked for)."""
    units = []
    for seed in seeds:
        problems = list(itertools.islice(task.problems(seed=seed), limit))
        if shard:
            problems = problems[shard[0] :: shard[1]]
        for method in order:
            for batch in _chunks(problems, batch_size):
                unit = Unit(seed, method, tuple(batch), (notes or {}).get(method, ""))
                if not done.issuperset(unit.keys(sweep)):
                    units.append(unit)
    return units


class UnitSampler:
    """Samples and grades units on one loaded model (in the driver, or in a Ray actor)."""

    def __init__(self, sweep: Sweep, model, tokenizer):
        plugin_methods.register()  # a Ray actor's process has not read the runner's command line
        self.sweep, self.model, self.tokenizer = sweep, model, tokenizer
        self.task = get_task(sweep.task_name, data=sweep.data)
        self.backend = "vllm" if is_vllm_engine(model) else "transformers"

    def _text(self, tokens) -> str:
        return text_before_stop_string(self.tokenizer.decode(tokens, skip_special_tokens=True),
                                       self.sweep.settings.stop_strings)

    def rows(self, unit: Unit, budgets: Optional[list] = None) -> list[dict]:
        """One graded row per problem of `unit` (`budgets`: the problems' budgets, for a method with `budget_from`)."""
        import ecmh

        sweep, task = self.sweep, self.task
        ids = [p["id"] for p in unit.problems]
        encoded = ecmh.encode_prompts(self.tokenizer, [p["prompt"] for p in unit.problems], chat=sweep.chat)
        start = time.perf_counter()
        answers = METHODS[unit.method].sample(self.model, encoded.input_ids, encoded.attention_mask, sweep.settings,
                                             methods.stable_seed(unit.seed, unit.method, *ids), self.tokenizer, budgets)
        seconds = (time.perf_counter() - start) / len(ids)
        rows = []
        for problem, answer in zip(unit.problems, answers):
            completion, tokens, log_p, selectors = self._text(answer.tokens), answer.tokens, answer.log_p, {}
            if answer.candidates:
                chosen, selectors = _best_of_n_choices(task, problem, [self._text(c.tokens) for c in answer.candidates],
                                                       answer.candidates, sweep.select)
                completion, tokens, log_p = chosen
            rows.append({
                "model": sweep.model_name, "task": task.name, "method": unit.method, "seed": unit.seed,
                "problem_id": problem["id"], "prompt": problem["prompt"], "completion": completion,
                "answer": problem.get("answer"), **task.verdict(problem, completion),
                "tokens_decoded": answer.cost.tokens_decoded, "tokens_forwarded": answer.cost.tokens_forwarded,
                "sequential_passes": answer.cost.sequential_passes, "seconds": seconds,
                "acceptance_rate": answer.acceptance_rate, "acceptance_by_block": answer.acceptance_by_block,
                "log_p": log_p, "completion_tokens": len(tokens), "ecmh_version": sweep.version, "backend": self.backend,
                **selectors,
            })
        return rows


class Results:
    """The run's results files, one per method, each locked while the run holds it: the run's single writer.
    Use it as a context manager (the locks are released on leaving); opening refuses a file another run holds or
    whose rows were made with other settings (`ResultsFile`)."""

    def __init__(self, out: Path, sweep: Sweep, order: Sequence[str], shard: Optional[tuple]):
        self.sweep = sweep
        self.written = 0  # rows appended by this run
        extra = {"chat": sweep.chat, **({"select": sweep.select} if sweep.select != "log_p" else {})}
        self.files = {}
        try:
            for m in order:
                self.files[m] = ResultsFile(out, sweep.task_name, m, {**METHODS[m].config(sweep.settings), **extra}, shard)
        except BaseException:
            self.close()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def close(self) -> None:
        for results_file in self.files.values():
            results_file.close()

    @property
    def done(self) -> set:
        return {key for f in self.files.values() for key in f.done}

    def budgets(self, unit: Unit) -> Optional[list]:
        """Each problem's budget, the decoded tokens of the method it is matched to (None for a method without one,
        or while some are missing)."""
        source = METHODS[unit.method].budget_from
        if source is None:
            return None
        source_rows = self.files[source].done
        keys = unit.keys(self.sweep, source)
        return [source_rows[key]["tokens_decoded"] for key in keys] if all(k in source_rows for k in keys) else None

    def ready(self, unit: Unit) -> bool:
        return METHODS[unit.method].budget_from is None or self.budgets(unit) is not None

    def write(self, rows: list[dict]) -> int:
        """Append the rows not yet stored (a unit redone after an interruption repeats its stored ones); a ctrl-C
        waits until they are stored and counted, so what the interruption reports is what the files hold."""
        new = [row for row in rows if row_key(row) not in self.files[row["method"]].done]
        with ctrl_c_deferred():
            for row in new:
                self.files[row["method"]].append(row)
            self.written += len(new)
        return len(new)


@contextlib.contextmanager
def ctrl_c_deferred():
    """A ctrl-C during the block is raised when it ends (in the main thread, where Python handles signals)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    previous = signal.signal(signal.SIGINT, lambda number, frame: caught.append(number))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


def _best_of_n_choices(task, problem: dict, texts: list[str], candidates: list, select: str):
    """The draw `select` picks as (completion, tokens, log p), and the row fields that say what every selector
    would have picked: `selected_by`, `draws`, `by_selector` ({selector: {"correct", "draw"}})."""
    extracted = [task.extract(problem, t) for t in texts]
    picks = {name: methods.choose(candidates, name, extracted) for name in methods.SELECTORS}
    verdicts = {i: bool(task.grade(problem, texts[i])) for i in set(picks.values())}
    chosen = picks[select]
    return (texts[chosen], candidates[chosen].tokens, candidates[chosen].log_p), {
        "selected_by": select, "draws": len(candidates),
        "by_selector": {name: {"correct": verdicts[i], "draw": i} for name, i in picks.items()},
    }


def _chunks(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]

