"""`ecmh serve [MODEL]`: the OpenAI-compatible server on uvicorn. The flags are checked and the model loaded before
the port opens, so a mistake is one line on stderr (exit 2); Ctrl-C or SIGTERM stops it after the requests in flight
are answered (uvicorn's graceful shutdown; those still waiting for a batch are refused with 503)."""

import argparse

from ..checks import check_int, check_number
from ..models import DEFAULT_MODEL
from .batcher import BATCH_WAIT_MS, MAX_BATCH_ROWS


def add_parser(commands) -> None:
    serve = commands.add_parser("serve", help="serve a model behind OpenAI's API (completions, chat completions)",
                                description="An OpenAI-compatible server sampling p^alpha: the sampler's options come "
                                "with each request (docs/serve.md).")
    serve.add_argument("model", nargs="?", default=DEFAULT_MODEL,
                       help="embedded name, hub id or local path (default: %(default)s)")
    serve.add_argument("--backend", choices=("transformers", "vllm"), default="transformers",
                       help="the engine that runs the model (default: %(default)s)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (default: %(default)s)")
    serve.add_argument("--max-batch-rows", type=int, default=MAX_BATCH_ROWS,
                       help="answers sampled together in one call, at most (default: %(default)s)")
    serve.add_argument("--batch-wait-ms", type=float, default=BATCH_WAIT_MS,
                       help="how long a request waits for others to share its batch (default: %(default)s)")
    serve.add_argument("--tensor-parallel-size", type=int, default=1,
                       help="vLLM's tensor parallelism, GPUs per model (--backend vllm; default: %(default)s)")
    serve.add_argument("--dtype", default=None, help="weights dtype, e.g. bfloat16 (default: the checkpoint's)")
    serve.add_argument("--device", default=None, help="cpu, cuda, ... (--backend transformers; default: cuda when "
                                                      "available)")


def serve_command(args: argparse.Namespace, error) -> int:
    """Runs the server until it is stopped; `error(message)` reports a mistake and returns the exit code."""
    try:
        check_int("--port", args.port, 0)
        check_int("--max-batch-rows", args.max_batch_rows, 1)
        check_number("--batch-wait-ms", args.batch_wait_ms, minimum=0)
        check_int("--tensor-parallel-size", args.tensor_parallel_size, 1)
        if args.port > 65535:
            raise ValueError(f"`--port` must be at most 65535, got {args.port}.")
    except ValueError as problem:
        return error(str(problem))
    try:
        import uvicorn

        from .app import create_app
        from .engine import Engine
    except ImportError as missing:
        return error(f"`ecmh serve` needs the serve extra ({missing.name} is missing): pip install 'ecmh[serve]'")
    if args.device is not None:
        from ..models import check_device

        try:
            check_device(args.device)
        except ValueError as problem:
            return error(f"--device: {problem}")
    try:
        engine = Engine.load(args.model, args.backend, device=args.device, dtype=args.dtype,
                             tensor_parallel_size=args.tensor_parallel_size)
    except (ValueError, TypeError, OSError) as problem:
        return error(f"model {args.model!r}: {' '.join(str(problem).split())}")
    app = create_app(engine=engine, max_batch_rows=args.max_batch_rows, batch_wait_ms=args.batch_wait_ms)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0
