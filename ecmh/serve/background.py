"""An app served by uvicorn in a background thread on a free port of 127.0.0.1, and one JSON request to it with the
standard library: for tests, benchmarks and notebooks, where the caller and the server share a process."""

import contextlib
import json
import threading
import time
import urllib.error
import urllib.request

import uvicorn

START_TIMEOUT_S = 120  # generous: the machine may be loaded; a healthy start takes a second


@contextlib.contextmanager
def serving(app):
    """The base URL (`http://127.0.0.1:PORT`) of `app`, served until the block ends (then shut down gracefully)."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, name="ecmh-serving", daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the server did not start")
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(START_TIMEOUT_S)


def request(url: str, body=None, method: str = None, timeout: float = 300) -> tuple[int, object]:
    """(status, the decoded JSON body or the text) of one request; `body` a dict (sent as JSON) or bytes (as is)."""
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    sent = urllib.request.Request(url, data=data, method=method or ("POST" if data is not None else "GET"),
                                  headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(sent, timeout=timeout) as response:
            status, text = response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read().decode()
    try:
        return status, json.loads(text)
    except json.JSONDecodeError:
        return status, text
