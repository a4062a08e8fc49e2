"""lm-evaluation-harness's own `local-completions` model pointed at `ecmh serve` (docs/serve.md's command, at toy
size: the tiny chat model, a local three-question task): its answers equal the `ecmh` lm-eval model's at the same
seed and settings, request by request."""

import json
import re
import shlex
import sys
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install 'ecmh[serve]')")
lm_eval = pytest.importorskip("lm_eval", reason="lm-eval is not installed (pip install 'ecmh[lm-eval]')")
pytest.importorskip("tenacity", reason="lm-eval's API models need lm-eval[api]")

import ecmh.harness  # noqa: E402
from ecmh.serve.app import create_app  # noqa: E402
from ecmh.serve.background import serving  # noqa: E402
from lm_eval.api.instance import Instance  # noqa: E402
from lm_eval_task import write_arithmetic_task  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = [("1 + 1", "2"), ("2 + 3", "5"), ("9 - 3", "6")]
GENERATION = {"until": ["\n", "."], "max_gen_toks": 6, "mcmc_steps": 2, "do_sample": False, "temperature": 0.0}


def documented_command() -> list[str]:
    """The words of docs/serve.md's `lm_eval run --model local-completions ...` command."""
    [line] = re.findall(r"^lm_eval run --model local-completions .*$", (ROOT / "docs" / "serve.md").read_text(), re.M)
    return shlex.split(line)


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory):
    return write_arithmetic_task(tmp_path_factory.mktemp("serve-task"), "serve_arithmetic", QUESTIONS, GENERATION)


def test_local_completions_against_the_server_answers_as_the_ecmh_model(task_dir, tiny_chat_model_dir, tmp_path,
                                                                         monkeypatch):
    from lm_eval.__main__ import cli_evaluate

    model = str(tiny_chat_model_dir)
    with serving(create_app(model, device="cpu")) as url:
        words = documented_command()
        words = [w.replace("http://127.0.0.1:8000", url).replace("smollm2-135m-instruct", model)
                 .replace("my_tasks/", str(task_dir)).replace("my_task", "serve_arithmetic") for w in words]
        monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
        monkeypatch.setattr(sys, "argv", [*words, "--log_samples", "--output_path", str(tmp_path)])
        cli_evaluate()
    [samples] = tmp_path.rglob("samples_serve_arithmetic_*.jsonl")
    served = {json.loads(line)["doc"]["question"]: json.loads(line)["resps"][0][0]
              for line in samples.read_text().splitlines()}
    assert len(served) == len(QUESTIONS) and any(served.values())  # not all empty: the comparison means something

    lm = ecmh.harness.ECMHLM(pretrained=model, seed=0, device="cpu")
    for question, _ in QUESTIONS:  # one call each: the ecmh model seeds its i-th batch with seed + i
        context = f"Q: What is {question}?\nA:"
        [answer] = lm.generate_until([Instance("generate_until", {}, (context, dict(GENERATION)), 0)])
        assert served[question] == answer, question
