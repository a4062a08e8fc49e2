"""Sweeps on a Ray cluster: `python -m benchmarks run ... --ray [ADDRESS]`.

The run's units (`sweep.plan`: one batch of problems for one method and seed) go to Ray actors. Each actor
loads the model once (`sweep.ModelSpec.load`: a transformers model on its GPU, or a vLLM engine, tensor
parallel inside the actor where asked) and samples and grades units (`sweep.UnitSampler`). The driver keeps the
one results folder: it hands units to idle actors (a unit whose budget is another method's decoded tokens only
once those rows are written) and writes every row itself, so the folder stays one resumable, append-only set with
no duplicate rows.

Faults. An actor that dies in the middle of a unit (killed, out of memory, its node gone) is replaced and
the unit given to the next idle actor, up to `retries` times; a unit whose sampling raises is reported with
its error while the others go on. Either way the run ends with `SweepFailed` listing the units it could not
finish, after writing every row it could; running the same command again does only what is missing. A driver
killed outright loses the units in flight only (their rows are written when they finish).

Ray is optional (`pip install "ecmh[ray]"`); nothing imports it unless `--ray` is given.
"""

from dataclasses import dataclass
from typing import Callable, Optional

from .sweep import ModelSpec, Results, Sweep, Unit, UnitSampler


@dataclass(frozen=True)
class RaySweep:
    """Where and how a sweep runs on Ray.

    Args:
        model: how each actor loads the model.
        address: the cluster (`ray start --head` prints it; "auto" finds a local one); None starts Ray here,
            or joins the cluster named by `RAY_ADDRESS`.
        actors: how many actors; None: as many as the cluster's GPUs allow (`gpus_per_actor` each), or its
            CPUs without GPUs.
        gpus_per_actor: GPUs reserved per actor; None: on a cluster with GPUs, the model's tensor x pipeline
            parallel size on vLLM, else 1; without GPUs, 0.
        cpus_per_actor: CPUs reserved per actor.
        retries: how often a unit whose actor died is given to another actor before it counts as failed.
        on_unit_started: called as `on_unit_started(actor, unit)` in the driver when a unit is handed out.
    """

    model: ModelSpec
    address: Optional[str] = None
    actors: Optional[int] = None
    gpus_per_actor: Optional[float] = None
    cpus_per_actor: float = 1.0
    retries: int = 2
    on_unit_started: Optional[Callable] = None


class SweepFailed(RuntimeError):
    """Some units could not be finished; every other row was written."""


class _Worker:
    """A Ray actor: one loaded model, sampling units."""

    def __init__(self, sweep: Sweep, model: ModelSpec):
        self.sampler = UnitSampler(sweep, *model.load())

    def rows(self, unit: Unit, budgets: Optional[list]) -> list[dict]:
        return self.sampler.rows(unit, budgets)


def _gpus_per_actor(ray, options: RaySweep) -> float:
    if options.gpus_per_actor is not None:
        return options.gpus_per_actor
    if not ray.cluster_resources().get("GPU", 0):
        return 0.0
    parallel = dict(options.model.vllm_options)
    return float(parallel.get("tensor_parallel_size", 1) * parallel.get("pipeline_parallel_size", 1))


def _actor_count(ray, options: RaySweep, gpus: float) -> int:
    if options.actors is not None:
        return options.actors
    resources = ray.cluster_resources()
    if gpus > 0:
        return max(1, int(resources.get("GPU", 0) // gpus))
    return max(1, int(resources.get("CPU", 1) // options.cpus_per_actor))


def _describe(unit: Unit) -> str:
    ids = [p["id"] for p in unit.problems]
    return f"{unit.method} seed {unit.seed} problems {ids[0]}..{ids[-1]}" if len(ids) > 1 else \
        f"{unit.method} seed {unit.seed} problem {ids[0]}"


def run_on_ray(options: RaySweep, sweep: Sweep, units: list[Unit], results: Results, bar) -> None:
    """Sample `units` on Ray actors, writing every row through `results` in this process."""
    import ray

    if not ray.is_initialized():
        ray.init(address=options.address, include_dashboard=False, log_to_driver=False)
    gpus = _gpus_per_actor(ray, options)
    worker = ray.remote(num_gpus=gpus, num_cpus=options.cpus_per_actor)(_Worker)
    idle = [worker.remote(sweep, options.model) for _ in range(_actor_count(ray, options, gpus))]
    queue, running, deaths, failures = list(units), {}, {}, []
    try:
        while queue or running:
            for unit in [u for u in queue if results.ready(u)][: len(idle)]:
                queue.remove(unit)
                actor = idle.pop()
                running[actor.rows.remote(unit, results.budgets(unit))] = (actor, unit)
                if options.on_unit_started is not None:
                    options.on_unit_started(actor, unit)
            if not running:  # units whose budget's units failed
                failures += [(u, "the rows its budget comes from are missing") for u in queue]
                break
            [finished], _ = ray.wait(list(running), num_returns=1)
            actor, unit = running.pop(finished)
            try:
                rows = ray.get(finished)
            except ray.exceptions.RayActorError as error:  # the actor died: replace it, retry the unit
                idle.append(worker.remote(sweep, options.model))
                key = (unit.seed, unit.method, unit.problems[0]["id"])
                deaths[key] = deaths.get(key, 0) + 1
                if deaths[key] > options.retries:
                    failures.append((unit, f"its actor died {deaths[key]} times ({type(error).__name__})"))
                else:
                    queue.insert(0, unit)
                continue
            except ray.exceptions.RayTaskError as error:
                failures.append((unit, str(error.cause if error.cause is not None else error).strip().splitlines()[-1]))
                idle.append(actor)
                continue
            bar.set_postfix_str(unit.label)
            bar.update(results.write(rows))
            idle.append(actor)
    finally:
        for actor in idle + [actor for actor, _ in running.values()]:
            ray.kill(actor)
    if failures:
        lines = "\n".join(f"- {_describe(unit)}: {why}" for unit, why in failures)
        raise SweepFailed(f"{len(failures)} unit(s) could not be finished (every other row is written; run the same "
                          f"command again to retry them):\n{lines}")
