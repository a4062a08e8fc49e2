"""Concurrent requests share the batch, and a request's answer does not depend on which others shared it: per-prompt
seeds in `ecmh.generate` (with a negative control), the batcher's rules with a stand-in sampler, and the same
requests through a server alone and batched, on a tiny random chat model."""

import concurrent.futures
import threading

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install 'ecmh[serve]')")

import ecmh  # noqa: E402
from conftest import tiny_model  # noqa: E402
from ecmh.serve import jobs, schemas  # noqa: E402
from ecmh.serve.app import create_app  # noqa: E402
from ecmh.serve.batcher import Batcher, ServerClosing  # noqa: E402
from ecmh.serve.engine import Engine  # noqa: E402
from ecmh.serve.background import request, serving  # noqa: E402

PROMPTS = [[1, 4, 5], [6, 1, 7, 7, 4], [5]]  # different lengths: each batch pads them differently
SETTINGS = dict(max_new_tokens=6, mcmc_steps=3, num_return_sequences=2, eos_token_id=2, pad_token_id=3)


def answers(prompts, seed) -> list:
    """Each row's continuation, up to its end, of a call of `ecmh.generate` on the tiny model."""
    out = ecmh.generate(tiny_model(vocab_size=8), prompts, seed=seed, return_dict_in_generate=True, **SETTINGS)
    width = max(len(prompt) for prompt in prompts)
    return [row[width:width + int(n)].tolist() for row, n in zip(out.sequences, out.trace.length)]


def test_per_prompt_seeds_give_each_prompt_its_answer_alone():
    batched = answers(PROMPTS, [10, 11, 12])
    for index, (prompt, seed) in enumerate(zip(PROMPTS, [10, 11, 12])):
        assert batched[2 * index:2 * index + 2] == answers([prompt], seed), index


def test_negative_control_one_seed_for_the_batch_makes_answers_depend_on_it():
    assert any(answers(PROMPTS, seed)[-2:] != answers(PROMPTS[-1:], seed) for seed in range(4))


class Job:
    def __init__(self, name, group="a", rows=1):
        self.name, self.group, self.rows = name, group, rows


class Sampler:
    """A stand-in for `Engine.sample`: records each call's jobs, refuses two threads at once, holds the first call
    until `release` is set."""

    def __init__(self):
        self.calls, self.inside, self.release = [], threading.Lock(), threading.Event()

    def __call__(self, batch):
        assert self.inside.acquire(blocking=False), "two threads in the sampler"
        try:
            self.release.wait(60)
            self.calls.append([job.name for job in batch])
            if any(job.name == "boom" for job in batch):
                raise ValueError("a sampler error")
            return [job.name.upper() for job in batch]
        finally:
            self.inside.release()


def _started(batcher, sampler, first):
    """`first` submitted and its batch running (held by `sampler`)."""
    future = batcher.submit(first)
    for _ in range(6000):
        if future.running():
            return future
        threading.Event().wait(0.01)
    raise AssertionError("the first batch did not start")


def test_waiting_jobs_of_one_group_share_the_next_call_up_to_max_rows_in_arrival_order():
    sampler = Sampler()
    batcher = Batcher(sampler, max_rows=4, wait_s=0)
    first = _started(batcher, sampler, Job("first"))
    jobs_ = [Job("a1", rows=2), Job("b1", group="b"), Job("a2"), Job("a3", rows=2), Job("a4")]
    futures = [batcher.submit(job) for job in jobs_]
    sampler.release.set()
    assert [f.result(60) for f in [first, *futures]] == ["FIRST", "A1", "B1", "A2", "A3", "A4"]
    assert sampler.calls == [["first"], ["a1", "a2", "a4"], ["b1"], ["a3"]]  # a3's 2 rows did not fit beside a1, a2
    batcher.close()


def test_the_sampler_is_never_entered_from_two_threads():
    sampler = Sampler()
    sampler.release.set()
    batcher = Batcher(sampler, max_rows=3, wait_s=0.001)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        futures = list(pool.map(lambda i: batcher.submit(Job(f"j{i}", group=i % 3)), range(40)))
    assert [f.result(60) for f in futures] == [f"J{i}" for i in range(40)]
    batcher.close()


