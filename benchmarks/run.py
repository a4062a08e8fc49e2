"""`python -m benchmarks run`: sample and grade every problem of a task with each method, resumably.

A run is a list of units (`plan`): for each seed and method, the task's problems cut into batches of
`--batch-size`, the same batches whenever the run is resumed, so a unit samples the same problems with the
same seed however often it is interrupted. Each unit's answers are graded and appended to the results file as
soon as the unit is done (`results_file.py`; a unit redone after an interruption writes only its missing rows):
the sampler runs a unit's chains in lock-step, block by block, so its answers are final together.
Methods run in the order given, except that best-of-N runs after `ecmh`: its budget per problem
is the decoded tokens of the same problem and seed under ECMH. A sample's `seconds` is its
unit's wall time divided by the unit's problems. Units run one after another on the loaded model, or on Ray
actors (`--ray`, `ray_sweep.py`), the driver still the one writer.
"""

import contextlib
import itertools
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Optional, Sequence

from tqdm.auto import tqdm

from ecmh.backends.vllm import is_vllm_engine
from ecmh.checks import check_int
from ecmh.stopping import text_before_stop_string

from . import methods
from .results_file import ResultsFile, row_key
from .tasks import get_task


def order_methods(names: Sequence[str]) -> list[str]:
    """The methods to run, `all` expanded, each once, best-of-N after `ecmh` (its budget)."""
    expanded = []
    for name in names:
        for method in methods.METHODS if name == "all" else [name]:
            if method not in methods.METHODS:
                raise ValueError(f"Unknown --method {method!r}: use one of {', '.join(methods.METHODS)} or all.")
            if method not in expanded:
                expanded.append(method)
    if any(m in methods.BEST_OF_N for m in expanded) and "ecmh" not in expanded:
        expanded.insert(0, "ecmh")
    return sorted(expanded, key=lambda m: m in methods.BEST_OF_N)


def model_slug(model: str) -> str:
    return Path(str(model).rstrip("/")).name.replace("/", "--")


@dataclass(frozen=True)
class ModelSpec:
    """How to load the model: what a Ray actor needs to load its own copy."""

    name: str
    backend: str = "transformers"  # or "vllm"
    dtype: Optional[str] = None
    device: Optional[str] = None  # transformers backend
    vllm_options: tuple = ()  # (name, value) pairs for `ecmh.load_vllm` (parallel sizes, executor backend)

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

    def keys(self, sweep: Sweep, method: Optional[str] = None) -> list[tuple]:
        return [(sweep.model_name, sweep.task_name, method or self.method, self.seed, p["id"]) for p in self.problems]


def plan(task, order: Sequence[str], seeds: Sequence[int], limit: Optional[int], shard: Optional[tuple],
         batch_size: int, done: set, sweep: Sweep) -> list[Unit]:
    """Every unit with a sample not in `done` (row keys), in run order: seed by seed, method by method."""
    units = []
    for seed in seeds:
        problems = list(itertools.islice(task.problems(seed=seed), limit))
        if shard:
            problems = problems[shard[0] :: shard[1]]
        for method in order:
            for batch in _chunks(problems, batch_size):
                unit = Unit(seed, method, tuple(batch))
                if not done.issuperset(unit.keys(sweep)):
                    units.append(unit)
    return units


