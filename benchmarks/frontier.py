"""The latency frontier of ECMH against multiple-try ECMH: `python -m benchmarks.frontier`.

Each setting KxN (K candidates per MH step, N MH steps per block; K = 1 is ECMH, 1x0 plain low-temperature
sampling) is measured two ways:

  - cost: sequential forward passes per answer (what latency on a GPU follows: a step's K candidates decode side
    by side) and decoded tokens per answer, as ratios to plain low-temperature sampling (1x0) on the same prompts
    and seeds;
  - closeness to p^alpha. Part A, toy models small enough to enumerate every answer (`ecmh.toy`): many chains of
    one prompt in one batch, one block, and the total-variation distance of their answers to the exact p^alpha in
    units of the noise floor (the mean TV of as many exact i.i.d. draws: a perfect sampler scores about 1). Part B,
    the embedded SmolLM2 (`--skip-model` leaves it out): the mean log p and the mean length of the answers, paired
    with ECMH at N = 10's on the same prompts and seeds (95% intervals clustered by prompt, as the report's
    "sampler or target" check).

1x0 and ECMH's 1x10 (the cost and the log-p references) always run. Prints a markdown table and, for each
multiple-try setting, whether it is closer to p^alpha than the ECMH setting of the closest passes ratio; writes
the table, a JSON of every number and a figure (TV / floor and the log-p difference against the passes ratio)
into `--out`.
"""

import argparse
import dataclasses
import json
import os
import platform
import shlex
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import NamedTuple

import torch
from matplotlib.figure import Figure
from matplotlib.ticker import FormatStrFormatter

import ecmh
from ecmh import toy
from ecmh.commandline import ArgumentParser

from .help import HelpFormatter
from .report_cells import interval, number
from .stats import mean_interval


@dataclasses.dataclass(frozen=True, order=True)
class Setting:
    tries: int  # K: candidates decoded side by side per MH step
    steps: int  # N: MH steps per block (0: plain low-temperature sampling)

    def __str__(self) -> str:
        return f"{self.tries}x{self.steps}"


LOW_TEMP, REFERENCE = Setting(1, 0), Setting(1, 10)  # the cost reference; the log-p reference (ECMH at N = 10)
DEFAULT_SETTINGS = "1x1,1x2,1x3,1x5,1x10,2x1,2x2,2x3,4x1,4x2,4x3,8x1,8x2,8x3"


class ToySpec(NamedTuple):
    name: str
    vocab: int
    length: int  # answers of up to this many tokens, sampled as one block
    alpha: float
    sharpness: float  # the output head's scale: peaked next-token distributions
    eos: int | None  # None: every answer runs to `length`


TOYS = (ToySpec("v5-len4-a2-eos", 5, 4, 2.0, 3.0, 2), ToySpec("v6-len4-a4", 6, 4, 4.0, 6.0, None),
        ToySpec("v5-len5-a2-eos", 5, 5, 2.0, 4.0, 2))
TOY_PROMPT, TOY_PAD, TOY_SEED = [1], 3, 0
MIN_GAP, MAX_MODE = 0.2, 0.9  # a toy's p^alpha: at least this far (TV) from the proposal, at most this on one answer
FLOOR_RUNS = 200

QUESTIONS = (
    "What is the capital of France?", "How many legs does a spider have?", "What is 12 times 12?",
    "Name a prime number greater than 50.", "What colour do you get by mixing blue and yellow?",
    "Who wrote Romeo and Juliet?", "What is the boiling point of water in Celsius?", "How many days are in a leap year?",
    "What is the largest planet in the solar system?", "Translate 'thank you' into Spanish.",
    "What is the square root of 81?", "Name the chemical symbol for gold.", "How many minutes are in three hours?",
    "What is the opposite of 'ancient'?", "Which ocean is the largest?", "What is 15% of 200?",
)


def parse_settings(text: str) -> list[Setting]:
    """`--settings`: comma-separated KxN, both at least 1."""
    try:
        settings = [Setting(*map(int, item.split("x", 1))) for item in text.split(",")]
    except (TypeError, ValueError):  # "4", "x3", "4xa"
        settings = []
    if not settings or any(s.tries < 1 or s.steps < 1 for s in settings):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated KxN (K candidates per MH step, N MH steps per block, both at least 1) such as "
            f"1x1,1x10,4x3; got {text!r}")
    return settings


