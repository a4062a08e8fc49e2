"""`python -m benchmarks run`: sample and grade every problem of a task with each method, resumably.

For each seed and method, problems go through the sampler `--batch-size` at a time; each answer
is graded and appended to the results file as soon as its batch is done (`results_file.py`).
Methods run in the order given, except that best-of-N runs after `ecmh`: its budget per problem
is the decoded tokens of the same problem and seed under ECMH. A sample's `seconds` is its
batch's wall time divided by the batch size.
"""

import itertools
import subprocess
import time
from pathlib import Path
from typing import Optional, Sequence

from tqdm.auto import tqdm

from ecmh.backends.vllm import is_vllm_engine
from ecmh.checks import check_int
from ecmh.stopping import text_before_stop_string

from . import methods
from .results_file import ResultsFile
from .tasks import get_task


def order_methods(names: Sequence[str]) -> list[str]:
    """The methods to run, `all` expanded, each once, best-of-N after `ecmh` (its budget)."""
    expanded = []
    for name in names:
        for method in methods.METHODS if name == "all" else [name]:
            if method not in methods.METHODS:
                raise ValueError(f"Unknown --method {method!r}: use one of {', '.join(methods.METHODS)} or all.")
            if method not in expanded:
                expanded.append(method)
    if any(m in methods.BEST_OF_N for m in expanded) and "ecmh" not in expanded:
        expanded.insert(0, "ecmh")
    return sorted(expanded, key=lambda m: m in methods.BEST_OF_N)


def model_slug(model: str) -> str:
    return Path(str(model).rstrip("/")).name.replace("/", "--")


def run(
    task_name: str,
    method_names: Sequence[str],
    model,
    tokenizer,
    *,
    model_name: str,
    seeds: Sequence[int] = (0,),
    out: Optional[Path] = None,
    limit: Optional[int] = None,
    data: Optional[str] = None,
    settings: methods.RunSettings = methods.RunSettings(),
    batch_size: int = 8,
    chat: bool = True,
    shard: Optional[tuple] = None,
    select: str = "log_p",
    progress: bool = True,
) -> Path:
    """Run the benchmark and return the results folder (see the module docstring)."""
    import ecmh

    check_int("--batch-size", batch_size, 1)
    task = get_task(task_name, data=data)
    out = Path(out) if out is not None else Path("ecmh-results") / model_slug(model_name)
    if select not in methods.SELECTORS:
        raise ValueError(f"Unknown --select {select!r}: use one of {', '.join(methods.SELECTORS)}.")
    extra = {"chat": chat, **({"select": select} if select != "log_p" else {})}
    order = order_methods(method_names)
    files = {m: ResultsFile(out, task.name, m, {**settings.config(m), **extra}, shard) for m in order}
    ecmh_budget = files["ecmh"].done if "ecmh" in files else {}
    version = library_version()
    backend = "vllm" if is_vllm_engine(model) else "transformers"

    def text(tokens):
        return text_before_stop_string(tokenizer.decode(tokens, skip_special_tokens=True), settings.stop_strings)

    work = []  # (seed, method, problems still to do)
    for seed in seeds:
        problems = list(itertools.islice(task.problems(seed=seed), limit))
        if shard:
            problems = problems[shard[0] :: shard[1]]
        for method in order:
            todo = [p for p in problems if (model_name, task.name, method, seed, p["id"]) not in files[method].done]
            work.append((seed, method, todo))
    bar = tqdm(total=sum(len(todo) for *_, todo in work), desc=f"{task.name}", unit="sample", disable=not progress)
    for seed, method, todo in work:
        bar.set_postfix_str(f"{method} seed {seed}")
        for batch in _chunks(todo, batch_size):
            ids = [p["id"] for p in batch]
            encoded = ecmh.encode_prompts(tokenizer, [p["prompt"] for p in batch], chat=chat)
            input_ids, attention_mask = encoded.input_ids, encoded.attention_mask  # generate moves them to the model
            budgets = None
            if method in methods.BEST_OF_N:
                budgets = [ecmh_budget[(model_name, task.name, "ecmh", seed, i)]["tokens_decoded"] for i in ids]
            start = time.perf_counter()
            answers = methods.sample(method, model, input_ids, attention_mask, settings,
                                     methods.stable_seed(seed, method, *ids), budgets, tokenizer)
            seconds = (time.perf_counter() - start) / len(batch)
            for problem, answer in zip(batch, answers):
                completion, tokens, log_p, selectors = text(answer.tokens), answer.tokens, answer.log_p, {}
                if answer.candidates:
                    chosen, selectors = _best_of_n_choices(task, problem, [text(c.tokens) for c in answer.candidates],
                                                           answer.candidates, select)
                    completion, tokens, log_p = chosen
                files[method].append({
                    "model": model_name, "task": task.name, "method": method, "seed": seed, "problem_id": problem["id"],
                    "prompt": problem["prompt"], "completion": completion, "answer": problem.get("answer"),
                    **task.verdict(problem, completion),
                    "tokens_decoded": answer.cost.tokens_decoded, "tokens_forwarded": answer.cost.tokens_forwarded,
                    "sequential_passes": answer.cost.sequential_passes, "seconds": seconds,
                    "acceptance_rate": answer.acceptance_rate, "acceptance_by_block": answer.acceptance_by_block,
                    "log_p": log_p, "completion_tokens": len(tokens), "ecmh_version": version, "backend": backend, **selectors,
                })
            bar.update(len(batch))
    bar.close()
    return out


def library_version() -> str:
    """ecmh's version, with the git commit of the checkout it runs from (`.dirty`: uncommitted code changes;
    results files do not count)."""
    import ecmh

    root = Path(ecmh.__file__).resolve().parents[1]
    if not (root / ".git").exists():  # an installed copy, not a checkout
        return ecmh.__version__
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no", "--",
                                "ecmh", "benchmarks", ":!benchmarks/results"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ecmh.__version__
    return f"{ecmh.__version__}+g{commit}{'.dirty' if dirty else ''}"


def _best_of_n_choices(task, problem: dict, texts: list[str], candidates: list, select: str):
    """The draw `select` picks as (completion, tokens, log p), and the row fields that say what every selector
    would have picked: `selected_by`, `draws`, `by_selector` ({selector: {"correct", "draw"}})."""
    extracted = [task.extract(problem, t) for t in texts]
    picks = {name: methods.choose(candidates, name, extracted) for name in methods.SELECTORS}
    verdicts = {i: bool(task.grade(problem, texts[i])) for i in set(picks.values())}
    chosen = picks[select]
    return (texts[chosen], candidates[chosen].tokens, candidates[chosen].log_p), {
        "selected_by": select, "draws": len(candidates),
        "by_selector": {name: {"correct": verdicts[i], "draw": i} for name, i in picks.items()},
    }


def _chunks(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]

