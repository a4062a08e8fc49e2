"""What the benchmark runner says while it works: one line at a time on stderr (stdout keeps what a script reads),
each line starting with the program's name, as argparse's own errors do."""

import sys

PROG = "ecmh-benchmarks"  # `python -m benchmarks` is the same program


def say(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)
