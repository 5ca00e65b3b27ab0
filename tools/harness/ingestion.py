"""A local stand-in for the Application Insights ingestion endpoint, for tests of the real exporter.

The azure-monitor exporter posts batches of envelopes (a JSON array, gzip-compressed or not) to
`<IngestionEndpoint>/v2.1/track` and reads back how many it accepted. This server stores every
envelope and answers that all were accepted, so a test can point the app at it

    with IngestionServer() as ingestion:
        env = {"APPLICATIONINSIGHTS_CONNECTION_STRING": ingestion.connection_string}
        ...
        ingestion.wait_for(lambda items: any(i["name"].endswith(".Request") for i in items))

and assert on requests, dependencies, metrics, logs and exceptions as Application Insights would
store them. Waits are on conditions, never on fixed sleeps.
"""

from __future__ import annotations

import gzip
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tools.harness.ports import LOOPBACK

INSTRUMENTATION_KEY = "00000000-0000-0000-0000-000000000000"
Envelope = dict[str, Any]

# Envelope names end with the telemetry type: "Microsoft.ApplicationInsights.<key>.Request", ...
REQUEST = "Request"
DEPENDENCY = "RemoteDependency"
METRIC = "Metric"
MESSAGE = "Message"
EXCEPTION = "Exception"


def kind(envelope: Envelope) -> str:
    """The telemetry type of an envelope (Request, RemoteDependency, Metric, Message, Exception, ...)."""
    return str(envelope.get("name", "")).rsplit(".", 1)[-1]


def base_data(envelope: Envelope) -> dict[str, Any]:
    data: dict[str, Any] = envelope.get("data", {}).get("baseData", {})
    return data


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ingestion-stand-in/1"
    timeout = 30
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if self.headers.get("Content-Encoding", "").lower() == "gzip":
            raw = gzip.decompress(raw)
        if self.path.split("?", 1)[0].rstrip("/").endswith("/track"):
            text = raw.decode("utf-8") if raw else "[]"
            try:
                parsed = json.loads(text)
            except json.JSONDecodeError:  # newline-delimited JSON, the other accepted form
                parsed = [json.loads(line) for line in text.splitlines() if line.strip()]
            items = parsed if isinstance(parsed, list) else [parsed]
            self.server.owner._store(items, raw)
            body = {"itemsReceived": len(items), "itemsAccepted": len(items), "errors": []}
            self._answer(200, body)
        else:
            self._answer(404, {"error": "not found"})

    def _answer(self, status: int, body: Any) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    owner: IngestionServer


class IngestionServer:
    """Stores what the exporter sends; `connection_string` points an app at it."""

    def __init__(self, host: str = LOOPBACK, port: int = 0) -> None:
        self._host, self._port = host, port
        self._items: list[Envelope] = []
        self._raw: list[bytes] = []
        self._changed = threading.Condition()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> IngestionServer:
        self._httpd = _Server((self._host, self._port), _Handler)
        self._httpd.owner = self
        self._port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="ingestion", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> IngestionServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self._port}/"

    @property
    def connection_string(self) -> str:
        return f"InstrumentationKey={INSTRUMENTATION_KEY};IngestionEndpoint={self.url}"

    def exporter_env(self) -> dict[str, str]:
        """Settings that point the app's real exporter here and make it flush within a fraction of a second.

        The intervals are the OpenTelemetry SDK's own variables (batch span and log processors, the
        periodic metric reader); every trace is kept (the distro's default samples 5 traces/s), and
        the exporter's statsbeat, which would report to Microsoft, is off.
        """
        return {
            "APPLICATIONINSIGHTS_CONNECTION_STRING": self.connection_string,
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            "OTEL_BLRP_SCHEDULE_DELAY": "100",
            "OTEL_METRIC_EXPORT_INTERVAL": "500",
            "OTEL_TRACES_SAMPLER": "always_on",
            "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
        }

    def _store(self, items: list[Envelope], raw: bytes) -> None:
        with self._changed:
            self._items.extend(items)
            self._raw.append(raw)
            self._changed.notify_all()

    def items(self, of_kind: str | None = None) -> list[Envelope]:
        with self._changed:
            items = list(self._items)
        return items if of_kind is None else [item for item in items if kind(item) == of_kind]

    def raw_bodies(self) -> list[bytes]:
        """Every batch as received (decompressed): what a search for a leaked string must look through."""
        with self._changed:
            return list(self._raw)

    def clear(self) -> None:
        with self._changed:
            self._items.clear()
            self._raw.clear()

    def wait_for(self, condition: Callable[[list[Envelope]], bool], timeout: float = 60.0) -> list[Envelope]:
        """Block until `condition(all envelopes so far)` holds; raise TimeoutError naming what arrived."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not condition(list(self._items)):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    kinds = sorted({kind(item) for item in self._items})
                    raise TimeoutError(f"the condition did not hold within {timeout}s; received {kinds}")
                self._changed.wait(min(remaining, 1.0))
            return list(self._items)

    def __iter__(self) -> Iterator[Envelope]:
        return iter(self.items())