class UnitSampler:
    """Samples and grades units on one loaded model (in the driver, or in a Ray actor)."""

    def __init__(self, sweep: Sweep, model, tokenizer):
        self.sweep, self.model, self.tokenizer = sweep, model, tokenizer
        self.task = get_task(sweep.task_name, data=sweep.data)
        self.backend = "vllm" if is_vllm_engine(model) else "transformers"

    def _text(self, tokens) -> str:
        return text_before_stop_string(self.tokenizer.decode(tokens, skip_special_tokens=True),
                                       self.sweep.settings.stop_strings)

    def rows(self, unit: Unit, budgets: Optional[list] = None) -> list[dict]:
        """One graded row per problem of `unit` (best-of-N: `budgets`, the problems' ECMH decoded tokens)."""
        import ecmh

        sweep, task = self.sweep, self.task
        ids = [p["id"] for p in unit.problems]
        encoded = ecmh.encode_prompts(self.tokenizer, [p["prompt"] for p in unit.problems], chat=sweep.chat)
        start = time.perf_counter()
        answers = methods.sample(unit.method, self.model, encoded.input_ids, encoded.attention_mask, sweep.settings,
                                 methods.stable_seed(unit.seed, unit.method, *ids), budgets, self.tokenizer)
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
    """The run's results files, one per method: the driver's single writer."""

    def __init__(self, out: Path, sweep: Sweep, order: Sequence[str], shard: Optional[tuple]):
        self.sweep = sweep
        self.written = 0  # rows appended by this run
        extra = {"chat": sweep.chat, **({"select": sweep.select} if sweep.select != "log_p" else {})}
        self.files = {m: ResultsFile(out, sweep.task_name, m, {**sweep.settings.config(m), **extra}, shard)
                      for m in order}

    @property
    def done(self) -> set:
        return {key for f in self.files.values() for key in f.done}

    def budgets(self, unit: Unit) -> Optional[list]:
        """Best-of-N: each problem's ECMH decoded tokens (None for other methods, or while some are missing)."""
        if unit.method not in methods.BEST_OF_N:
            return None
        ecmh_rows = self.files["ecmh"].done
        keys = unit.keys(self.sweep, "ecmh")
        return [ecmh_rows[key]["tokens_decoded"] for key in keys] if all(k in ecmh_rows for k in keys) else None

    def ready(self, unit: Unit) -> bool:
        return unit.method not in methods.BEST_OF_N or self.budgets(unit) is not None

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


class RunInterrupted(KeyboardInterrupt):
    """ctrl-C during a run: what was kept and what was lost."""

    def __init__(self, out: Path, written: int, stored: int, in_flight: int):
        super().__init__(f"interrupted: {written} new row(s) kept ({stored} in {out}); the {in_flight} sample(s) in "
                         "flight were lost; the same command resumes")
        self.out, self.written, self.stored, self.in_flight = out, written, stored, in_flight


def run(
    task_name: str,
    method_names: Sequence[str],
    model,
    tokenizer,
    *,
    model_name: str,
    seeds: Sequence[int] = (0,),
    out: Optional[Path] = None,
    limit: Optional[int] = None,
    data: Optional[str] = None,
    settings: methods.RunSettings = methods.RunSettings(),
    batch_size: int = 8,
    chat: bool = True,
    shard: Optional[tuple] = None,
    select: str = "log_p",
    progress: bool = True,
    ray: Optional["RaySweep"] = None,
) -> Path:
    """Run the benchmark and return the results folder (see the module docstring). With `ray`
    (`benchmarks.ray_sweep.RaySweep`), `model` and `tokenizer` are None: Ray actors load their own."""
    check_int("--batch-size", batch_size, 1)
    task = get_task(task_name, data=data)
    out = Path(out) if out is not None else Path("ecmh-results") / model_slug(model_name)
    if select not in methods.SELECTORS:
        raise ValueError(f"Unknown --select {select!r}: use one of {', '.join(methods.SELECTORS)}.")
    order = order_methods(method_names)
    sweep = Sweep(task.name, data, model_name, settings, chat, select, library_version())
    results = Results(out, sweep, order, shard)
    done = results.done
    units = plan(task, order, seeds, limit, shard, batch_size, done, sweep)
    todo = sum(key not in done for unit in units for key in unit.keys(sweep))  # a resumed unit's stored rows are not left
    bar = tqdm(total=todo, desc=f"{task.name}", unit="sample", disable=not progress)
    try:
        if ray is not None:
            from .ray_sweep import run_on_ray

            run_on_ray(ray, sweep, units, results, bar)
        else:
            sampler = UnitSampler(sweep, model, tokenizer)
            for unit in units:
                bar.set_postfix_str(f"{unit.method} seed {unit.seed}")
                bar.update(results.write(sampler.rows(unit, results.budgets(unit))))
    except KeyboardInterrupt:
        bar.close()
        raise RunInterrupted(out, results.written, len(results.done), max(0, todo - results.written)) from None
    bar.close()
    return out


def library_version() -> str:
    """ecmh's version, with the git commit of the checkout it runs from (`.dirty`: uncommitted code changes;
    results files do not count)."""
    import ecmh

    root = Path(ecmh.__file__).resolve().parents[1]
    if not (root / ".git").exists():  # an installed copy, not a checkout
        return ecmh.__version__
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no", "--",
                                "ecmh", "benchmarks", ":!benchmarks/results"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ecmh.__version__
    return f"{ecmh.__version__}+g{commit}{'.dirty' if dirty else ''}"


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

