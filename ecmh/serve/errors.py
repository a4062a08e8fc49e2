"""Every refusal as OpenAI's error body, `{"error": {"message", "type", "param", "code"}}`, with a 4xx status: bad
JSON, a field of the wrong type, a value the sampler refuses, an unknown route or model, a body over the limit. An
unexpected failure is a 500 with the same body and no traceback (the traceback goes to the server's log)."""

import logging
import re
from typing import Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

log = logging.getLogger("ecmh.serve")


class APIError(Exception):
    """A refusal the client can fix: `message` names the field (`param`) and the fix."""

    def __init__(self, message: str, param: Optional[str] = None, status: int = 400,
                 code: Optional[str] = None, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.message, self.param, self.status, self.code, self.kind = message, param, status, code, kind

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status)


def from_sampler(error: Exception) -> APIError:
    """A ValueError or TypeError of `ecmh` (its messages name the argument in backquotes) as a 400."""
    named = re.search(r"`(\w+)", str(error))
    return APIError(str(error), param=named.group(1) if named else None)


def _field(location: tuple) -> str:
    return ".".join(str(part) for part in location if part != "body") or "body"


def from_validation(error: RequestValidationError) -> APIError:
    """The first problem pydantic found, naming the field, what it should be and what was sent."""
    first = error.errors()[0]
    if first["type"] == "json_invalid":
        return APIError(f"The body is not valid JSON ({first.get('ctx', {}).get('error', first['msg'])}): send a JSON "
                        "object, with the header Content-Type: application/json.", code="invalid_json")
    param = _field(first["loc"])
    if first["type"] == "missing":
        return APIError(f"`{param}` is required.", param=param, code="missing_required_parameter")
    message = first["msg"].removeprefix("Value error, ").rstrip(".")
    if "input" in first and first["type"] != "value_error":
        message += f", got {first['input']!r}"
    named = message if message.startswith(f"`{param}` ") else f"`{param}`: {message}"  # ecmh's checks name it
    return APIError(f"{named}.", param=param, code="invalid_value")


def install(app: FastAPI) -> None:
    """Every error of `app` answered with OpenAI's error body."""

    @app.exception_handler(APIError)
    async def api_error(request: Request, error: APIError):
        return error.response()

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError):
        return from_validation(error).response()

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException):
        where = f"{request.method} {request.url.path}"
        message = {404: f"There is no route {where}: the routes are GET /v1/models, POST /v1/completions, "
                        "POST /v1/chat/completions, GET /health and GET /metrics.",
                   405: f"{where} is not allowed on this route."}.get(error.status_code, str(error.detail))
        return APIError(message, status=error.status_code).response()

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception):
        log.exception("unexpected error answering %s %s", request.method, request.url.path)
        return APIError(f"The server failed on this request ({type(error).__name__}); the server keeps serving.",
                        status=500, kind="server_error").response()


DRAINED = 16  # a body over the limit is read (and dropped) up to this many times the limit before the refusal


class BodyLimit:
    """ASGI middleware: a request body of more than `max_bytes` is refused with 413 before the app parses it (the
    body is read here and handed on whole)."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        body, size, more = b"", 0, True
        while more and size <= DRAINED * self.max_bytes:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left before sending its body
            size += len(message.get("body", b""))
            body = body + message.get("body", b"") if size <= self.max_bytes else b""
            more = message.get("more_body", False)
        if size > self.max_bytes:  # read on to the end (up to a bound), so that the client gets to read the refusal
            refusal = APIError(f"The request body is over the server's limit of {self.max_bytes} bytes: send a "
                               "shorter prompt (it must fit the model's context anyway).", status=413,
                               code="request_too_large")
            return await refusal.response()(scope, receive, send)
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)
