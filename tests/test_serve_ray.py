"""`ecmh serve` on Ray Serve: two replicas of the server on CPU (a local Ray cluster), each with the tiny chat model,
answer a completion and a chat completion through Ray Serve's HTTP proxy on 127.0.0.1."""

import socket

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install 'ecmh[serve]')")
ray = pytest.importorskip("ray")
serve = pytest.importorskip("ray.serve", reason="Ray Serve is not installed (pip install 'ray[serve]')")

from ecmh.serve.ray_serve import application  # noqa: E402
from ecmh.serve.background import request  # noqa: E402


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def url(tiny_chat_model_dir):
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(application(str(tiny_chat_model_dir), replicas=2, num_cpus=0.5, device="cpu"), route_prefix="/")
    yield f"http://127.0.0.1:{port}"
    serve.shutdown()
    ray.shutdown()


def test_two_replicas_run_and_answer_both_endpoints(url, tiny_chat_model_dir):
    [deployment] = serve.status().applications["default"].deployments.values()
    assert deployment.replica_states.get("RUNNING") == 2
    model = str(tiny_chat_model_dir)
    status, completion = request(url + "/v1/completions", {"model": model, "prompt": "ab", "max_tokens": 3, "seed": 0,
                                                        "mcmc_steps": 1})
    assert status == 200 and completion["choices"][0]["finish_reason"] in ("stop", "length"), completion
    status, chat = request(url + "/v1/chat/completions", {"messages": [{"role": "user", "content": "ab"}],
                                                          "max_tokens": 3, "seed": 0, "mcmc_steps": 1})
    assert status == 200 and chat["choices"][0]["message"]["role"] == "assistant", chat
    assert request(url + "/v1/completions", {"prompt": "ab", "n": 0})[0] == 400  # the app's own refusals, through Ray
