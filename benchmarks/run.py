"""`python -m benchmarks run`: sample and grade every problem of a task with each method, resumably.

A run is a list of units (`sweep.plan`): for each seed and method, the task's problems cut into batches of
`--batch-size`, the same batches whenever the run is resumed, so a unit samples the same problems with the
same seed however often it is interrupted. Each unit's answers are graded and appended to the results file as
soon as the unit is done (`results_file.py`; a unit redone after an interruption writes only its missing rows):
the sampler runs a unit's chains in lock-step, block by block, so its answers are final together.
Methods run in the order given, except that a method whose budget is another method's decoded tokens
(`budget_from`, `registry.py`) runs after that method, which runs too (saying so) when not asked for. A sample's
`seconds` is its unit's wall time divided by the unit's problems. Units run one after another on the loaded model,
or on Ray actors (`--ray`, `ray_sweep.py`), this process still the one writer.

Everything that can refuse a run (unknown method, missing data, bad `--limit` or seeds, a results file another
run holds or made with other settings) does so before the model loads; the model loads only when something is
left to sample.
"""

import subprocess
from pathlib import Path
from typing import Callable, Optional, Sequence

from tqdm.auto import tqdm

from ecmh.checks import check_int, check_seed

from .methods import SELECTORS, RunSettings
from .progress import announce, decoding_steps, say, warn_if_long_on_cpu, written
from .registry import METHODS
from .sweep import ModelSpec, Results, Sweep, UnitSampler, plan
from .tasks import get_task


def order_methods(names: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """The methods to run, `all` expanded, each once, each after the method its budget comes from; and, for each
    method run only because another takes its budget from it, that other method."""
    expanded, needed_by = [], {}
    for name in names:
        for method in METHODS if name == "all" else [name]:
            if method not in METHODS:
                raise ValueError(f"Unknown --method {method!r}: use one of {', '.join(METHODS)} or all.")
            if method not in expanded:
                expanded.append(method)
    for method in list(expanded):
        source = METHODS[method].budget_from
        while source is not None and source not in expanded:
            expanded.append(source)
            needed_by[source] = method
            source = METHODS[source].budget_from
    return sorted(expanded, key=_budget_depth), needed_by


def _budget_depth(method: str) -> int:
    source = METHODS[method].budget_from
    return 0 if source is None else 1 + _budget_depth(source)


def model_slug(model: str) -> str:
    return Path(str(model).rstrip("/")).name.replace("/", "--")


class RunInterrupted(KeyboardInterrupt):
    """ctrl-C during a run: what was kept and what was lost."""

    def __init__(self, out: Path, written: int, stored: int, in_flight: int):
        super().__init__(f"interrupted: {written} new row(s) kept ({stored} in {out}); the {in_flight} sample(s) in "
                         "flight were lost; the same command resumes")
        self.out, self.written, self.stored, self.in_flight = out, written, stored, in_flight


def run(
    task_name: str,
    method_names: Sequence[str],
    load: Optional[Callable[[], tuple]],
    *,
    model_name: str,
    seeds: Sequence[int] = (0,),
    out: Optional[Path] = None,
    limit: Optional[int] = None,
    data: Optional[str] = None,
    settings: RunSettings = RunSettings(),
    batch_size: int = 8,
    chat: bool = True,
    shard: Optional[tuple] = None,
    select: str = "log_p",
    progress: bool = True,
    ray: Optional["RaySweep"] = None,
    spec: Optional[ModelSpec] = None,
) -> Path:
    """Run the benchmark and return the results folder (see the module docstring). `load()` returns the model (or
    `vllm.LLM`) and its tokenizer; it is called once every check has passed and only if something is left to sample.
    With `ray` (`benchmarks.ray_sweep.RaySweep`) `load` is not called (None will do): Ray actors load their own.
    `spec`, how the model loads, is what the run says of the model before loading it (`progress.py`)."""
    check_int("--batch-size", batch_size, 1)
    if limit is not None:
        check_int("--limit", limit, 1)
    for seed in seeds:
        check_seed("--seeds", seed)
    if select not in SELECTORS:
        raise ValueError(f"Unknown --select {select!r}: use one of {', '.join(SELECTORS)}.")
    order, needed_by = order_methods(method_names)
    task = get_task(task_name, data=data)
    out = Path(out) if out is not None else Path("ecmh-results") / model_slug(model_name)
    sweep = Sweep(task.name, data, model_name, settings, chat, select, library_version())
    with Results(out, sweep, order, shard) as results:
        done = results.done
        notes = {source: f"{method}'s budget" for source, method in needed_by.items()}
        units = plan(task, order, seeds, limit, shard, batch_size, done, sweep, notes)
        for source, method in needed_by.items():
            say(f"{method} spends, per problem, what {source} decoded on it: {source} runs too, first (on its own: "
                f"--method {source})")
        todo = sum(key not in done for unit in units for key in unit.keys(sweep))  # a resumed unit's stored rows are not left
        if not units:
            written(0, len(done), out)
            return out
        if spec is not None and spec.device_type == "cpu":
            warn_if_long_on_cpu(settings.max_new_tokens, settings.resolved_block_size, settings.mcmc_steps)
        problems = len({problem["id"] for unit in units for problem in unit.problems})
        described = spec.describe() if spec is not None else model_name
        announce(task.name, problems, seeds, order, todo, len(done), described + (" on Ray actors" if ray else ""), out)
        try:
            sampler = None if ray is not None else UnitSampler(sweep, *load())
            with tqdm(total=todo, desc=f"{task.name}", unit="sample", disable=not progress) as bar:
                if ray is not None:
                    from .ray_sweep import run_on_ray

                    run_on_ray(ray, sweep, units, results, bar)
                for unit in units if ray is None else ():
                    bar.set_postfix_str(unit.label)
                    with decoding_steps(sampler.model, bar, unit.label):
                        rows = sampler.rows(unit, results.budgets(unit))
                    bar.update(results.write(rows))
        except KeyboardInterrupt:
            raise RunInterrupted(out, results.written, len(results.done), max(0, todo - results.written)) from None
        written(results.written, len(results.done), out)
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
