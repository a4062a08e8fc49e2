"""The `ecmh` command line: `ecmh generate "prompt"` answers with ECMH on a local or embedded model."""

import argparse
import json
import sys
import time

from . import __version__
from .checks import check_int
from .settings import ALGORITHMS, DEFAULTS, SamplerConfig, SMCConfig
from .cuts import CUT_NAMES
from .models import DEFAULT_MODEL, check_device
from .prompts import encode_prompts


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ecmh", description="Power-distribution sampling with Entropy-Cut MH.")
    parser.add_argument("--version", action="version", version=f"ecmh {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    gen = commands.add_parser("generate", help="answer one prompt")
    gen.add_argument("prompt")
    gen.add_argument("--model", default=DEFAULT_MODEL, help="embedded name, hub id or local path (default: %(default)s)")
    gen.add_argument("--alpha", type=float, default=DEFAULTS.alpha, help="power of p^alpha (default: %(default)s)")
    gen.add_argument("--mcmc-steps", type=int, default=DEFAULTS.mcmc_steps, help="MH steps per block (default: %(default)s)")
    gen.add_argument("--block-size", type=int, default=None, help="tokens per block (default: max-new-tokens // 16, at least 16)")
    gen.add_argument("--max-new-tokens", type=int, default=128, help="length cap (default: %(default)s)")
    gen.add_argument("--cut", choices=CUT_NAMES, default=DEFAULTS.cut, help="cut distribution (default: %(default)s)")
    gen.add_argument("--cut-power", type=float, default=DEFAULTS.cut_power, help="entropy-jump exponent (default: %(default)s)")
    gen.add_argument("--algorithm", choices=ALGORITHMS, default="mh",
                     help="mh (ECMH) or smc (Sequential Monte Carlo, about plain decoding's latency) (default: %(default)s)")
    gen.add_argument("--particles", type=int, default=None, help=f"SMC: particles (default: {SMCConfig.particles})")
    gen.add_argument("--resample-every", type=int, default=None,
                     help=f"SMC: tokens between ESS checks (default: {SMCConfig.resample_every})")
    gen.add_argument("--bridge-tokens", type=int, default=None, help="SMC: exponent bridging over this many tokens (default: 0)")
    gen.add_argument("--seed", type=int, default=None, help="makes the answer reproducible")
    gen.add_argument("--dtype", default=None, help="weights dtype, e.g. bfloat16 (default: the checkpoint's)")
    gen.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when available)")
    gen.add_argument("--no-chat", action="store_true", help="do not apply the model's chat template")
    gen.add_argument("--stop-string", action="append", dest="stop_strings", metavar="TEXT",
                     help="end the answer at the first occurrence of TEXT, exactly as at EOS (repeatable)")
    gen.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    return parser


def generate_command(args) -> int:
    import transformers

    import ecmh

    if not args.prompt.strip():
        return _error('the prompt is empty: ask something, e.g. ecmh generate "What is 17 * 23?"')
    try:  # checked before the model loads
        check_int("max_new_tokens", args.max_new_tokens, 1)
        options = SamplerConfig(args.alpha, args.mcmc_steps, args.block_size, args.cut, args.cut_power)
        block_size = options.block_size_for(args.max_new_tokens)
        smc_options = {name: getattr(args, name) for name in ("particles", "resample_every", "bridge_tokens")}
        smc = SMCConfig.from_options(args.algorithm, smc_options)
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
    if smc is None:
        _warn_if_long(args.max_new_tokens, block_size, args.mcmc_steps)
    sampler = (dict(**vars(options), progress=True) if smc is None
               else dict(alpha=args.alpha, algorithm="smc", **{k: v for k, v in smc_options.items() if v is not None}))
    start = time.perf_counter()
    try:
        out = ecmh.generate(
            model, inputs.input_ids, attention_mask=inputs.attention_mask, **sampler,
            max_new_tokens=args.max_new_tokens, seed=args.seed, return_dict_in_generate=True,
            stop_strings=args.stop_strings, tokenizer=tokenizer,
        )
    except (ValueError, TypeError) as error:
        return _error(str(error))
    seconds = time.perf_counter() - start
    answer = tokenizer.decode(out.sequences[0, inputs.input_ids.shape[1]:], skip_special_tokens=True).strip()
    stats = {name: value[0].item() for name, value in out.stats._asdict().items()}
    if args.json:
        record = {"model": args.model, "prompt": args.prompt, "prompt_tokens": inputs.input_ids.shape[1], "answer": answer}
        settings = {"algorithm": args.algorithm, "alpha": args.alpha, "max_new_tokens": args.max_new_tokens,
                    "seed": args.seed, "stop_strings": args.stop_strings or [], "chat": not args.no_chat,
                    **({"mcmc_steps": args.mcmc_steps, "block_size": block_size, "cut": args.cut,
                        "cut_power": args.cut_power} if smc is None else vars(smc))}
        print(json.dumps({**record, "settings": settings, "seconds": seconds, **stats}))
    elif smc is None:
        print(answer)
        print(
            f"[ecmh] acceptance {stats['acceptance_rate']:.2f} ({stats['accepted']}/{stats['proposals']}), "
            f"{stats['tokens_decoded']} tokens decoded, {seconds:.1f} s"
        )
    else:
        print(answer)
        print(f"[ecmh] SMC with {smc.particles} particles, {out.particles.resamples[0].item()} resamplings, "
              f"{stats['tokens_decoded']} tokens decoded in {stats['sequential_passes']} sequential passes, {seconds:.1f} s")
    return 0


LONG_CALL_TOKENS = 4096  # decoded tokens above which the CLI says what a call may cost before it starts


def _warn_if_long(max_new_tokens: int, block_size: int, mcmc_steps: int) -> None:
    """One line on stderr when an answer running to the cap would decode over `LONG_CALL_TOKENS` tokens: the blocks'
    extensions plus, after block k, `mcmc_steps` proposals of about half of `k * block_size` tokens each (uniform
    cuts; the README's cost model)."""
    blocks = -(-max_new_tokens // block_size)
    tokens = max_new_tokens + sum(mcmc_steps * min(k * block_size, max_new_tokens) // 2 for k in range(1, blocks + 1))
    if tokens > LONG_CALL_TOKENS:
        print(f"ecmh: up to about {tokens:,} decoded tokens ({blocks} blocks of {block_size} tokens, {mcmc_steps} MH "
              "steps each); a larger --block-size or fewer --mcmc-steps make it quicker.", file=sys.stderr)


def _error(message: str) -> int:
    print(f"ecmh: error: {message}", file=sys.stderr)
    return 2


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    return generate_command(args)


if __name__ == "__main__":
    sys.exit(main())
