"""Load on `ecmh serve`: the same requests sent by 1, 4, 16, ... concurrent clients to one server (in this process, on
uvicorn), against the same requests sent one after another (1 client). Prints, per number of clients, requests/s,
decoded tokens/s (every token the sampler drew, rejected proposals included), each as a ratio to one client, the
mean rows per sampler call and the share of the sampler's time the batch was full (`--max-batch-rows` rows), and
whether every answer equals the one-client answer (a request's answer does not depend on its batch).

    python -m benchmarks.serve_load --clients 1,4,16 --requests 32 --max-tokens 16 --mcmc-steps 2
"""

import argparse
import concurrent.futures
import json
import re
import sys
import time

from benchmarks.help import HelpFormatter
from ecmh.commandline import ArgumentParser
from ecmh.models import DEFAULT_MODEL
from ecmh.serve.app import create_app
from ecmh.serve.background import request, serving

PROMPTS = ["What is {i} + {i}?", "Name a prime number above {i}.", "Spell the number {i} in words.",
           "Is {i} even or odd?"]
TOTALS = ("ecmh_batches_total", "ecmh_batch_rows_total", "ecmh_batch_seconds_total", "ecmh_batch_full_seconds_total")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python -m benchmarks.serve_load", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--model", default=DEFAULT_MODEL, help="embedded name, hub id or local path")
    parser.add_argument("--clients", default="1,4,16", help="numbers of concurrent clients, comma-separated; 1 first")
    parser.add_argument("--requests", type=int, default=32, help="requests per number of clients (the same each time)")
    parser.add_argument("--max-tokens", type=int, default=16, help="max_tokens of every request")
    parser.add_argument("--mcmc-steps", type=int, default=2, help="mcmc_steps of every request")
    parser.add_argument("--max-batch-rows", type=int, default=16, help="the server's --max-batch-rows")
    parser.add_argument("--batch-wait-ms", type=float, default=20.0, help="the server's --batch-wait-ms")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when available)")
    parser.add_argument("--json", action="store_true", help="one JSON object per number of clients instead of a table")
    return parser


def _totals(url: str) -> dict:
    text = request(url + "/metrics")[1]
    return {name: float(re.search(rf"^{name} (\S+)$", text, re.M).group(1)) for name in TOTALS}


def _load(url: str, clients: int, bodies: list) -> dict:
    before, start = _totals(url), time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        answers = list(pool.map(lambda body: request(url + "/v1/completions", body), bodies))
    seconds = time.perf_counter() - start
    failed = [answer for status, answer in answers if status != 200]
    if failed:
        raise RuntimeError(f"{len(failed)} requests failed, e.g. {failed[0]}")
    after = _totals(url)
    spent = {name: after[name] - before[name] for name in TOTALS}
    decoded = sum(choice["ecmh"]["tokens_decoded"] for _, answer in answers for choice in answer["choices"])
    return {"clients": clients, "requests": len(bodies), "seconds": seconds, "requests_per_s": len(bodies) / seconds,
            "decoded_tokens_per_s": decoded / seconds,
            "rows_per_call": spent["ecmh_batch_rows_total"] / spent["ecmh_batches_total"],
            "batch_full_share": spent["ecmh_batch_full_seconds_total"] / spent["ecmh_batch_seconds_total"],
            "texts": [[choice["text"] for choice in answer["choices"]] for _, answer in answers]}


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    clients = [int(c) for c in args.clients.split(",")]
    if clients[0] != 1 or min(clients) < 1 or args.requests < 1:
        build_parser().error("--clients must start with 1 (the one-after-another baseline), --requests must be >= 1")
    app = create_app(args.model, max_batch_rows=args.max_batch_rows, batch_wait_ms=args.batch_wait_ms,
                     device=args.device)
    bodies = [{"prompt": PROMPTS[i % len(PROMPTS)].format(i=i), "max_tokens": args.max_tokens,
               "mcmc_steps": args.mcmc_steps, "seed": i} for i in range(args.requests)]
    with serving(app) as url:
        request(url + "/v1/completions", {**bodies[0], "max_tokens": 1})  # warm-up: first-call costs not timed
        runs = [_load(url, count, bodies) for count in clients]
    if not args.json:
        print(f"{args.model}, {args.requests} requests of max_tokens={args.max_tokens}, mcmc_steps={args.mcmc_steps}, "
              f"--max-batch-rows {args.max_batch_rows} --batch-wait-ms {args.batch_wait_ms:g}")
        print("clients  requests/s  (x 1 client)  decoded tokens/s  (x 1 client)  rows/call  batch full  same answers")
    for run in runs:
        ratio = run["requests_per_s"] / runs[0]["requests_per_s"]
        tokens_ratio = run["decoded_tokens_per_s"] / runs[0]["decoded_tokens_per_s"]
        same = run["texts"] == runs[0]["texts"]
        summary = {**{k: v for k, v in run.items() if k != "texts"}, "speedup": ratio, "same_answers": same}
        if args.json:
            print(json.dumps(summary))
        else:
            print(f"{run['clients']:>7}  {run['requests_per_s']:>10.2f}  {ratio:>12.2f}  "
                  f"{run['decoded_tokens_per_s']:>16.1f}  {tokens_ratio:>12.2f}  {run['rows_per_call']:>9.1f}  "
                  f"{run['batch_full_share']:>10.0%}  {'yes' if same else 'NO'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
