"""`/health` is anonymous, cheap and cached; `/health/detail` checks every dependency and needs the key."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.helpers import DevHost


class CountingBackend:
    """A stand-in Qdrant server that answers every GET with 200 and counts them."""

    def __init__(self) -> None:
        self.hits = 0
        backend = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                backend.hits += 1
                body = b'{"title": "counting", "version": "1.13.0"}'
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def backend() -> Iterator[CountingBackend]:
    server = CountingBackend()
    yield server
    server.close()


def test_anonymous_health_connects_to_no_backend_per_call(tmp_path: Path, backend: CountingBackend) -> None:
    keys = {"masterKey": "m-key-0123456789", "functionKeys": {"default": "h-key-0123456789"}}
    host = DevHost(tmp_path / "data", env={"QDRANT_URL": backend.url}, name="health", keys=keys).start()
    try:
        after_start = backend.hits  # the readiness probe's own /health ran the checks once
        assert after_start >= 1
        for _ in range(10):
            answer = host.client.get("/health")
            assert answer.status_code == 200
            assert set(answer.json()) == {"status", "timestamp", "version"}
        assert backend.hits == after_start  # ten anonymous calls, no new connection

        assert host.client.get("/health/detail").status_code == 401  # the detail needs the key
        detail = host.client.get("/health/detail", headers={"x-functions-key": keys["functionKeys"]["default"]})
        assert detail.status_code == 200
        assert detail.json()["checks"]["vector_store"]["status"] == "ok"
        assert backend.hits == after_start + 1  # a fresh check each detailed call
    finally:
        host.stop()
