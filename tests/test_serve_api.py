"""`ecmh serve`'s API on the embedded SmolLM2, through the official `openai` client (completions, chat, `n`, `seed`,
`extra_body` options, streaming) and plain HTTP (what a client sends wrong, 32 concurrent clients). One server for
the module, toy sizes: a few tokens, at most two MH steps."""

import concurrent.futures
import urllib.request

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install 'ecmh[serve]')")
openai = pytest.importorskip("openai")

import ecmh  # noqa: E402
from ecmh.serve.app import create_app  # noqa: E402
from ecmh.serve.engine import Engine  # noqa: E402
from ecmh.serve.background import request, serving  # noqa: E402

MODEL = "smollm2-135m-instruct"
QUICK = {"mcmc_steps": 1}  # extra_body of the quick requests


@pytest.fixture(scope="module")
def engine():
    return Engine.load(MODEL, device="cpu")


@pytest.fixture(scope="module")
def url(engine):
    with serving(create_app(engine=engine, max_batch_rows=8, batch_wait_ms=20)) as base:
        yield base


@pytest.fixture(scope="module")
def client(url):
    return openai.OpenAI(base_url=url + "/v1", api_key="not-needed", max_retries=0, timeout=300)


def test_models_health_and_metrics(url):
    assert request(url + "/v1/models")[1]["data"][0]["id"] == MODEL
    assert request(url + "/health") == (200, {"status": "ok", "model": MODEL})
    status, text = request(url + "/metrics")
    assert status == 200 and "# TYPE ecmh_requests_total counter" in text and "ecmh_rows_in_flight 0" in text


def test_a_completion_has_openais_shape_and_ecmhs_numbers(client):
    out = client.completions.create(model=MODEL, prompt="2 + 2 =", max_tokens=4, seed=1, extra_body=QUICK)
    [choice] = out.choices
    assert out.object == "text_completion" and choice.finish_reason in ("stop", "length") and choice.text
    assert out.usage.completion_tokens <= 4 and out.usage.prompt_tokens > 0
    numbers = choice.model_extra["ecmh"]
    assert numbers["tokens_decoded"] >= out.usage.completion_tokens and numbers["log_p"] <= 0
    assert numbers["proposals"] >= 1 and 0 <= numbers["acceptance_rate"] <= 1 and numbers["sequential_passes"] >= 1
    used = out.model_extra["ecmh"]
    assert (used["algorithm"], used["alpha"], used["mcmc_steps"], used["seed"]) == ("mh", 4.0, 1, 1)


def test_the_served_answer_is_ecmh_generate_on_the_prompt_alone_at_its_seed(client, engine):
    out = client.completions.create(model=MODEL, prompt="Name a prime:", max_tokens=5, seed=11, n=2,
                                    extra_body={"mcmc_steps": 2, "alpha": 2})
    ids = engine.tokenizer("Name a prime:").input_ids
    direct = ecmh.generate(engine.model, [ids], alpha=2.0, mcmc_steps=2, max_new_tokens=5, seed=11,
                           num_return_sequences=2, return_dict_in_generate=True)
    texts = [engine.tokenizer.decode(row[len(ids):len(ids) + int(n)], skip_special_tokens=True)
             for row, n in zip(direct.sequences, direct.trace.length)]
    assert [choice.text for choice in out.choices] == texts


def test_chat_with_n_answers_each_chain_and_the_same_seed_answers_the_same(client):
    ask = dict(model=MODEL, messages=[{"role": "user", "content": "What is 3 + 4?"}], max_tokens=4, n=2, seed=5,
               extra_body=QUICK)
    first, again = client.chat.completions.create(**ask), client.chat.completions.create(**ask)
    assert [c.index for c in first.choices] == [0, 1] and first.object == "chat.completion"
    assert all(c.message.role == "assistant" and c.message.content for c in first.choices)
    assert [c.message.content for c in first.choices] == [c.message.content for c in again.choices]


@pytest.mark.parametrize("temperature, alpha", [(None, 4.0), (0.0, 4.0), (0.5, 2.0), (1.0, 1.0)])
def test_temperature_sets_alpha_when_alpha_is_not_given(client, temperature, alpha):
    extra = {} if temperature is None else {"temperature": temperature}
    out = client.completions.create(model=MODEL, prompt="Hi", max_tokens=1, extra_body={"mcmc_steps": 0}, **extra)
    assert out.model_extra["ecmh"]["alpha"] == alpha


def test_a_given_alpha_wins_over_the_clients_temperature(client):
    out = client.completions.create(model=MODEL, prompt="Hi", max_tokens=1, temperature=0.7,
                                    extra_body={"alpha": 3, "mcmc_steps": 0})
    assert out.model_extra["ecmh"]["alpha"] == 3.0


def test_extra_body_picks_the_algorithm_and_its_options(client):
    out = client.completions.create(model=MODEL, prompt="Hi", max_tokens=3, seed=2,
                                    extra_body={"algorithm": "smc", "particles": 2, "resample_every": 2})
    used, numbers = out.model_extra["ecmh"], out.choices[0].model_extra["ecmh"]
    assert (used["algorithm"], used["particles"], used["resample_every"]) == ("smc", 2, 2)
    assert set(numbers) == {"log_p", "tokens_decoded", "tokens_forwarded", "sequential_passes"}  # no MH statistics


