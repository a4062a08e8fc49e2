"""The `ecmh` command line: `ecmh generate "prompt"` answers with ECMH (or another registered sampler) on a local or
embedded model. The sampler flags are read from the algorithms' option tables (`ecmh.algorithms`, `ecmh.options`)."""

import argparse
import dataclasses
import json
import sys
import time

from . import __version__, algorithms
from .checks import check_int, check_seed
from .commandline import ArgumentParser
from .cost import mh_tokens
from .mh import SamplerConfig
from .models import DEFAULT_MODEL, check_device
from .options import names, specs
from .outputs import SMCOutput
from .prompts import encode_prompts
from .serve.command import add_parser as add_serve_parser
from .serve.command import serve_command
from .settings import GenerationSettings

MAX_NEW_TOKENS = 128  # the answer's length cap on the command line, unless given


def _parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="ecmh", description="Power-distribution sampling with Entropy-Cut MH.")
    parser.add_argument("--version", action="version", version=f"ecmh {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    gen = commands.add_parser("generate", help="answer one prompt")
    gen.add_argument("prompt", help="the question (in the model's chat template unless --no-chat)")
    gen.add_argument("--model", default=DEFAULT_MODEL, help="embedded name, hub id or local path (default: %(default)s)")
    gen.add_argument("--algorithm", choices=list(algorithms.REGISTRY), default=algorithms.DEFAULT,
                     help="; ".join(f"{name}: {entry.summary}" for name, entry in algorithms.REGISTRY.items())
                     + " (default: %(default)s)")
    for spec, takers in algorithms.option_specs():
        kind = dict(action=argparse.BooleanOptionalAction) if spec.type is bool else dict(type=spec.type)
        gen.add_argument(spec.flag, default=None, choices=spec.choices or None, **kind,
                         help=f"{'/'.join(takers)}: {spec.help} (default: {spec.default})")
    gen.add_argument("--max-new-tokens", type=int, default=MAX_NEW_TOKENS, help="length cap (default: %(default)s)")
    gen.add_argument("--seed", type=int, default=None, help="an integer in [0, 2**63): the same seed gives the same "
                     "answer (default: none, a fresh random seed each run)")
    gen.add_argument("--dtype", default=None, help="weights dtype, e.g. bfloat16 (default: the checkpoint's)")
    gen.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when available)")
    gen.add_argument("--no-chat", action="store_true", help="do not apply the model's chat template")
    gen.add_argument("--stop-string", action="append", dest="stop_strings", metavar="TEXT",
                     help="end the answer at the first occurrence of TEXT, exactly as at EOS (repeatable; default: "
                          "none)")
    gen.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    add_serve_parser(commands)
    return parser


def generate_command(args) -> int:
    import transformers

    import ecmh

    if not args.prompt.strip():
        return _error('the prompt is empty: ask something, e.g. ecmh generate "What is 17 * 23?"')
    entry = algorithms.get(args.algorithm)
    given = {spec.name: getattr(args, spec.name) for spec, _ in algorithms.option_specs()}
    if "progress" in names(entry.options):
        given["progress"] = True
    try:  # checked before the model loads
        check_int("max_new_tokens", args.max_new_tokens, 1)
        if args.seed is not None:
            check_seed("--seed", args.seed)
        options = algorithms.options_for(args.algorithm, given)
        entry.build(options, GenerationSettings(args.max_new_tokens, (), 0, 1, None, None, True))
    except ValueError as error:
        return _error(str(error))
    if args.device is not None:
        try:
            check_device(args.device)
        except ValueError as error:
            return _error(f"--device: {error}")
    transformers.utils.logging.disable_progress_bar()  # "Loading weights": stderr keeps the proposals' bar only
    try:
        model, tokenizer = ecmh.load_model(args.model, dtype=args.dtype, device=args.device)
    except (ValueError, TypeError, OSError) as error:
        return _error(f"--model {args.model!r}: {' '.join(str(error).split())}")
    inputs = encode_prompts(tokenizer, [args.prompt], chat=not args.no_chat)
    if isinstance(options, SamplerConfig):  # the block size it will use, said in the record and the warning
        options = dataclasses.replace(options, block_size=options.block_size_for(args.max_new_tokens))
        _warn_if_long(args.max_new_tokens, options.block_size, options.mcmc_steps)
    chosen = {field.name: getattr(options, field.name) for field in dataclasses.fields(options)}
    start = time.perf_counter()
    try:
        out = ecmh.generate(
            model, inputs.input_ids, attention_mask=inputs.attention_mask, algorithm=args.algorithm, **chosen,
            max_new_tokens=args.max_new_tokens, seed=args.seed, return_dict_in_generate=True,
            stop_strings=args.stop_strings, tokenizer=tokenizer,
        )
    except (ValueError, TypeError) as error:
        return _error(str(error))
    seconds = time.perf_counter() - start
    answer = tokenizer.decode(out.sequences[0, inputs.input_ids.shape[1]:], skip_special_tokens=True).strip()
    stats = out.stats.row(0)
    if args.json:
        record = {"model": args.model, "prompt": args.prompt, "prompt_tokens": inputs.input_ids.shape[1], "answer": answer}
        settings = {"algorithm": args.algorithm, "max_new_tokens": args.max_new_tokens, "seed": args.seed,
                    "stop_strings": args.stop_strings or [], "chat": not args.no_chat,
                    **{spec.name: chosen[spec.name] for spec in specs(type(options))}}
        print(json.dumps({**record, "settings": settings, "seconds": seconds, **stats}))
        return 0
    print(answer)
    what = [f"{stats['tokens_decoded']} tokens decoded in {stats['sequential_passes']} sequential passes"]
    if stats.get("proposals"):
        what.insert(0, f"acceptance {stats['acceptance_rate']:.2f} ({stats['accepted']}/{stats['proposals']})")
    if isinstance(out, SMCOutput):
        what.insert(0, f"{out.particles.weights.shape[1]} particles, {out.particles.resamples[0].item()} resamplings")
    print(f"[ecmh] {args.algorithm}: {', '.join(what)}, {seconds:.1f} s")
    return 0


LONG_CALL_TOKENS = 4096  # decoded tokens above which the CLI says what a call may cost before it starts


def _warn_if_long(max_new_tokens: int, block_size: int, mcmc_steps: int) -> None:
    """One line on stderr when an answer running to the cap would decode over `LONG_CALL_TOKENS` tokens
    (`ecmh.cost.mh_tokens`)."""
    tokens = mh_tokens(max_new_tokens, block_size, mcmc_steps)
    blocks = -(-max_new_tokens // block_size)
    if tokens > LONG_CALL_TOKENS:
        print(f"ecmh: up to about {tokens:,} decoded tokens ({blocks} blocks of {block_size} tokens, {mcmc_steps} MH "
              "steps each); a larger --block-size or fewer --mcmc-steps make it quicker.", file=sys.stderr)


def _error(message: str) -> int:
    print(f"ecmh: error: {message}", file=sys.stderr)
    return 2


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    return serve_command(args, _error) if args.command == "serve" else generate_command(args)


if __name__ == "__main__":
    sys.exit(main())
