"""A server for the serve tests: an app of `ecmh.serve.app.create_app` on uvicorn in a thread, on a free port of
127.0.0.1, and plain HTTP calls to it (the standard library's, so that what a client sends is exactly what the test
wrote)."""

import contextlib
import json
import threading
import time
import urllib.error
import urllib.request

import uvicorn

START_TIMEOUT_S = 120  # generous: the machine may be loaded; a healthy start takes a second


@contextlib.contextmanager
def running(app):
    """The base URL (`http://127.0.0.1:PORT`) of `app` served until the block ends."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(START_TIMEOUT_S)


def call(url: str, body=None, method: str = None, timeout: float = 300) -> tuple[int, object]:
    """(status, the decoded JSON body or the text) of one request; `body` a dict (sent as JSON) or bytes (as is)."""
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    request = urllib.request.Request(url, data=data, method=method or ("POST" if data is not None else "GET"),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, text = response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read().decode()
    try:
        return status, json.loads(text)
    except json.JSONDecodeError:
        return status, text