def parse_seeds(text: str) -> list[int]:
    """`--seeds`: comma-separated integers, at least 0."""
    try:
        seeds = [int(item) for item in text.split(",")]
    except ValueError:
        seeds = [-1]
    if min(seeds) < 0:
        raise argparse.ArgumentTypeError(f"expected comma-separated seeds of at least 0 such as 0,1; got {text!r}")
    return seeds


def answer_numbers(out) -> dict[str, list]:
    """Per returned answer: its sequential passes, decoded tokens, log p and length."""
    stats = out.stats
    return {"passes": stats.sequential_passes.tolist(), "tokens": stats.tokens_decoded.tolist(),
            "log_p": stats.log_p.tolist(), "length": out.trace.length.tolist()}


# ---------------------------------------------------------------- part A: toys enumerated exactly

def build_toy(spec: ToySpec):
    """The first seed's model whose p^alpha is far from the proposal and has more than one mode; its enumeration."""
    for seed in range(100):
        model = toy.random_model(spec.vocab, spec.sharpness, seed, initializer_range=0.1)
        exact = toy.exact(model, TOY_PROMPT, spec.length, spec.alpha, spec.eos)
        if toy.total_variation(exact.target, exact.proposal) >= MIN_GAP and exact.target.max() <= MAX_MODE:
            return model, seed, exact
    raise RuntimeError(f"no seed below 100 gives toy {spec.name} a p^alpha {MIN_GAP} from its proposal")


def noise_floor(target: torch.Tensor, draws: int) -> float:
    """The mean TV of `draws` exact i.i.d. draws from `target` (simulated `FLOOR_RUNS` times, a fixed generator)."""
    generator = torch.Generator().manual_seed(1234)
    samples = torch.multinomial(target.float().expand(FLOOR_RUNS, -1), draws, replacement=True, generator=generator)
    return statistics.fmean(toy.total_variation(torch.bincount(row, minlength=target.numel()).double() / draws, target)
                            for row in samples)


def sample_toy(model, spec: ToySpec, exact, setting: Setting, chains: int) -> dict:
    """`chains` chains of the toy's prompt in one batch: how often each answer came, mean passes and tokens."""
    out = ecmh.generate(model, [TOY_PROMPT], alpha=spec.alpha, mcmc_steps=setting.steps, tries=setting.tries,
                        block_size=spec.length, max_new_tokens=spec.length, eos_token_id=spec.eos,
                        pad_token_id=TOY_PAD, num_return_sequences=chains, seed=TOY_SEED, return_dict_in_generate=True)
    answers = [row[:n] for row, n in zip(out.sequences[:, len(TOY_PROMPT):].tolist(), out.trace.length.tolist())]
    counts = (exact.distribution(answers) * chains).round().long()  # shares of `chains` back to whole counts
    numbers = answer_numbers(out)
    return {"counts": counts.tolist(), "passes": statistics.fmean(numbers["passes"]),
            "tokens": statistics.fmean(numbers["tokens"])}


def run_toys(settings: list[Setting], args) -> list[dict]:
    toys = []
    for spec in TOYS[:args.toys]:
        model, seed, exact = build_toy(spec)
        floor = noise_floor(exact.target, args.chains)
        samples = {}
        for setting in settings:
            sample = sample_toy(model, spec, exact, setting, args.chains)
            tv = toy.total_variation(torch.tensor(sample["counts"]).double() / args.chains, exact.target)
            samples[str(setting)] = {**sample, "tv": tv, "tv_over_floor": tv / floor}
            progress(f"toy {spec.name} {setting}: TV / floor {tv / floor:.2f}")
        toys.append({**spec._asdict(), "model_seed": seed, "prompt": TOY_PROMPT, "chains": args.chains,
                     "continuations": exact.continuations, "target": exact.target.tolist(), "floor": floor,
                     "proposal_tv": toy.total_variation(exact.target, exact.proposal), "samples": samples})
    return toys


# ---------------------------------------------------------------- part B: the embedded model

