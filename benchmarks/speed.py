"""Speed of ECMH against plain decoding: `python -m benchmarks.speed [--model NAME] [--rows 1,4,16]`.

For each batch size (rows = prompts x chains) it measures, interleaved and as the median of
`--repeats` runs in one process:
  - forward efficiency: positions run through the model / (prompt tokens + tokens decoded); ECMH
    never re-encodes a prefix, so everything above 1.0 is padding: the prompts' left padding
    (reported apart as `prompt_padding`) and rows waiting for others while decoding (none);
  - per-token cost: ECMH seconds per decoded token / `model.generate` seconds per generated token
    (sampling at temperature 1/alpha, no top-k, same model, dtype and rows);
  - KV-reuse speed-up: wall time of the same sampler, same seed, with the kept prefix re-encoded
    for every proposal (as the reference code does) / ECMH's wall time;
  - decoded tokens per second, and peak memory (CUDA allocator peak, or process peak RSS on CPU);
  - with `--profile`, the share of ECMH's time spent inside the model's forward (transformers), or, on vLLM,
    ECMH's and the engine's own sampling's milliseconds per decoded token by part: the engine's forward, and in
    this process the wait for the engine, its output processing, request building and submission, and ecmh's
    host work, and per engine step (one forward) its milliseconds and the tokens it decoded, which says how
    many of the rows the engine kept busy (`benchmarks/vllm_profile.py`);
  - latency: every benchmark method registered in `benchmarks/registry.py` (plain decoding, best-of-N, MH with
    each cut, SMC with `--particles` per prompt, ...), each run as the benchmark runs it, at the same rows, per
    answer: sequential forward passes (the decoding steps an answer waits for one after another, which is what
    latency on a GPU follows), decoded tokens and seconds, each as a ratio to the report's cost reference
    (`low_temp`: plain decoding at temperature 1/alpha), and seconds per decoded token as a ratio;
  - early rejection: ECMH (`--cuts`, entropy by default) with and without exact early rejection
    (`ecmh.generate(..., early_rejection=True/False)`), same seeds, side by side: decoded tokens, the share of the MH
    proposals' tokens saved, sequential passes and seconds per answer, each as a ratio with / without, and whether
    the returned sequences are the same (exact: they must be). `--early-rejection-only` measures only this, for
    seeds 0 .. `--repeats` - 1; `--chains` fills each prompt's rows as `num_return_sequences` would.
With `--backend vllm` (vLLM installed, see docs/vllm.md) the same sampler runs on `ecmh.load_vllm`'s
engine and the baseline is the engine's own sampling at temperature 1/alpha; there is no re-encoding
baseline or peak memory (the engine runs in its own processes), forward
efficiency counts what the engine computed (below 1.0 once prompts hit its prefix cache; speculative
proposals that no row used included, and their counts printed), `--no-speculation` measures ECMH without
them, and `--vllm-kwargs '{"block_size": 32}'` passes engine options on.
`--model a,b` measures several models one after the other in the same run. Prints a table of ratios (the
median over repeats, and the lowest and highest repeat) and writes JSON (`--out`). Machines are shared and
noisy: read the ratios.
"""

import argparse
import dataclasses
import functools
import json
import os
import statistics
from pathlib import Path

import torch

import ecmh
from ecmh.backends.vllm import VLLMBackend
from ecmh.commandline import ArgumentParser
from ecmh.cuts import CUTS
from ecmh.mh import DEFAULTS
from ecmh.prompts import encode_prompts
from ecmh.smc import SMCConfig

from . import plugin_methods, vllm_profile
from .help import HelpFormatter
from .methods import Method, RunSettings
from .reencoding import ReencodingBackend
from .registry import COST_REFERENCE, METHODS
from .run import order_methods
from .sweep import BACKENDS
from .tasks import read_records
from .timing import ForwardCounter, ForwardTimer, peak_memory_mb, timed

FALLBACK_PROMPTS = [
    "What is 17 * 23? Think step by step.",
    "Write a Python function that returns the n-th Fibonacci number.",
    "How many positive divisors does 196 have?",
    "Explain why the sum of two odd numbers is even.",
]


