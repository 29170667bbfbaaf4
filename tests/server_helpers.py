"""A real ``napari-sam2 serve`` app under uvicorn on 127.0.0.1 at a free port, in a thread
(tests/test_server*.py)."""

from __future__ import annotations

import contextlib
import socket
import threading

TOKEN = "test-token-" + "x" * 24


@contextlib.contextmanager
def running_server(backend, *, tokens=(TOKEN,), **build_kwargs):
    """``(url, built)`` of a server around ``backend`` while the block runs."""
    import uvicorn

    from napari_sam2.server import build

    built = build(backend, tokens=None if tokens is None else list(tokens), **build_kwargs)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(built.app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        _wait_listening(port, thread)
        yield f"http://127.0.0.1:{port}", built
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        built.scheduler.stop()
        sock.close()


def _wait_listening(port: int, thread: threading.Thread) -> None:
    """Block until /health answers (uvicorn started) or the server thread died."""
    import httpx

    for _ in range(600):
        if not thread.is_alive():
            raise RuntimeError("the test server thread ended before it listened")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=0.5).status_code == 200:
                return
        except httpx.TransportError:
            threading.Event().wait(0.05)
    raise RuntimeError("the test server did not start")
