"""`ecmh-benchmarks run ...` samples and grades a task; `ecmh-benchmarks report DIR` summarises results;
`ecmh-benchmarks regrade DIR` grades stored completions again (after a grader changes).

`ecmh-benchmarks` is installed with ecmh and works from any folder; in a checkout, `python -m benchmarks`
from the repository root is the same program."""

EXAMPLES = """examples:
  ecmh-benchmarks run --task gsm8k --method all --limit 20 --seeds 0,1 --max-new-tokens 256 --out runs/smol
  ecmh-benchmarks run --task math500 --method ecmh,low_temp --limit 50                 # MATH500 from the hub
  ecmh-benchmarks run --task math500 --method ecmh,low_temp --limit 50 --data math500.json  # ... or a local copy
  ecmh-benchmarks run --task humaneval --method all --model qwen2.5-coder-0.5b-instruct --no-chat --shard 0/2
  ecmh-benchmarks report runs/smol
  ecmh-benchmarks regrade runs/smol
"""

import argparse
import shlex
import sys
from pathlib import Path

from ecmh.checks import check_int, check_number
from ecmh.commandline import ArgumentParser
from ecmh.mh import SamplerConfig
from ecmh.options import specs

from . import plugin_methods
from .help import HelpFormatter
from .methods import RUN_OPTIONS, SELECTORS, SMC_PARTICLES, RunSettings
from .progress import PROG, say
from .ray_sweep import SweepFailed
from .registry import METHODS
from .results_file import FileInUse
from .sweep import BACKENDS
from .run import RunInterrupted
from .tasks import TASK_NAMES

DEFAULTS = RunSettings()
# `run --quick`: a first try sized for a CPU (an ECMH sample decodes about 700 tokens: a minute or two on 2 cores)
QUICK = {"limit": 2, "max_new_tokens": 128, "mcmc_steps": 2, "particles": 8}


