"""How the worker talks to a Qdrant server over HTTP (shared/stores/vector/qdrant/client.py): answers
uncompressed, over kept-alive connections. Checked with the real qdrant-client against an HTTP server
that records what it is sent (a Qdrant server cannot run in CI; the figures behind this are measured
against a real one, see the module)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from shared.settings import Settings
from tests.helpers import local_model_path


class _Recorder(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[tuple[str, str, str | None]] = []  # (method, path, Accept-Encoding)
        self.connections = 0
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keeps the connection open, as a Qdrant server does
    server: _Recorder

    def setup(self) -> None:
        super().setup()
        with self.server.lock:
            self.server.connections += 1

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        with self.server.lock:
            self.server.requests.append((self.command, self.path, self.headers.get("Accept-Encoding")))
        if self.path == "/":
            status, body = 200, {"title": "qdrant - vector search engine", "version": "1.19.0"}
        elif self.path == "/collections":
            status, body = 200, {"result": {"collections": []}, "status": "ok", "time": 0.0}
        else:  # anything else: refused, which ends a store's construction early
            status, body = 400, {"status": {"error": "not served by this recorder"}, "time": 0.0}
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_GET(self) -> None:
        self._answer()

    def do_PUT(self) -> None:
        self._answer()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[_Recorder]:
    server = _Recorder()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_the_client_asks_for_uncompressed_answers_over_one_kept_alive_connection(recorder: _Recorder) -> None:
    from shared.stores.vector.qdrant.client import qdrant_client

    client = qdrant_client(url=recorder.url)
    try:
        for _ in range(3):
            assert client.get_collections().collections == []
    finally:
        client.close()
    assert [r[2] for r in recorder.requests] == ["identity"] * 3
    # qdrant-client alone opens a connection per request to a server on localhost
    assert recorder.connections == 1


def test_what_the_caller_sets_wins(recorder: _Recorder) -> None:
    import httpx

    from shared.stores.vector.qdrant.client import qdrant_client

    client = qdrant_client(
        url=recorder.url,
        check_compatibility=False,
        metadata={"Accept-Encoding": "gzip"},
        limits=httpx.Limits(max_keepalive_connections=0),
    )
    try:
        client.get_collections()
        client.get_collections()
    finally:
        client.close()
    assert [r[2] for r in recorder.requests] == ["gzip", "gzip"] and recorder.connections == 2


def test_the_worker_store_is_built_on_that_client(recorder: _Recorder, tmp_path: Path) -> None:
    """The adapter the settings build (QDRANT_URL) sends its first calls the same way."""
    from qdrant_client.http.exceptions import UnexpectedResponse

    from shared.stores.vector import build_vector_store

    settings = Settings(
        data_dir=tmp_path / "data", local_embedding_model_path=local_model_path(), qdrant_url=recorder.url
    )
    with pytest.raises(UnexpectedResponse, match="not served by this recorder"):  # the collection calls
        build_vector_store(settings)
    # the version (once: the store's own check, not also the client's), then the collection
    assert [r[:2] for r in recorder.requests[:2]] == [("GET", "/"), ("GET", "/collections/memories/exists")]
    assert [r[1] for r in recorder.requests].count("/") == 1, recorder.requests
    assert {r[2] for r in recorder.requests} == {"identity"}, recorder.requests
    assert recorder.connections == 1, recorder.requests
