"""The latency frontier on a benchmark task: `python -m benchmarks.frontier_humaneval`.

`benchmarks.frontier` measures ECMH against multiple-try ECMH on toy models and the embedded SmolLM2; this reads
the benchmark runner's rows of a real task instead (Qwen2.5-Coder-0.5B over HumanEval/0-31 in
`benchmarks/results/frontier-qwen-humaneval`, whose `run.sh KxN` writes one folder per setting) and pairs them the
same way: sequential passes and decoded tokens per answer as ratios to plain low-temperature sampling's (1x0),
mean log p and length paired with ECMH at N = 10's (1x10) on the same problems and seed, 95% intervals clustered by
problem, and for each multiple-try setting whether it is closer to ECMH N = 10's log p than the ECMH setting of
the closest passes ratio.

The evidence folder (`--evidence`, same model, task and settings) gives 1x0 (`low_temp`), 1x10 (`ecmh`) and, where
present, 8x2 (`ecmh_mtm`). Its ECMH rows of seed 0 predate the passes counter: 1x10's passes on a problem are those
of its seed-1 answer to the same problem (the table says so).
"""

import argparse
import json
import re
import shlex
import sys
from pathlib import Path

from ecmh.commandline import ArgumentParser

from . import frontier
from .frontier import LOW_TEMP, REFERENCE, Setting
from .help import HelpFormatter
from .results_file import read_rows

FOLDER = Path("benchmarks/results/frontier-qwen-humaneval")
EVIDENCE = Path("benchmarks/results/qwen2.5-coder-0.5b-instruct-humaneval-alpha4")
EVIDENCE_METHODS = {"low_temp": LOW_TEMP, "ecmh": REFERENCE, "ecmh_mtm": Setting(8, 2)}
SETTING_FOLDER = re.compile(r"^(\d+)x(\d+)$")


def method_rows(folder: Path, method: str) -> list[dict]:
    """Every row of `method` in a results folder, over its task subfolders and shards."""
    return [row for path in sorted(folder.glob(f"*/{method}*.jsonl"))
            if path.name.split(".")[0] == method for row in read_rows(path)]


def answers(rows: list[dict], problems: set, seed: int) -> list[dict]:
    """`benchmarks.frontier`'s answer records of the rows of `seed` on `problems`."""
    return [{"prompt": row["problem_id"], "seed": row["seed"], "passes": row.get("sequential_passes"),
             "tokens": row["tokens_decoded"], "log_p": row["log_p"], "length": row["completion_tokens"]}
            for row in rows if row["seed"] == seed and row["problem_id"] in problems]


def with_passes_of(records: list[dict], other_seed: list[dict]) -> list[dict]:
    """`records` whose missing passes are taken from the same problem's answer in `other_seed`."""
    passes = {a["prompt"]: a["passes"] for a in other_seed if a["passes"] is not None}
    return [{**a, "passes": passes[a["prompt"]] if a["passes"] is None else a["passes"]} for a in records]


def collect(folder: Path, evidence: Path, problems: set, seed: int) -> dict[str, list[dict]]:
    """Answers per setting: the evidence folder's methods, then every `KxN` subfolder of `folder` (method `ecmh`)."""
    found = {}
    for method, setting in EVIDENCE_METHODS.items():
        rows = method_rows(evidence, method)
        records = answers(rows, problems, seed)
        if records:
            found[str(setting)] = with_passes_of(records, answers(rows, problems, 1 - seed))
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and SETTING_FOLDER.match(p.name)):
        records = answers(method_rows(sub, "ecmh"), problems, seed)
        if records:
            found[sub.name] = records
    return found


def problem_ids(evidence: Path, limit: int) -> set:
    """The first `limit` problems of the task, in the evidence's low-temperature rows' order."""
    ordered = []
    for row in method_rows(evidence, "low_temp"):
        if row["problem_id"] not in ordered:
            ordered.append(row["problem_id"])
    return set(ordered[:limit])


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python -m benchmarks.frontier_humaneval", description=__doc__,
                            formatter_class=HelpFormatter)
    parser.add_argument("--folder", default=str(FOLDER), help="the folder of KxN results folders (run.sh writes them)")
    parser.add_argument("--evidence", default=str(EVIDENCE), help="the results folder of 1x0, 1x10 and 8x2 rows")
    parser.add_argument("--limit", type=int, default=32, help="the first N problems (N >= 2)")
    parser.add_argument("--seed", type=int, default=0, choices=(0, 1), help="the seed whose answers are paired")
    return parser


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    if args.limit < 2:
        build_parser().error(f"--limit must be at least 2 (an interval needs two problems), got {args.limit}")
    folder, evidence = Path(args.folder), Path(args.evidence)
    for name, path in (("--folder", folder), ("--evidence", evidence)):
        if not path.is_dir():
            build_parser().error(f"{name} {path} is not a folder (run.sh writes --folder's; --evidence is a results folder)")
    problems = problem_ids(evidence, args.limit)
    found = collect(folder, evidence, problems, args.seed)
    missing = [str(s) for s in (LOW_TEMP, REFERENCE) if str(s) not in found]
    if missing:
        build_parser().error(f"--evidence {evidence} has no rows of {', '.join(missing)} on these problems")
    settings = sorted(Setting(*map(int, SETTING_FOLDER.match(name).groups())) for name in found)
    rows = frontier.table_rows(settings, [], {"answers": found})
    for row in rows:
        row["model"]["problems"] = len(found[row["setting"]])
    verdicts = frontier.verdicts(rows)
    command = shlex.join(["python", "-m", "benchmarks.frontier_humaneval", *argv])
    text = "\n".join([f"`{command}`", "", f"{len(problems)} problems, seed {args.seed}; 1x10's passes from its "
                      "seed-1 answers (its seed-0 rows predate the counter).", "",
                      *frontier.markdown_table(rows, []), "", *frontier.verdict_lines(verdicts)])
    print(text)
    (folder / "frontier.md").write_text(text + "\n")
    results = {"command": command, "problems": sorted(problems), "seed": args.seed, "rows": rows, "verdicts": verdicts}
    (folder / "frontier.json").write_text(json.dumps(results))
    frontier.plot(rows, folder / "frontier.png")
    frontier.progress(f"wrote {folder}/frontier.md, frontier.json, frontier.png")
    return results


if __name__ == "__main__":
    main()
