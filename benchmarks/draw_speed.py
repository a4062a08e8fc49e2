"""What one token draw costs (`ecmh.scoring.PowerProposal.draw`: `log p`, `log Z`, the entropy and the token, over
the whole vocabulary) with rows in cache-sized blocks, as ecmh draws on a CPU, and as one block.

    python -m benchmarks.draw_speed [--vocab 49152,151936] [--rows 1,16,32] [--repeats 20] [--out FILE.json]

The vocabularies are SmolLM2's and Qwen2.5's; random logits, float32, the process's torch threads. The numbers
of both ways are the same (tests/test_kernel.py); only their time differs.
"""

import argparse
import json
import time
from pathlib import Path

import torch

from ecmh import scoring
from ecmh.commandline import ArgumentParser
from ecmh.mh import DEFAULTS

from .help import HelpFormatter


def _positive_ints(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers such as 1,16, got {text!r}")
    return values


def _ms_per_draw(proposal: scoring.PowerProposal, logits: torch.Tensor, repeats: int) -> float:
    uniform = torch.rand(logits.shape[0])
    proposal.draw(logits, uniform)  # warm-up
    begin = time.perf_counter()
    for _ in range(repeats):
        proposal.draw(logits, uniform)
    return (time.perf_counter() - begin) / repeats * 1e3


def measure(vocab: int, rows: int, repeats: int) -> dict:
    proposal = scoring.PowerProposal(alpha=DEFAULTS.alpha)
    logits = torch.randn(rows, vocab, generator=torch.Generator().manual_seed(0)) * 3
    blocked = _ms_per_draw(proposal, logits, repeats)
    default = scoring.ROW_BLOCK_BYTES
    scoring.ROW_BLOCK_BYTES = logits.numel() * logits.element_size()  # the whole batch is one block
    try:
        whole = _ms_per_draw(proposal, logits, repeats)
    finally:
        scoring.ROW_BLOCK_BYTES = default
    return {"vocab": vocab, "rows": rows, "blocked_ms": blocked, "one_block_ms": whole, "speedup": whole / blocked}


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python -m benchmarks.draw_speed", description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("--vocab", type=_positive_ints, default="49152,151936", help="vocabulary sizes, comma-separated")
    parser.add_argument("--rows", type=_positive_ints, default="1,16,32", help="rows drawn at once, comma-separated")
    parser.add_argument("--repeats", type=int, default=20, help="draws timed per measurement")
    parser.add_argument("--out", type=Path, help="also write the results here as JSON")
    return parser


def main(argv=None) -> list[dict]:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    print(f"torch threads: {torch.get_num_threads()}; ms per draw, rows in {scoring.ROW_BLOCK_BYTES >> 10} KiB "
          "blocks / as one block", flush=True)
    results = []
    for vocab in args.vocab:
        for r in args.rows:
            result = measure(vocab, r, args.repeats)
            print(f"vocab {vocab:>6} | rows {r:>3} | blocked {result['blocked_ms']:7.2f} ms | one block "
                  f"{result['one_block_ms']:7.2f} ms | {result['speedup']:.2f}x", flush=True)
            results.append(result)
    if args.out is not None:
        args.out.write_text(json.dumps({"torch_threads": torch.get_num_threads(), "results": results}, indent=1))
    return results


if __name__ == "__main__":
    main()