def run_model(settings: list[Setting], args) -> dict:
    model, tokenizer = ecmh.load_model(args.model)
    questions = QUESTIONS[:args.prompts]
    batch = ecmh.encode_prompts(tokenizer, questions)
    ids, mask = batch.input_ids.to(model.device), batch.attention_mask.to(model.device)
    answers = {}
    for setting in settings:
        answers[str(setting)] = []
        for seed in args.seeds:
            started = time.perf_counter()
            out = ecmh.generate(model, ids, attention_mask=mask, alpha=args.alpha, mcmc_steps=setting.steps,
                                tries=setting.tries, max_new_tokens=args.max_new_tokens, block_size=args.block_size,
                                seed=seed, return_dict_in_generate=True)
            numbers = answer_numbers(out)
            answers[str(setting)] += [{"prompt": i, "seed": seed, **{name: values[i] for name, values in numbers.items()}}
                                      for i in range(len(questions))]
            progress(f"model {setting} seed {seed}: {time.perf_counter() - started:.0f} s")
    return {"name": args.model, "alpha": args.alpha, "max_new_tokens": args.max_new_tokens,
            "block_size": args.block_size, "seeds": args.seeds, "questions": list(questions), "answers": answers}


# ---------------------------------------------------------------- the rows of the table

def toy_row(toys: list[dict], setting: Setting) -> dict:
    """Part A's numbers of one setting: cost ratios over every toy's chains, TV / floor per toy and its mean."""
    def mean(name: str, of: Setting) -> float:
        return statistics.fmean(t["samples"][str(of)][name] for t in toys)

    ratios = {t["name"]: t["samples"][str(setting)]["tv_over_floor"] for t in toys}
    return {"passes_ratio": mean("passes", setting) / mean("passes", LOW_TEMP),
            "tokens_ratio": mean("tokens", setting) / mean("tokens", LOW_TEMP),
            "tv_over_floor": ratios, "mean_tv_over_floor": statistics.fmean(ratios.values())}


def paired_difference(answers: list[dict], reference: list[dict], name: str) -> tuple:
    """The mean of `name` less the reference's on the same prompt and seed, its 95% interval clustered by prompt."""
    theirs = {(a["prompt"], a["seed"]): a[name] for a in reference}
    by_prompt = defaultdict(list)
    for a in answers:
        by_prompt[a["prompt"]].append(a[name] - theirs[a["prompt"], a["seed"]])
    return mean_interval(list(by_prompt.values()))


def model_row(model: dict, setting: Setting) -> dict:
    """Part B's numbers of one setting: cost ratios to 1x0's, log p and length against 1x10's."""
    answers, low_temp, reference = (model["answers"][str(s)] for s in (setting, LOW_TEMP, REFERENCE))

    def ratio(name: str) -> float:
        return statistics.fmean(a[name] for a in answers) / statistics.fmean(a[name] for a in low_temp)

    return {"passes_ratio": ratio("passes"), "tokens_ratio": ratio("tokens"),
            "log_p_difference": paired_difference(answers, reference, "log_p"),
            "length_difference": paired_difference(answers, reference, "length")}


def table_rows(settings: list[Setting], toys: list[dict], model: dict | None) -> list[dict]:
    return [{"setting": str(s), "tries": s.tries, "steps": s.steps, "toys": toy_row(toys, s) if toys else None,
             "model": model_row(model, s) if model else None} for s in settings]