def prompts(count: int, args) -> list[str]:
    """`count` rows' prompts: the problems of `--data` (a MATH500-format file: `prompt` or `problem` per row), else the
    built-in ones, repeated as needed, each filling `--chains` consecutive rows as `num_return_sequences` would (for
    ECMH the same rows, so the same draws; callers that build their own `args` may leave `data` and `chains` out)."""
    data, chains = vars(args).get("data"), vars(args).get("chains", 1)
    texts = [str(row.get("prompt") or row["problem"]) for row in read_records(data)] if data else FALLBACK_PROMPTS
    return [texts[i // chains % len(texts)] for i in range(count)]


def summarise(out, ecmh_times: list, plain_times: list, prompt_tokens: int, padded_prompt_tokens: int,
              discarded: int = 0) -> dict:
    """`discarded`: positions the engine ran for speculative proposals no row used (in no row's stats)."""
    decoded = out.stats.tokens_decoded.sum().item()
    forwarded = out.stats.tokens_forwarded.sum().item() + discarded
    result = {
        "forward_with_padding": forwarded / (prompt_tokens + decoded),
        "prompt_padding": (padded_prompt_tokens - prompt_tokens) / (prompt_tokens + decoded),
        "ecmh_s_per_token": statistics.median(ecmh_times),
        "generate_s_per_token": statistics.median(plain_times),
        "decoded_tokens": decoded,
        "acceptance_rate": out.stats.acceptance_rate.nanmean().item(),
    }
    result["cost_vs_generate"] = result["ecmh_s_per_token"] / result["generate_s_per_token"]
    per_repeat = [e / g for e, g in zip(ecmh_times, plain_times)]  # each repeat runs both, one after the other
    result["cost_vs_generate_range"] = [min(per_repeat), max(per_repeat)]
    result["decoded_tokens_per_s"] = 1 / result["ecmh_s_per_token"]
    return result


def sampler_options(args, repeat: int) -> dict:
    return dict(alpha=args.alpha, mcmc_steps=args.mcmc_steps, block_size=args.block_size, seed=repeat,
                max_new_tokens=args.max_new_tokens, return_dict_in_generate=True)


def measure(model, tokenizer, rows: int, args) -> dict:
    batch = encode_prompts(tokenizer, prompts(rows, args))
    ids, mask = batch.input_ids.to(model.device), batch.attention_mask.to(model.device)
    ecmh_times, plain_times, forward_share, reuse_speedup = [], [], [], []
    for repeat in range(args.repeats):
        sampler = dict(attention_mask=mask, **sampler_options(args, repeat))
        timer = ForwardTimer(model) if args.profile else None
        counter = ForwardCounter(model)
        out, seconds = timed(lambda: ecmh.generate(model, ids, **sampler))
        counter.handle.remove()
        if timer is not None:
            timer.remove()
            forward_share.append(timer.seconds / seconds)
        ecmh_times.append(seconds / out.stats.tokens_decoded.sum().item())
        if not args.skip_reencode:
            _, reencode_seconds = timed(lambda: ecmh.generate(ReencodingBackend(model), ids, **sampler))
            reuse_speedup.append(reencode_seconds / seconds)
        torch.manual_seed(repeat)
        plain, plain_seconds = timed(lambda: model.generate(
            ids, attention_mask=mask, max_new_tokens=args.max_new_tokens, do_sample=True, temperature=1 / args.alpha,
            top_k=0, pad_token_id=tokenizer.pad_token_id))
        generated = (plain[:, ids.shape[1]:] != tokenizer.pad_token_id).sum().item()
        plain_times.append(plain_seconds / max(generated, 1))
    useful = mask.sum().item() + out.stats.tokens_decoded.sum().item()
    result = {"rows": rows, **summarise(out, ecmh_times, plain_times, mask.sum().item(), ids.numel()),
              "forward_useful": counter.positions / useful,  # counted by a hook on model.forward
              "peak_memory_mb": peak_memory_mb()}
    if reuse_speedup:
        result["kv_reuse_speedup"] = statistics.median(reuse_speedup)
    if forward_share:
        result["forward_share"] = statistics.median(forward_share)
    return result


def measure_vllm(llm, rows: int, args) -> dict:
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    batch = encode_prompts(llm.get_tokenizer(), prompts(rows, args))
    requests = [TokensPrompt(prompt_token_ids=row[keep].tolist())
                for row, keep in zip(batch.input_ids, batch.attention_mask.bool())]
    ecmh_times, plain_times, ecmh_parts, plain_parts = [], [], [], []
    for repeat in range(args.repeats):
        backend = VLLMBackend(llm, speculative=not args.no_speculation)
        run_ecmh = functools.partial(ecmh.generate, backend, batch.input_ids, attention_mask=batch.attention_mask,
                                     **sampler_options(args, repeat))
        params = SamplingParams(temperature=1 / args.alpha, max_tokens=args.max_new_tokens, seed=repeat)
        run_plain = functools.partial(llm.generate, requests, params, use_tqdm=False)
        if args.profile:
            profiled = vllm_profile.profile(llm, run_ecmh)
            out, seconds = profiled["result"], profiled["wall"]
            ecmh_parts.append(vllm_profile.shares(profiled, out.stats.tokens_decoded.sum().item()))
            profiled = vllm_profile.profile(llm, run_plain)
            plain, plain_seconds = profiled["result"], profiled["wall"]
            plain_parts.append(vllm_profile.shares(profiled, sum(len(o.outputs[0].token_ids) for o in plain)))
        else:
            out, seconds = timed(run_ecmh)
            plain, plain_seconds = timed(run_plain)
        ecmh_times.append(seconds / out.stats.tokens_decoded.sum().item())
        plain_times.append(plain_seconds / max(sum(len(o.outputs[0].token_ids) for o in plain), 1))
    speculation = dataclasses.asdict(backend.speculation)  # the last repeat's, as `out` is
    result = {"rows": rows, **summarise(out, ecmh_times, plain_times, batch.attention_mask.sum().item(),
                                        batch.input_ids.numel(), speculation["discarded_forwarded"]),
              "peak_memory_mb": float("nan"), "speculation": speculation}
    if args.profile:
        result["profile"] = {name: {part: statistics.median(p[part] for p in parts) for part in parts[0]}
                             for name, parts in (("ecmh", ecmh_parts), ("plain", plain_parts))}
    return result


def print_speculation(counts: dict) -> None:
    """What decoding ahead did in the last repeat (`ecmh.backends.vllm.backend`, "Speculation")."""
    print(f"  proposals decoded ahead: {counts['sent']}, adopted {counts['adopted']}, discarded {counts['discarded']} "
          f"({counts['discarded_forwarded']} positions, counted in fwd/useful)", flush=True)


def print_vllm_profile(model: str, result: dict) -> None:
    """Per decoded token, ECMH's and plain vLLM's time by part (medians over the repeats)."""
    print(f"  where a decoded token's time goes, {model}, {result['rows']} rows (ms per token; engine side and "
          f"this process's side each sum to the whole, and overlap)")
    for name, p in result["profile"].items():
        worker = "  ".join(f"{part} {p[part + '_ms']:.2f} ({p[part + '_share']:.0%})"
                           for part in vllm_profile.WORKER_PARTS)
        client = "  ".join(f"{part} {p[part + '_ms']:.2f} ({p[part + '_share']:.0%})" for part in vllm_profile.CLIENT_PARTS)
        print(f"  {name:>6} {p['ms_per_token']:.2f} ms/token, {p['ms_per_forward']:.1f} ms/step, "
              f"{p['decoded_per_forward']:.1f} decoded/step | engine: {worker} | here: {client}", flush=True)


COSTS = ("sequential_passes", "decoded_tokens", "seconds")  # per answer
EARLY_REJECTION = {"with": True, "without": False}  # `ecmh.generate(..., early_rejection=...)`


def latency_methods(args) -> dict[str, Method]:
    """The latency table's methods: the registered ones, in report order; with `--resample-every`, each method with an
    ESS interval (`resample_every`) takes it instead of its own."""
    methods = {}
    for name, method in METHODS.items():
        if args.resample_every is not None and "resample_every" in getattr(method, "options", {}):
            method = dataclasses.replace(method, options={**method.options, "resample_every": args.resample_every})
        methods[name] = method
    return methods


def answer_costs(out, seconds: float) -> dict:
    """Per answer of one call: sequential passes, decoded tokens and seconds; with its history also the tokens its MH
    proposals decoded (the rest are block extensions, the same with and without early rejection) and its early
    rejections."""
    stats, answers = out.stats, len(out.stats.tokens_decoded)
    costs = {"sequential_passes": stats.sequential_passes.float().mean().item(),
             "decoded_tokens": stats.tokens_decoded.float().mean().item(), "seconds": seconds / answers}
    if out.history is not None:
        extensions = out.history.proposal_length[out.history.extension].sum().item()
        costs["mh_proposal_tokens"] = costs["decoded_tokens"] - extensions / answers
        costs["early_rejections"] = stats.early_rejections.float().mean().item()
    return costs


def method_costs(answers: list, seconds: float) -> dict:
    """Per answer of one benchmark method's call: sequential passes, decoded tokens and seconds."""
    return {"sequential_passes": statistics.fmean(answer.cost.sequential_passes for answer in answers),
            "decoded_tokens": statistics.fmean(answer.cost.tokens_decoded for answer in answers),
            "seconds": seconds / len(answers)}


def measure_latency(model, tokenizer, rows: int, args) -> dict:
    """Per method: sequential passes, decoded tokens and seconds per answer (medians of `--repeats` runs, interleaved;
    a method whose budget is another's runs after it, on its answers' decoded tokens)."""
    batch = encode_prompts(tokenizer, prompts(rows, args))
    settings = RunSettings(alpha=args.alpha, mcmc_steps=args.mcmc_steps, block_size=args.block_size,
                           max_new_tokens=args.max_new_tokens, particles=args.particles)
    methods = latency_methods(args)
    runs = {name: [] for name in methods}
    for repeat in range(args.repeats):
        decoded = {}
        for name in order_methods(list(methods))[0]:
            method = methods[name]
            answers, seconds = timed(lambda: method.sample(model, batch.input_ids, batch.attention_mask, settings,
                                                           repeat, tokenizer, decoded.get(method.budget_from)))
            decoded[name] = [answer.cost.tokens_decoded for answer in answers]
            runs[name].append(method_costs(answers, seconds))
    per_answer = {method: {name: statistics.median(run[name] for run in measured) for name in COSTS}
                  for method, measured in runs.items()}
    reference = per_answer[COST_REFERENCE]
    for numbers in per_answer.values():
        numbers["s_per_token_vs_reference"] = ((numbers["seconds"] / numbers["decoded_tokens"])
                                               / (reference["seconds"] / reference["decoded_tokens"]))
        for name in COSTS:
            numbers[f"{name}_vs_reference"] = numbers[name] / reference[name]
    return {"rows": rows, "reference": COST_REFERENCE, "per_answer": per_answer}


def print_latency(results: list[dict]) -> None:
    print(f"\nper answer, as a ratio to {COST_REFERENCE}'s at the same rows "
          f"(passes: sequential forward passes; s/token: seconds per decoded token)")
    print(f"{'model':>28} {'rows':>5} {'method':>12} {'passes':>8} {'x ref':>8} {'tokens':>8} {'x ref':>8} {'s':>8} "
          f"{'x ref':>8} {'s/token x':>10}")
    for result in results:
        for method, n in result["per_answer"].items():
            print(f"{result['model']:>28} {result['rows']:>5} {method:>12} {n['sequential_passes']:>8.1f} "
                  f"{n['sequential_passes_vs_reference']:>8.2f} {n['decoded_tokens']:>8.1f} "
                  f"{n['decoded_tokens_vs_reference']:>8.2f} {n['seconds']:>8.3f} {n['seconds_vs_reference']:>8.2f} "
                  f"{n['s_per_token_vs_reference']:>10.2f}", flush=True)


def measure_early_rejection(model, tokenizer, rows: int, args) -> list[dict]:
    """Per cut rule of `--cuts`: ECMH with and without early rejection, same seed (`repeat`), one after the other;
    per answer the costs of each (tokens, passes and MH proposal tokens: the mean over the seeds; seconds: the
    median), their ratio with / without, and whether every seed returned the same sequences both ways."""
    batch = encode_prompts(tokenizer, prompts(rows, args))
    results = []
    for cut in args.cuts.split(","):
        per_seed = []
        for repeat in range(args.repeats):
            outs = {flag: timed(lambda: ecmh.generate(
                model, batch.input_ids, attention_mask=batch.attention_mask, **sampler_options(args, repeat), cut=cut,
                early_rejection=flag, record_history=True)) for flag in (True, False)}
            per_seed.append({"seed": repeat, **{key: answer_costs(*outs[flag]) for key, flag in EARLY_REJECTION.items()},
                             "identical": torch.equal(outs[True][0].sequences, outs[False][0].sequences)})
        both = {key: {name: (statistics.median if name == "seconds" else statistics.mean)(s[key][name] for s in per_seed)
                      for name in per_seed[0][key]} for key in EARLY_REJECTION}
        ratio = {name: both["with"][name] / both["without"][name] for name in (*COSTS, "mh_proposal_tokens")}
        saved = both["without"]["decoded_tokens"] - both["with"]["decoded_tokens"]
        results.append({"rows": rows, "cut": cut, **both, "with_vs_without": ratio,
                        "proposal_tokens_saved": saved / both["without"]["mh_proposal_tokens"],
                        "identical": all(s["identical"] for s in per_seed), "per_seed": per_seed})
    return results


def print_early_rejection(results: list[dict], repeats: int) -> None:
    print(f"\nECMH with / without exact early rejection, per answer ({repeats} seeds: tokens and passes their mean, "
          f"seconds their median; x: with / without; saved: of the MH proposals' tokens; stops: early rejections; "
          f"same: every seed's sequences identical both ways)")
    print(f"{'model':>28} {'rows':>5} {'cut':>8} {'tokens':>15} {'x':>5} {'saved':>6} {'passes':>15} {'x':>5} "
          f"{'s':>15} {'x':>5} {'stops':>6} {'same':>5}")
    for r in results:
        def pair(name: str, digits: int) -> str:
            return (f"{r['with'][name]:>7.{digits}f}/{r['without'][name]:<7.{digits}f} "
                    f"{r['with_vs_without'][name]:>5.2f}")

        print(f"{r['model']:>28} {r['rows']:>5} {r['cut']:>8} {pair('decoded_tokens', 1)} "
              f"{r['proposal_tokens_saved']:>6.1%} {pair('sequential_passes', 1)} {pair('seconds', 3)} "
              f"{r['with']['early_rejections']:>6.1f} {'yes' if r['identical'] else 'NO':>5}", flush=True)


def build_parser() -> argparse.ArgumentParser:
    plugin_methods.register()
    parser = ArgumentParser(prog="python -m benchmarks.speed", description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct", help="a model, or several comma-separated, "
                        "measured one after the other in this run")
    parser.add_argument("--backend", choices=BACKENDS, default=BACKENDS[0], help="what loads the model")
    parser.add_argument("--vllm-kwargs", default="{}", help="JSON object of extra `vllm.LLM` options")
    parser.add_argument("--dtype", default=None, help="weights dtype (default: the backend's)")
    parser.add_argument("--rows", default="1,4,16,64", help="comma-separated batch sizes (rows = prompts x chains)")
    parser.add_argument("--chains", type=int, default=1, help="rows per prompt, consecutive (as num_return_sequences: "
                        "for ECMH the same rows and draws); each batch size a multiple of it")
    parser.add_argument("--data", default=None, help="prompts: the problems of a MATH500-format JSON/JSONL/CSV file "
                        "(default: four built-in prompts)")
    parser.add_argument("--max-new-tokens", type=int, default=128, help="tokens per answer at most")
    parser.add_argument("--block-size", type=int, default=32, help="tokens per MH block")
    parser.add_argument("--mcmc-steps", type=int, default=4, help="MH steps per block")
    parser.add_argument("--alpha", type=float, default=DEFAULTS.alpha, help="the power of the target p^alpha")
    parser.add_argument("--particles", type=int, default=SMCConfig().particles,
                        help="SMC methods' particles per prompt (latency table)")
    parser.add_argument("--resample-every", type=int, default=None,
                        help="SMC methods' tokens between ESS checks (default: each method's own)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per measurement")
    parser.add_argument("--profile", action="store_true", help="where the time goes: the share inside model.forward "
                        "(transformers), or per part of the engine and of ecmh around it (vllm, benchmarks/vllm_profile.py)")
    parser.add_argument("--no-speculation", action="store_true", help="vllm: do not decode ahead the proposal that "
                        "follows a rejection (`VLLMBackend(speculative=False)`; the answers are the same)")
    parser.add_argument("--skip-reencode", action="store_true", help="skip the re-encoding baseline (slow)")
    parser.add_argument("--skip-latency", action="store_true", help="skip the per-method latency table")
    parser.add_argument("--cuts", default=DEFAULTS.cut, help=f"comma-separated cut rules ({', '.join(CUTS)}) of the "
                        "table of ECMH with against without early rejection")
    parser.add_argument("--early-rejection-only", action="store_true", help="measure only ECMH with against without "
                        "early rejection (seeds 0 .. repeats-1), not the speed and latency tables")
    parser.add_argument("--out", default="benchmarks/results/speed.json", help="where the JSON goes")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        vllm_options = dict(json.loads(args.vllm_kwargs)) | ({"dtype": args.dtype} if args.dtype else {})
    except (ValueError, TypeError):
        build_parser().error(f"--vllm-kwargs must be a JSON object such as '{{\"block_size\": 32}}', got {args.vllm_kwargs!r}.")
    if args.backend == "vllm" and args.profile:
        os.environ["VLLM_ALLOW_INSECURE_SERIALIZATION"] = "1"  # the profile's timers reach the worker by RPC

    row_counts = [int(r) for r in args.rows.split(",")]
    if args.chains < 1 or any(rows % args.chains for rows in row_counts):
        build_parser().error(f"--chains must be >= 1 and divide every batch size of --rows, got {args.chains}.")
    if not set(args.cuts.split(",")) <= set(CUTS):
        build_parser().error(f"--cuts takes {', '.join(CUTS)}, got {args.cuts!r}.")
    results, latencies, rejections, device = [], [], [], None
    header = (f"{'model':>28} {'rows':>5} {'fwd/useful':>10} {'cost/gen':>9} {'(min-max)':>11} {'reuse x':>8} "
              f"{'tok/s':>8} {'accept':>7} {'peak MB':>8}")
    if not args.early_rejection_only:
        print(header + ("  fwd share" if args.profile and args.backend == "transformers" else ""))
    for model_name in args.model.split(","):
        if args.backend == "vllm":
            target = llm = ecmh.load_vllm(model_name, **vllm_options)
            if args.profile:
                vllm_profile.install(llm)
            device, tokenizer, run = "vllm", llm.get_tokenizer(), functools.partial(measure_vllm, llm)
        else:
            target, tokenizer = ecmh.load_model(model_name, dtype=args.dtype)
            device, run = str(target.device), functools.partial(measure, target, tokenizer)
        for rows in row_counts if not args.early_rejection_only else ():
            r = {"model": model_name, **run(rows, args)}
            results.append(r)
            low, high = r["cost_vs_generate_range"]
            line = (f"{model_name:>28} {rows:>5} {r['forward_with_padding']:>10.3f} {r['cost_vs_generate']:>9.2f} "
                    f"{f'{low:.2f}-{high:.2f}':>11} {r.get('kv_reuse_speedup', float('nan')):>8.2f} "
                    f"{r['decoded_tokens_per_s']:>8.1f} {r['acceptance_rate']:>7.2f} {r['peak_memory_mb']:>8.0f}")
            print(line + (f"  {r['forward_share']:>9.2f}" if "forward_share" in r else ""), flush=True)
            if "speculation" in r:
                print_speculation(r["speculation"])
            if "profile" in r:
                print_vllm_profile(model_name, r)
        if not args.skip_latency and not args.early_rejection_only:
            latencies += [{"model": model_name, **measure_latency(target, tokenizer, rows, args)} for rows in row_counts]
        rejections += [{"model": model_name, **r} for rows in row_counts
                       for r in measure_early_rejection(target, tokenizer, rows, args)]
        if args.backend == "vllm":
            llm.llm_engine.engine_core.shutdown()  # the next model's engine gets the memory
    if latencies:
        print_latency(latencies)
    print_early_rejection(rejections, args.repeats)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"settings": vars(args), "device": device, "torch_threads": torch.get_num_threads(),
                                          "results": results, "latency": latencies, "early_rejection": rejections},
                                         indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
