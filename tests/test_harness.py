"""ecmh inside lm-evaluation-harness, offline: a task from a local YAML over a local JSONL file."""

import subprocess
import sys
from pathlib import Path

import pytest

lm_eval = pytest.importorskip("lm_eval", reason="lm-eval is not installed (pip install 'ecmh[lm-eval]')")

import ecmh.harness  # noqa: E402,F401  (registers the model type "ecmh")
from lm_eval.tasks import TaskManager  # noqa: E402
from lm_eval_task import write_arithmetic_task  # noqa: E402

QUESTIONS = [("1 + 1", "2"), ("2 + 3", "5"), ("4 + 4", "8"), ("9 - 3", "6"), ("7 - 7", "0")]
UNTIL = ["\n", "."]
GENERATION = {"until": UNTIL, "max_gen_toks": 6, "mcmc_steps": 0, "do_sample": False, "temperature": 0.0}
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory):
    return write_arithmetic_task(tmp_path_factory.mktemp("lm-eval-task"), "ecmh_local_arithmetic", QUESTIONS, GENERATION)


@pytest.mark.parametrize("chat", [False, True])
def test_simple_evaluate_runs_a_local_task_and_logs_ecmh_numbers(task_dir, tiny_chat_model_dir, monkeypatch, chat):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    results = lm_eval.simple_evaluate(
        model="ecmh", model_args=f"pretrained={tiny_chat_model_dir},mcmc_steps=2,alpha=4,batch_size=3,seed=1",
        tasks=["ecmh_local_arithmetic"], task_manager=TaskManager(include_path=str(task_dir)), log_samples=True,
        apply_chat_template=chat,
    )
    assert 0.0 <= results["results"]["ecmh_local_arithmetic"]["exact_match,none"] <= 1.0
    samples = results["samples"]["ecmh_local_arithmetic"]
    assert len(samples) == len(QUESTIONS)
    for sample in samples:
        [response] = sample["resps"][0]
        assert not any(stop in response for stop in UNTIL)  # the text before the stop string
        [record] = sample["arguments"][0][1]["ecmh"]
        assert 1 <= record["tokens_decoded"] and record["log_p"] <= 0
        assert record["proposals"] == 0  # the task's mcmc_steps: 0 overrides --model_args mcmc_steps=2
        assert ("<|im_start|>" in sample["arguments"][0][0]) == chat  # lm-eval's chat-template switch


def test_loglikelihood_is_lm_evals_own_hf_model(tiny_chat_model_dir):
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    lm = ecmh.harness.ECMHLM(pretrained=str(tiny_chat_model_dir))
    requests = [Instance("loglikelihood", {}, ("Q: 1 + 1?\nA:", " 2"), 0), Instance("loglikelihood", {}, ("x", "yz"), 1)]
    plain = HFLM(pretrained=lm.model, tokenizer=lm.tokenizer, batch_size=2)
    assert lm.loglikelihood(requests) == plain.loglikelihood(requests)


def test_the_command_line_registers_ecmh(task_dir, tiny_chat_model_dir, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "ecmh.harness", "run", "--model", "ecmh", "--model_args",
         f"pretrained={tiny_chat_model_dir},mcmc_steps=1", "--batch_size", "5", "--tasks", "ecmh_local_arithmetic",
         "--include_path", str(task_dir), "--output_path", str(tmp_path), "--limit", "2"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,  # not a git repository
        env={"PATH": "/usr/bin:/bin", "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT),
             "CUDA_VISIBLE_DEVICES": ""},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "exact_match" in result.stdout
    # none of the noise issue 27 found: git outside a repository, HFLM on a model object, lm-eval's cuda default
    for noise in ("fatal: not a git repository", "`pretrained` model kwarg", "is not available here"):
        assert noise not in result.stderr + result.stdout, noise
