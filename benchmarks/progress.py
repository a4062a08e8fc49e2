"""What the benchmark runner says while it works, on stderr (stdout keeps what a script reads), each line starting with
the program's name as argparse's own errors do: the plan before the model loads (`announce`), a warning when answers are
long for a CPU (`warn_if_long_on_cpu`), the decoding steps of the batch in flight on the progress bar
(`decoding_steps`), and what was written with the command that summarises it (`written`)."""

import contextlib
import sys
import time
from pathlib import Path

from ecmh.cost import cpu_time, mh_tokens

PROG = "ecmh-benchmarks"  # `python -m benchmarks` is the same program
LONG_ON_A_CPU = 1024  # --max-new-tokens above which a run on a CPU says how long a sample may take
REFRESH_SECONDS = 1.0  # the bar's count of decoding steps is redrawn at most this often


def say(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)


def announce(task: str, problems: int, seeds, methods, todo: int, stored: int, model: str, out: Path) -> None:
    """What the run will do, said before the model loads."""
    say(f"{task}: {problems} problem(s) x seed(s) {', '.join(map(str, seeds))} x {', '.join(methods)}: {todo} "
        f"sample(s) to draw{f', {stored} stored already' if stored else ''}")
    say(f"results: {out / task}/METHOD.jsonl, a row as each batch is graded")
    say(f"loading {model} ...")


def warn_if_long_on_cpu(max_new_tokens: int, block_size: int, mcmc_steps: int) -> None:
    """Once, when answers of up to `max_new_tokens` make a sample on a CPU take long (`ecmh.cost`)."""
    if max_new_tokens <= LONG_ON_A_CPU:
        return
    tokens = mh_tokens(max_new_tokens, block_size, mcmc_steps)
    say(f"--max-new-tokens {max_new_tokens} on a CPU: an ECMH sample may decode up to about {tokens:,} tokens, "
        f"{cpu_time(tokens)} at SmolLM2-135M's speed on 2 cores (a plain one up to {cpu_time(max_new_tokens)}); "
        f"--quick is a first try sized for a CPU")


@contextlib.contextmanager
def decoding_steps(model, bar, label: str):
    """While the batch `label` samples, the bar counts its decoding steps (the model's forward passes, one token per
    running answer each), so that a long sample is seen to move; a model that is not a torch module (a vLLM engine)
    shows the label only."""
    hook = getattr(model, "register_forward_hook", None)
    if hook is None:
        yield
        return
    steps, shown = 0, time.monotonic()

    def count(*args):
        nonlocal steps, shown
        steps += 1
        if time.monotonic() - shown >= REFRESH_SECONDS:
            bar.set_postfix_str(f"{label}, {steps} decoding steps")
            shown = time.monotonic()

    handle = hook(count)
    try:
        yield
    finally:
        handle.remove()


def written(rows: int, stored: int, out: Path) -> None:
    """The run's last line: what it wrote, and how to read it."""
    say(f"wrote {rows} row(s) ({stored} stored in {out}); summarise them with: {PROG} report {out}")