def markdown_table(rows: list[dict], toy_names: list[str]) -> list[str]:
    columns = ["K", "N", "passes x (toys)", "tokens x (toys)", *(f"TV/floor {name}" for name in toy_names),
               "TV/floor mean", "passes x (model)", "tokens x (model)", f"log p - {REFERENCE}'s [95% CI]",
               f"length - {REFERENCE}'s [95% CI]"]
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    for row in rows:
        toys, model = row["toys"] or {}, row["model"] or {}
        cells = [str(row["tries"]), str(row["steps"]), number(toys.get("passes_ratio"), 2),
                 number(toys.get("tokens_ratio"), 2),
                 *(number(toys["tv_over_floor"][name], 2) for name in toy_names),
                 number(toys.get("mean_tv_over_floor"), 2), number(model.get("passes_ratio"), 2),
                 number(model.get("tokens_ratio"), 2), interval(model.get("log_p_difference"), 2, signed=True),
                 interval(model.get("length_difference"), 1, signed=True)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


# ---------------------------------------------------------------- the honest question

def closeness(row: dict, source: str) -> float:
    """How far a row is from p^alpha by `source`'s measure: TV / floor, or |log p - the reference's|."""
    return row["toys"]["mean_tv_over_floor"] if source == "toys" else abs(row["model"]["log_p_difference"][0])


def verdicts(rows: list[dict]) -> list[dict]:
    """For each multiple-try row and each measured source, the ECMH row (N >= 1) whose passes ratio is closest, and
    whether the multiple-try row is closer to p^alpha."""
    ecmh_rows = [r for r in rows if r["tries"] == 1 and r["steps"] > 0]
    found = []
    for row in (r for r in rows if r["tries"] > 1):
        verdict = {"setting": row["setting"]}
        for source in (s for s in ("toys", "model") if row[s]):
            passes = row[source]["passes_ratio"]
            match = min(ecmh_rows, key=lambda r: abs(r[source]["passes_ratio"] - passes))
            verdict[source] = {"ecmh": match["setting"], "passes_ratio": [passes, match[source]["passes_ratio"]],
                               "distance": [closeness(row, source), closeness(match, source)],
                               "closer": closeness(row, source) < closeness(match, source)}
            if source == "model":  # a difference of means: say when neither interval tells either from 1x10
                verdict[source]["both_intervals_contain_0"] = all(
                    low <= 0 <= high for _, low, high in (r["model"]["log_p_difference"] for r in (row, match)))
        found.append(verdict)
    return found


def verdict_lines(found: list[dict]) -> list[str]:
    measures = {"toys": "TV/floor", "model": f"|log p - {REFERENCE}'s|"}
    lines = []
    for verdict in found:
        parts = [f"passes {v['passes_ratio'][0]:.2f}x ({source}) vs ECMH {v['ecmh']}'s {v['passes_ratio'][1]:.2f}x: "
                 f"{measures[source]} {v['distance'][0]:.2f} vs {v['distance'][1]:.2f}, "
                 f"{'closer' if v['closer'] else 'not closer'}"
                 + (" (both intervals contain 0)" if v.get("both_intervals_contain_0") else "")
                 for source, v in verdict.items() if source != "setting"]
        lines.append(f"- {verdict['setting']}: " + "; ".join(parts))
    tallies = [f"{measures[source]} {sum(v[source]['closer'] for v in found)} of {len(found)}"
               for source in ("toys", "model") if found and source in found[0]]
    return lines + ["", "Multiple-try closer to p^alpha than ECMH at the closest sequential-passes ratio: "
                    + ("; ".join(tallies) or "no multiple-try setting") + "."]


# ---------------------------------------------------------------- the figure

def plot(rows: list[dict], path: Path) -> None:
    """TV / floor (toys) and the log-p difference (model) against the passes ratio: ECMH one line, each K one more."""
    panels = [(source, label) for source, label in (("toys", "TV / noise floor, mean over toys"),
                                                    ("model", f"log p - ECMH {REFERENCE}'s (95% CI)")) if rows[0][source]]
    figure = Figure(figsize=(5.5 * len(panels), 4.2))  # no pyplot: the caller's backend stays as it is
    for axis, (source, label) in zip(figure.subplots(1, len(panels), squeeze=False)[0], panels):
        for tries in sorted({r["tries"] for r in rows}):
            line = [r for r in rows if r["tries"] == tries]
            x = [r[source]["passes_ratio"] for r in line]
            if source == "toys":
                y, error = [r["toys"]["mean_tv_over_floor"] for r in line], None
            else:
                differences = [r["model"]["log_p_difference"] for r in line]  # (mean, low, high): >= 2 prompts
                y = [mean for mean, _, _ in differences]
                error = [[mean - low for mean, low, _ in differences], [high - mean for mean, _, high in differences]]
            axis.errorbar(x, y, yerr=error, marker="o", capsize=3,
                          label="ECMH (K=1)" if tries == 1 else f"multiple-try, K={tries}")
            for r, xi, yi in zip(line, x, y):
                axis.annotate(f"N={r['steps']}", (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=7)
        axis.axhline(1.0 if source == "toys" else 0.0, color="grey", linestyle=":")
        axis.set_xscale("log")
        if source == "toys":
            axis.set_yscale("log")
        for log_axis in [axis.xaxis, axis.yaxis] if source == "toys" else [axis.xaxis]:
            log_axis.set_major_formatter(FormatStrFormatter("%g"))  # 2, not 2 x 10^0
            log_axis.set_minor_formatter(FormatStrFormatter("%g"))
        axis.set_xlabel(f"sequential passes / plain low-temperature sampling's ({source})")
        axis.set_ylabel(label)
        axis.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


# ---------------------------------------------------------------- the program

def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def machine() -> dict:
    import transformers

    return {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "transformers": transformers.__version__, "python": platform.python_version()}


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python -m benchmarks.frontier", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--settings", type=parse_settings, default=DEFAULT_SETTINGS,
                        help=f"comma-separated KxN: K candidates per MH step (1: ECMH), N MH steps per block; "
                        f"{LOW_TEMP} and {REFERENCE} run too")
    parser.add_argument("--toys", type=int, default=len(TOYS),
                        help=f"how many of the toy models to enumerate (part A): {', '.join(t.name for t in TOYS)}")
    parser.add_argument("--chains", type=int, default=2000, help="chains of each toy's prompt, in one batch")
    parser.add_argument("--model", default="smollm2-135m-instruct", help="the model of part B")
    parser.add_argument("--prompts", type=int, default=len(QUESTIONS), help="how many of the built-in short questions")
    parser.add_argument("--seeds", type=parse_seeds, default="0,1", help="part B's seeds, comma-separated")
    parser.add_argument("--alpha", type=float, default=4.0, help="part B's power of the target p^alpha")
    parser.add_argument("--max-new-tokens", type=int, default=48, help="part B's tokens per answer at most")
    parser.add_argument("--block-size", type=int, default=16, help="part B's tokens per MH block")
    parser.add_argument("--skip-model", action="store_true", help="run part A (the toys) only")
    parser.add_argument("--out", default="benchmarks/results/frontier-smollm2-cpu",
                        help="folder of frontier.md, frontier.json and frontier.png")
    return parser


def checked_arguments(argv: list[str]) -> argparse.Namespace:
    """The arguments, every mistake refused here, before any model loads."""
    parser = build_parser()
    args = parser.parse_args(argv)
    limits = [("--toys", args.toys, 0, len(TOYS), "0 to leave the toys out"), ("--chains", args.chains, 2, None, ""),
              ("--prompts", args.prompts, 2, len(QUESTIONS), "two or more: the intervals are over prompts"),
              ("--max-new-tokens", args.max_new_tokens, 1, None, ""), ("--block-size", args.block_size, 1, None, "")]
    for flag, value, low, high, note in limits:
        if value < low or (high is not None and value > high):
            bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
            parser.error(f"{flag} must be {bounds}{f' ({note})' if note else ''}, got {value}.")
    if args.alpha < 1:
        parser.error(f"--alpha must be at least 1, got {args.alpha}.")
    if args.skip_model and not args.toys:
        parser.error("--skip-model with --toys 0 leaves nothing to measure: drop one of them.")
    return args


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = checked_arguments(argv)
    settings = sorted({LOW_TEMP, REFERENCE, *args.settings})
    toys = run_toys(settings, args)
    model = None if args.skip_model else run_model(settings, args)
    rows = table_rows(settings, toys, model)
    found = verdicts(rows)
    command = shlex.join(["python", "-m", "benchmarks.frontier", *argv])
    text = "\n".join([f"`{command}`", "", *markdown_table(rows, [t["name"] for t in toys]), "",
                      *verdict_lines(found)])
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "frontier.md").write_text(text + "\n")
    results = {"command": command, "arguments": {**vars(args), "settings": [str(s) for s in args.settings]},
               "machine": machine(), "settings": [str(s) for s in settings], "toys": toys, "model": model,
               "rows": rows, "verdicts": found}
    (out / "frontier.json").write_text(json.dumps(results))
    plot(rows, out / "frontier.png")
    progress(f"wrote {out}/frontier.md, frontier.json, frontier.png")
    return results


if __name__ == "__main__":
    main()