def test_a_stop_string_ends_the_answer_before_it(client):
    out = client.completions.create(model=MODEL, prompt="Count: 1, 2, 3,", max_tokens=8, seed=0, stop=[","],
                                    extra_body={"mcmc_steps": 0})
    [choice] = out.choices
    assert "," not in choice.text and choice.finish_reason == "stop"


def test_streaming_sends_the_final_text_then_done(client, url):
    ask = dict(model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=3, seed=4, extra_body=QUICK)
    whole = client.chat.completions.create(**ask)
    chunks = list(client.chat.completions.create(**ask, stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content for c in chunks if c.choices) == whole.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    text = "".join(c.choices[0].text for c in client.completions.create(model=MODEL, prompt="Hi", max_tokens=2, seed=4,
                                                                          stream=True, extra_body=QUICK))
    whole = client.completions.create(model=MODEL, prompt="Hi", max_tokens=2, seed=4, extra_body=QUICK)
    assert text == whole.choices[0].text
    sent = urllib.request.Request(url + "/v1/completions", data=b'{"prompt": "Hi", "max_tokens": 1, "stream": true}',
                                  headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(sent, timeout=300) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.read().decode().endswith("data: [DONE]\n\n")


BAD = [  # (body, status, param, a word of the message)
    (b"{not json", 400, None, "JSON"),
    ({"max_tokens": 2}, 400, "prompt", "required"),
    ({"prompt": "Hi", "model": "gpt-4o"}, 404, "model", MODEL),
    ({"prompt": "Hi", "n": 0}, 400, "n", "greater than or equal to 1"),
    ({"prompt": "Hi", "max_tokens": 0}, 400, "max_tokens", "greater than or equal to 1"),
    ({"prompt": "Hi", "max_tokens": 10**6}, 400, "max_tokens", "context"),
    ({"prompt": "Hi", "alpha": 0.5}, 400, "alpha", ">= 1"),
    ({"prompt": "Hi", "alpha": "high"}, 400, "alpha", "number"),
    ({"prompt": "Hi", "temperature": 2}, 400, "temperature", "alpha"),
    ({"prompt": "Hi", "particles": 4}, 400, "particles", 'algorithm="smc"'),
    ({"prompt": "Hi", "algorithm": "beam"}, 400, "algorithm", "mh"),
    ({"prompt": "Hi", "mcmc_step": 2}, 400, "mcmc_step", "mcmc_steps"),
    ({"prompt": "Hi", "presence_penalty": 1}, 400, "presence_penalty", "p^alpha"),
    ({"prompt": "  "}, 400, "prompt", "empty"),
    ({"prompt": [1, 2, 3]}, 400, "prompt", "token ids"),
    ({"prompt": "Hi", "n": 9}, 400, "n", "--max-batch-rows"),
    ({"prompt": "Hi", "stop": [""]}, 400, "stop", "empty"),
    (b'{"prompt": "' + b"x" * 3_000_000 + b'"}', 413, None, "limit"),
]


@pytest.mark.parametrize("body, status, param, word", BAD, ids=[str(i) for i in range(len(BAD))])
def test_a_bad_completion_request_gets_openais_error_body(url, body, status, param, word):
    got, answer = request(url + "/v1/completions", body)
    assert got == status, answer
    assert set(answer["error"]) == {"message", "type", "param", "code"} and answer["error"]["param"] == param
    assert word in answer["error"]["message"]


@pytest.mark.parametrize("body, param, word", [
    ({"model": MODEL}, "messages", "required"),
    ({"messages": []}, "messages", "empty"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "messages.0.content", "text"),
])
def test_a_bad_chat_request_gets_openais_error_body(url, body, param, word):
    got, answer = request(url + "/v1/chat/completions", body)
    assert got == 400 and answer["error"]["param"].startswith(param) and word in answer["error"]["message"]


def test_neutral_openai_fields_and_the_user_field_are_accepted(url):
    status, answer = request(url + "/v1/completions", {"prompt": "Hi", "max_tokens": 1, "mcmc_steps": 0, "user": "me",
                                                    "logprobs": None, "presence_penalty": 0, "echo": False})
    assert status == 200, answer


def test_unknown_routes_and_methods_get_openais_error_body(url):
    assert request(url + "/v1/embeddings", {"input": "x"})[0] == 404
    status, answer = request(url + "/v1/completions", method="GET")
    assert status == 405 and "error" in answer


def test_32_concurrent_clients_each_get_their_own_answer_once(url, client):
    def ask(seed):
        body = {"prompt": f"Say {seed}", "max_tokens": 2, "mcmc_steps": 0, "seed": seed}
        return request(url + "/v1/completions", body)

    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(ask, range(100, 132)))
    assert [status for status, _ in answers] == [200] * 32
    assert [body["ecmh"]["seed"] for _, body in answers] == list(range(100, 132))  # each its own, none lost
    assert len({body["id"] for _, body in answers}) == 32
    assert max(body["ecmh"]["batch_rows"] for _, body in answers) > 1  # they shared batches
    assert request(url + "/health")[0] == 200  # alive after