def _shard(text: str) -> tuple:
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard must look like 0/4 (this engine's index / engines), got {text!r}")
    if not 0 <= index < count:
        raise argparse.ArgumentTypeError(f"--shard {text}: the index must be in [0, {count})")
    return index, count


def _seeds(text: str) -> list:
    try:
        return [int(seed) for seed in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds must be comma-separated integers like 0,1,2, got {text!r}")


def _parser(quick: bool = False) -> ArgumentParser:
    """The command line; with `quick`, `run`'s defaults are `QUICK`'s where it sets them."""
    plugin_methods.register()
    parser = ArgumentParser(prog=PROG, description=__doc__, epilog=EXAMPLES, formatter_class=HelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="sample and grade a task with one or more methods (resumable)",
                              formatter_class=HelpFormatter)
    run.add_argument("--task", required=True, choices=TASK_NAMES, help="the problems to sample and grade")
    run.add_argument("--method", required=True,
                     help=f"comma-separated: {', '.join(METHODS)}, or all (a method whose budget is another's runs "
                          "that one too, first)")
    run.add_argument("--model", default="smollm2-135m-instruct", help="embedded name, hub id or local path")
    run.add_argument("--limit", type=int, default=None, help="only the first N problems (N >= 1; default: all)")
    run.add_argument("--quick", action="store_true",
                     help="a first try sized for a CPU: " + ", ".join(f"--{name.replace('_', '-')} {value}"
                                                                      for name, value in QUICK.items())
                          + ", where not given (the defaults are the papers' settings, hours per sample on a CPU)")
    run.add_argument("--seeds", type=_seeds, default="0", help="comma-separated run seeds, each >= 0")
    run.add_argument("--out", default=None, help="results folder (default: ecmh-results/<model>)")
    run.add_argument("--data", default=None,
                     help="the task's data as a JSON/JSONL/CSV/parquet file (default: the packaged copy, else the hub)")
    for spec in specs(SamplerConfig):
        if spec.name in RUN_OPTIONS:
            kind = dict(action=argparse.BooleanOptionalAction) if spec.type is bool else dict(type=spec.type)
            run.add_argument(spec.flag, default=getattr(DEFAULTS, spec.name), help=f"MH methods: {spec.help}", **kind)
    run.add_argument("--max-new-tokens", type=int, default=DEFAULTS.max_new_tokens, help="tokens per answer at most")
    run.add_argument("--particles", type=int, default=SMC_PARTICLES,
                     help="SMC methods' particles per prompt (the default is the entropy-cut paper's)")
    run.add_argument("--batch-size", type=int, default=8, help="problems per sampler call")
    run.add_argument("--no-chat", action="store_true", help="do not apply the model's chat template")
    run.add_argument("--stop-string", action="append", dest="stop_strings", metavar="TEXT",
                     help="end each answer at the first occurrence of TEXT, exactly (repeatable); default with "
                          "--no-chat: the task's own (HumanEval: its five), else none")
    run.add_argument("--no-stop-strings", action="store_true", help="end answers at EOS or the length limit only")
    run.add_argument("--select", default="log_p", choices=SELECTORS,
                     help="best-of-N: the draw kept (every selector's pick is graded and recorded)")
    run.add_argument("--shard", type=_shard, default=None, help="i/n: this engine takes every n-th problem from i")
    run.add_argument("--dtype", default=None, help="weights dtype, e.g. bfloat16 or float32 (default: the backend's)")
    run.add_argument("--device", default=None, help="cpu, cuda, ... (transformers backend)")
    run.add_argument("--backend", choices=BACKENDS, default=BACKENDS[0], help="what loads the model")
    run.add_argument("--tensor-parallel-size", type=int, default=1, help="vLLM backend")
    run.add_argument("--pipeline-parallel-size", type=int, default=1, help="vLLM backend")
    run.add_argument("--distributed-executor-backend", default=None, help="vLLM backend: ray or mp")
    run.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                     help="run the units on Ray actors: ADDRESS of a cluster (`ray start --head`; auto: a local one), "
                          "or nothing to start Ray here or join RAY_ADDRESS (needs ecmh[ray])")
    run.add_argument("--ray-actors", type=int, default=None, help="Ray actors (default: one per GPU, else per CPU)")
    run.add_argument("--gpus-per-actor", type=float, default=None,
                     help="GPUs per Ray actor (default on a cluster with GPUs: vLLM's tensor x pipeline parallel size, "
                          "else 1; without GPUs: 0)")
    if quick:
        run.set_defaults(**QUICK)
    report = commands.add_parser("report", help="accuracy, pass@k, costs, McNemar tests and plots of a results folder",
                                 formatter_class=HelpFormatter)
    report.add_argument("directory", help=f"a results folder: the --out of `{PROG} run` (one TASK/METHOD.jsonl "
                                          "per task and method; several runs' folders may sit under it)")
    report.add_argument("--out", default=None, help="where to write the summary (default: the results folder)")
    regrade = commands.add_parser("regrade", help="grade a results folder's stored completions again, in place",
                                  formatter_class=HelpFormatter)
    regrade.add_argument("directory", help=f"a results folder: the --out of `{PROG} run`")
    regrade.add_argument("--task", action="append", choices=TASK_NAMES, help="only this task (repeatable)")
    regrade.add_argument("--data", default=None, help="the task's data, as given to `run` (needs --task)")
    return parser


def _model_spec(args):
    from .sweep import ModelSpec

    vllm_options = (("tensor_parallel_size", args.tensor_parallel_size), ("pipeline_parallel_size", args.pipeline_parallel_size),
                    ("distributed_executor_backend", args.distributed_executor_backend))
    return ModelSpec(args.model, args.backend, args.dtype, args.device, vllm_options if args.backend == "vllm" else ())


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "run" and args.quick:
        args = _parser(quick=True).parse_args(argv)
    if args.command in ("report", "regrade"):
        problem = _not_a_results_folder(args.directory)
        if problem:
            return _error(problem)
    if args.command == "report":
        from .report import main_report

        try:
            report = main_report(args.directory, args.out)
        except ValueError as error:
            return _error(str(error))
        print(report.read_text())
        print(report)
        return 0
    if args.command == "regrade":
        from .regrade import main_regrade

        try:
            print(main_regrade(args.directory, args.task, args.data))
        except (ValueError, FileNotFoundError, FileInUse) as error:
            return _error(str(error))
        return 0
    if args.out is not None and Path(args.out).exists() and not Path(args.out).is_dir():
        return _error(f"--out {args.out} is a file: give a folder for the results (it is created if missing).")
    from .run import run

    from .tasks import TASKS

    stop_strings = () if args.no_stop_strings else tuple(args.stop_strings or ())
    if args.stop_strings is None and not args.no_stop_strings and args.no_chat:
        stop_strings = TASKS[args.task].stop_strings
    try:
        settings = RunSettings(**{name: getattr(args, name) for name in RUN_OPTIONS}, max_new_tokens=args.max_new_tokens,
                               stop_strings=stop_strings, particles=args.particles)
        spec, ray = _model_spec(args), _ray_sweep(args)
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # "Loading weights": stderr keeps the samples' bar only
        out = run(args.task, args.method.split(","), spec.load, model_name=args.model, seeds=args.seeds,
                  out=args.out, limit=args.limit, data=args.data, settings=settings, batch_size=args.batch_size,
                  chat=not args.no_chat, shard=args.shard, select=args.select, ray=ray, spec=spec)
    except (ValueError, TypeError, FileNotFoundError) as error:
        return _error(" ".join(str(error).split()))
    except (SweepFailed, FileInUse) as error:
        return _error(str(error))
    except RunInterrupted as interrupted:
        command = "python -m benchmarks " + shlex.join(sys.argv[1:] if argv is None else argv)
        say(f"{interrupted} ({command})")
        return 130
    print(out)
    return 0


def _not_a_results_folder(directory: str) -> str:
    """Why `directory` cannot be a results folder ("" if it can)."""
    path = Path(directory)
    if not path.exists():
        return f"{directory} does not exist: give the results folder of a run (its --out)."
    if not path.is_dir():
        return f"{directory} is a file: give the results folder of a run (its --out), not one of its files."
    return ""


def _ray_sweep(args):
    """`--ray`'s options, checked before anything loads (None without `--ray`)."""
    if args.ray is None:
        return None
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        raise ValueError('--ray needs Ray: pip install "ecmh[ray]" (or pip install ray).')
    from .ray_sweep import RaySweep

    if args.ray_actors is not None:
        check_int("--ray-actors", args.ray_actors, 1)
    if args.gpus_per_actor is not None:
        check_number("--gpus-per-actor", args.gpus_per_actor, minimum=0)
    return RaySweep(_model_spec(args), address=None if args.ray == "local" else args.ray, actors=args.ray_actors,
                    gpus_per_actor=args.gpus_per_actor)


def _error(message: str) -> int:
    say(f"error: {message}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