def test_a_cancelled_job_is_dropped_and_a_failing_batch_fails_only_its_jobs():
    sampler = Sampler()
    batcher = Batcher(sampler, max_rows=4, wait_s=0)
    first = _started(batcher, sampler, Job("first"))
    gone, boom, other = batcher.submit(Job("gone")), batcher.submit(Job("boom", group="x")), batcher.submit(Job("ok"))
    gone.cancel()  # its client left while it waited
    sampler.release.set()
    assert first.result(60) == "FIRST" and other.result(60) == "OK"
    with pytest.raises(ValueError, match="a sampler error"):
        boom.result(60)
    assert ["gone"] not in sampler.calls and all("gone" not in call for call in sampler.calls)
    assert batcher.submit(Job("after")).result(60) == "AFTER"  # the worker goes on
    batcher.close()


def test_close_answers_the_batch_in_flight_and_refuses_those_waiting():
    sampler = Sampler()
    batcher = Batcher(sampler, max_rows=1, wait_s=0)
    first = _started(batcher, sampler, Job("first"))
    waiting = batcher.submit(Job("waiting"))
    closing = threading.Thread(target=batcher.close)
    closing.start()
    with pytest.raises(ServerClosing):
        waiting.result(60)
    sampler.release.set()
    closing.join(60)
    assert first.result(60) == "FIRST" and not closing.is_alive()
    with pytest.raises(ServerClosing):
        batcher.submit(Job("late")).result(60)


def test_seeds_group_mh_rows_together_and_run_seeded_smc_requests_alone():
    completion, _ = schemas.request_models()

    def group(**fields):
        return jobs.build(completion(prompt="x", **fields), [[1]], 100, 8).group

    assert group(seed=1) == group(seed=2) == group()  # MH: rows with different seeds share a call
    assert group(seed=1, max_tokens=3) != group(seed=1)
    assert group(algorithm="smc", seed=1) != group(algorithm="smc", seed=1)  # each alone: same seed, same answer
    assert group(algorithm="smc") == group(algorithm="smc")  # unseeded SMC requests share a call


@pytest.fixture(scope="module")
def engine(tiny_chat_model_dir):
    return Engine.load(str(tiny_chat_model_dir), device="cpu")


REQUESTS = [{"prompt": "a", "seed": 1}, {"prompt": "a much longer prompt", "seed": 2},
            {"prompt": "middling one", "seed": 3}]


def test_a_request_answers_the_same_alone_and_batched_with_others(engine):
    ask = dict(max_tokens=6, mcmc_steps=3, block_size=2, n=2)  # requests share a call when their `n` is the same
    with serving(create_app(engine=engine, max_batch_rows=8, batch_wait_ms=0)) as url:
        alone = [request(url + "/v1/completions", {**body, **ask})[1] for body in REQUESTS]
    rows = 2 * len(REQUESTS)
    # the batch runs once all rows are in, well before the wait of a minute is over
    with serving(create_app(engine=engine, max_batch_rows=rows, batch_wait_ms=60_000)) as url:
        with concurrent.futures.ThreadPoolExecutor(len(REQUESTS)) as pool:
            batched = list(pool.map(lambda body: request(url + "/v1/completions", {**body, **ask})[1], REQUESTS))
    assert [a["ecmh"]["batch_rows"] for a in alone] == [2, 2, 2]
    assert [b["ecmh"]["batch_rows"] for b in batched] == [rows] * len(REQUESTS)
    for one, shared in zip(alone, batched):
        assert [c["text"] for c in one["choices"]] == [c["text"] for c in shared["choices"]]
        assert [c["ecmh"]["log_p"] for c in one["choices"]] == pytest.approx(
            [c["ecmh"]["log_p"] for c in shared["choices"]])


def test_a_client_that_leaves_mid_request_costs_the_others_nothing(engine):
    import socket

    ask = {"prompt": "a much longer prompt", "seed": 2, "max_tokens": 6, "mcmc_steps": 3, "block_size": 2}
    with serving(create_app(engine=engine, max_batch_rows=8, batch_wait_ms=0)) as url:
        alone = request(url + "/v1/completions", ask)[1]
        body = b'{"prompt": "left", "max_tokens": 40, "mcmc_steps": 3, "seed": 9}'
        with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1]))) as leaving:
            leaving.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                            b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        status, answer = request(url + "/v1/completions", ask)
        assert status == 200 and answer["choices"] == alone["choices"]
        assert request(url + "/health")[0] == 200
