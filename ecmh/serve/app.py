"""The OpenAI-compatible server as an ASGI application factory: `create_app(model, ...)` loads the model once and
returns a FastAPI app with `GET /v1/models`, `POST /v1/completions`, `POST /v1/chat/completions`, `GET /health` and
`GET /metrics`. It runs under uvicorn (`ecmh serve`, or `uvicorn --factory ecmh.serve.app:create_app`, one model per
worker) and on Ray Serve (`ecmh.serve.ray_serve`, one model per replica). See docs/serve.md."""

import asyncio
import contextlib
import logging
from typing import AsyncIterator, Optional

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

from ..checks import check_int, check_number
from ..models import DEFAULT_MODEL
from . import errors, jobs, schemas
from .batcher import BATCH_WAIT_MS, MAX_BATCH_ROWS, Batcher, ServerClosing
from .engine import Engine
from .errors import APIError
from .metrics import Metrics
from .responses import KEEP_ALIVE, Reply, event

MAX_BODY_BYTES = 1 << 20  # a request body past this is refused (413): a prompt fills the context long before
TICK_S = 2.0  # how often a waiting request checks its client, and a stream sends a keep-alive comment
log = logging.getLogger("ecmh.serve")


def create_app(model: str = DEFAULT_MODEL, backend: str = "transformers", *, max_batch_rows: int = MAX_BATCH_ROWS,
               batch_wait_ms: float = BATCH_WAIT_MS, device: Optional[str] = None, dtype: Optional[str] = None,
               tensor_parallel_size: int = 1, engine: Optional[Engine] = None) -> FastAPI:
    """The server's app, the model `model` (an embedded name, hub id or local path) loaded on `backend` ("transformers"
    or "vllm", with `tensor_parallel_size`), or `engine` if given (a model loaded already). Requests arriving within
    `batch_wait_ms` of each other share a call of up to `max_batch_rows` rows."""
    check_settings(max_batch_rows, batch_wait_ms)
    engine = engine or Engine.load(model, backend, device=device, dtype=dtype, tensor_parallel_size=tensor_parallel_size)
    metrics = Metrics(max_batch_rows)
    batcher = Batcher(engine.sample, max_batch_rows, batch_wait_ms / 1000, on_batch=metrics.batch)
    metrics.rows_in_flight = lambda: batcher.rows_in_flight
    CompletionRequest, ChatCompletionRequest = schemas.request_models()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        await asyncio.to_thread(batcher.close)  # after uvicorn answered the requests in flight

    app = FastAPI(title="ecmh", description="Power-distribution sampling p^alpha behind OpenAI's API", lifespan=lifespan)
    app.state.engine, app.state.batcher, app.state.metrics = engine, batcher, metrics
    errors.install(app)
    app.add_middleware(errors.BodyLimit, max_bytes=MAX_BODY_BYTES)

    @app.middleware("http")
    async def count(request: Request, call_next):
        response = await call_next(request)
        routes = {route.path for route in app.routes}
        metrics.request(request.url.path if request.url.path in routes else "other", response.status_code)
        return response

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": engine.name}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": engine.name, "object": "model", "created": 0, "owned_by": "ecmh",
                                            "max_model_len": engine.context_length}]}

    @app.get("/metrics")
    async def prometheus():
        return PlainTextResponse(metrics.text(), media_type="text/plain; version=0.0.4")

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request):
        prompts = engine.encode_text(_checked(body, engine, schemas.prompt_texts))
        return await _answer(body, prompts, request, chat=False)

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionRequest, request: Request):
        prompts = engine.encode_chat(_checked(body, engine, schemas.chat_messages))
        return await _answer(body, prompts, request, chat=True)

    async def _answer(body, prompts: list, request: Request, chat: bool):
        job = jobs.build(body, prompts, engine.context_length, max_batch_rows)
        future = asyncio.wrap_future(batcher.submit(job))
        reply = Reply(engine.name, chat)
        if body.stream:
            include_usage = body.stream_options is not None and body.stream_options.include_usage
            return StreamingResponse(_stream(future, reply, job, include_usage), media_type="text/event-stream")
        while not future.done():
            await asyncio.wait({future}, timeout=TICK_S)
            if not future.done() and await request.is_disconnected():
                future.cancel()  # dropped if its batch has not started; else its answer is discarded
                return JSONResponse({}, status_code=499)
        answer = _result(future)
        metrics.answered([choice.stats for choice in answer.choices])
        return reply.body(answer, job)

    async def _stream(future: asyncio.Future, reply: Reply, job, include_usage: bool) -> AsyncIterator[str]:
        try:
            while not future.done():
                await asyncio.wait({future}, timeout=TICK_S)
                if not future.done():
                    yield KEEP_ALIVE
            try:
                answer = _result(future)
            except APIError as error:
                yield event(error.body())
                yield "data: [DONE]\n\n"
                return
            metrics.answered([choice.stats for choice in answer.choices])
            for text in reply.events(answer, job, include_usage):
                yield text
        finally:
            future.cancel()  # the client left mid-stream: its job is dropped if it has not started

    return app


def _checked(body, engine: Engine, prompts):
    """The request's prompts (`prompts(body)`: texts or chat messages) once its model and fields are known."""
    if body.model is not None and body.model != engine.name:
        raise APIError(f"The model `{body.model}` does not exist here: this server serves `{engine.name}` "
                       "(GET /v1/models).", param="model", status=404, code="model_not_found")
    schemas.check_unknown(body)
    return prompts(body)


def _result(future: asyncio.Future):
    """The job's answer, or its refusal as an APIError."""
    try:
        return future.result()
    except ServerClosing as error:
        raise APIError(f"The server is shutting down ({error}): send the request again to a running server.",
                       status=503, kind="server_error", code="shutting_down") from None
    except (ValueError, TypeError) as error:
        raise errors.from_sampler(error) from None


def check_settings(max_batch_rows: int, batch_wait_ms: float) -> None:
    check_int("max_batch_rows", max_batch_rows, 1)
    check_number("batch_wait_ms", batch_wait_ms, minimum=0)
