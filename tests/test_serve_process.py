"""`ecmh serve` as a program, and the documented commands run as written at toy size: the README's start, `curl` and
`openai` calls against `ecmh serve` on the embedded SmolLM2; a bad flag refused before the model loads; SIGTERM in
the middle of a request (answered, then the exit by the signal, no traceback); docs/serve.md's uvicorn command with
two workers stopped by Ctrl-C leaving no process behind."""

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install 'ecmh[serve]')")
psutil = pytest.importorskip("psutil")

from ecmh.serve.background import request  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
SERVE_SECTION = README.split("\n## Serve\n")[1].split("\n## ")[0]
DOCS = (ROOT / "docs" / "serve.md").read_text()
ENV = {"PATH": os.path.dirname(sys.executable) + ":/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": "",
       "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2"), **{k: v for k, v in os.environ.items()
                                                                       if k in ("HOME", "ECMH_CACHE")}}
START_TIMEOUT_S = 300  # generous: loading the model on a loaded machine


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def started(words: list[str]) -> tuple[subprocess.Popen, str]:
    """`words` started as a program, and its base URL once /health answers."""
    port = free_port()
    words = [w.replace("8000", str(port)) for w in words]
    process = subprocess.Popen(words, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if request(url + "/health", timeout=5)[0] == 200:
                return process, url
        except OSError:
            time.sleep(0.5)
    process.kill()
    raise AssertionError(f"{words} did not start: {process.stderr.read()[-2000:]}")


def readme_block(language: str) -> str:
    [block] = re.findall(rf"```{language}\n(.*?)```", SERVE_SECTION, re.S)
    return block


@pytest.fixture(scope="module")
def server():
    """The README's `ecmh serve &`, on a free port (the last test stops it)."""
    start = readme_block("bash").splitlines()[0].split("&")[0]
    process, url = started([sys.executable, "-m", "ecmh.cli", *shlex.split(start)[1:], "--port", "8000"])
    yield process, url
    if process.poll() is None:
        process.kill()


@pytest.mark.parametrize("flags, word", [(["--max-batch-rows", "0"], "--max-batch-rows"),
                                         (["--port", "70000"], "--port"), (["--batch-wait-ms", "-1"], "--batch-wait-ms")])
def test_a_bad_flag_is_one_line_and_exit_2_before_the_model_loads(flags, word):
    result = subprocess.run([sys.executable, "-m", "ecmh.cli", "serve", *flags], capture_output=True, text=True,
                            timeout=120, env=ENV)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1 and word in result.stderr


def test_the_readme_curl_command_answers(server):
    _, url = server
    command = re.sub(r"\\\n\s*", " ", readme_block("bash").split("\n", 1)[1]).replace("http://127.0.0.1:8000", url)
    command = command.replace('"max_tokens": 64', '"max_tokens": 4').replace('"mcmc_steps": 4', '"mcmc_steps": 1')
    assert '"max_tokens": 4' in command and '"mcmc_steps": 1' in command
    result = subprocess.run(shlex.split(command), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and '"finish_reason"' in result.stdout and '"ecmh"' in result.stdout, result.stdout


def test_the_readme_openai_example_answers(server, capsys):
    _, url = server
    code = readme_block("python").replace("http://127.0.0.1:8000", url)
    code = code.replace("max_tokens=64", "max_tokens=4").replace('"mcmc_steps": 4', '"mcmc_steps": 1')
    assert "max_tokens=4" in code and '"mcmc_steps": 1' in code
    exec(compile(code, "README.md", "exec"), {"__name__": "__main__"})
    assert "tokens_decoded" in capsys.readouterr().out


def test_sigterm_answers_the_request_in_flight_and_exits_by_the_signal(server):
    process, url = server
    answer = {}
    asking = threading.Thread(target=lambda: answer.update(reply=request(url + "/v1/completions", {
        "prompt": "Count to twenty:", "max_tokens": 24, "mcmc_steps": 2, "seed": 0})))
    asking.start()
    for _ in range(2400):  # until its batch runs (bounded: 2 minutes)
        if "ecmh_rows_in_flight 1" in request(url + "/metrics")[1]:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    asking.join(300)
    assert answer["reply"][0] == 200 and answer["reply"][1]["choices"][0]["text"]
    assert process.wait(120) == -signal.SIGTERM  # uvicorn's graceful shutdown, then the signal's own exit
    assert "Traceback" not in process.stderr.read()


def test_uvicorn_workers_serve_and_ctrl_c_leaves_no_process():
    [line] = re.findall(r"^uvicorn --factory .*$", DOCS, re.M)
    words = shlex.split(line)
    process, url = started([sys.executable, "-m", *words])
    children = psutil.Process(process.pid).children(recursive=True)
    assert len(children) >= 2  # the two workers (and multiprocessing's helpers)
    status, body = request(url + "/v1/completions", {"prompt": "Hi", "max_tokens": 2, "mcmc_steps": 0, "seed": 0})
    assert status == 200, body
    process.send_signal(signal.SIGINT)
    process.wait(120)
    assert "Traceback" not in process.stderr.read()
    _, alive = psutil.wait_procs(children, timeout=60)
    assert not alive
