"""The request path on its own: what an HTTP call costs around the service call.

Two figures, apart from any service work:

- **function**: the registered function of `function_app`, called in this process the way the
  worker calls it, with the memory service replaced by a stand-in that answers at once (ten search
  results; the ids of a batch). What remains is the endpoint's own work: request id, body parsing and
  validation, the envelope, the metrics, the log line, the trace context.
- **host round trip** (with `--url`): `GET /health` through a running host over one kept-alive
  connection. The anonymous health answer is cached by the function, so this is the host's and the
  connection's fixed cost per request (routing, the worker thread hop, HTTP framing).

Their sum, next to the service time of the load benchmark (`python -m tools.bench load`, "Where a
search's time goes"), is the share of a request the service does not account for.
"""

from __future__ import annotations

import http.client
import json
import os
import tempfile
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

from shared.observability.percentiles import percentile

SEARCH_BODY = {"user_id": "bench-user", "query": "where does Dana want to travel this summer", "limit": 10}
BATCH_SIZE = 100


def _batch_body() -> dict[str, Any]:
    memories = [
        {"content": f"Dana wants to visit Krakow in summer with Yusuf, note {i}", "metadata": {"speaker": "Dana"}}
        for i in range(BATCH_SIZE)
    ]
    return {"user_id": "bench-user", "memories": memories}


class _Context:
    trace_context = None
    invocation_id = "bench"


class _InstantService:
    """Answers the two calls the measured endpoints make, without doing any work."""

    def __init__(self) -> None:
        from shared.contract import MemoryRecord, MemoryResults

        record = MemoryRecord(
            id="5f0c0000-1111-2222-3333-444455556666",
            memory="Dana wants to visit Krakow in summer with her friend Yusuf",
            user_id="bench-user",
            metadata={"speaker": "Dana"},
            created_at="2026-01-01T00:00:00+00:00",
            score=0.8,
        )
        self.results = MemoryResults(results=[record.model_copy(update={"id": f"{i}"}) for i in range(10)])

    def search_with_relations(self, *args: Any, **kwargs: Any) -> Any:
        return self.results

    def add_memories(self, scope: Any, memories: list[Any], **kwargs: Any) -> list[str]:
        return [f"5f0c{i:04d}-1111-2222-3333-444455556666" for i in range(len(memories))]


def _timed(call: Callable[[], object], runs: int) -> dict[str, float]:
    for _ in range(min(50, runs)):
        call()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return {"p50": percentile(times, 50), "p95": percentile(times, 95), "mean": sum(times) / len(times)}


def function_side(runs: int) -> dict[str, dict[str, float]]:
    """The endpoint's own time per call, in ms, for a search and for a batch-add of 100."""
    os.environ.setdefault("DATA_DIR", tempfile.mkdtemp(prefix="bench-requestpath-"))
    import azure.functions as func

    import function_app
    import functions.memory as memory_functions

    service = _InstantService()
    setattr(memory_functions, "get_memory_service", lambda: service)  # noqa: B010 - the stand-in, for this process only
    functions = {f.get_function_name(): f.get_user_function() for f in function_app.app.get_functions()}
    out = {}
    for name, route, body in (
        ("memory_search", "search", SEARCH_BODY),
        ("memory_batch_add", "batch-add", _batch_body()),
    ):
        raw = json.dumps(body).encode()
        function = functions[name]

        def call(function: Any = function, route: str = route, raw: bytes = raw) -> object:
            request = func.HttpRequest(
                "POST", f"http://127.0.0.1/api/memory/{route}", headers={"content-type": "application/json"}, body=raw
            )
            response = function(request, _Context())
            assert response.status_code == 200, response.get_body()[:300]
            return response

        out[name] = _timed(call, runs)
    return out


def host_round_trip(url: str, runs: int) -> dict[str, float]:
    """`GET /health` through the host at `url`, one kept-alive connection, in ms."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=10)

    def call() -> object:
        connection.request("GET", "/health")
        response = connection.getresponse()
        response.read()
        return response.status

    try:
        return _timed(call, runs)
    finally:
        connection.close()


def run_requestpath(runs: int, url: str | None) -> dict[str, Any]:
    result: dict[str, Any] = {"runs": runs, "function_ms": function_side(runs)}
    if url:
        result["host_round_trip_ms"] = host_round_trip(url, runs)
    return result


def requestpath_table(result: dict[str, Any]) -> str:
    from tools.bench.common import format_table

    rows = [
        [name, f"{t['p50']:.3f}", f"{t['p95']:.3f}", f"{t['mean']:.3f}"] for name, t in result["function_ms"].items()
    ]
    if "host_round_trip_ms" in result:
        t = result["host_round_trip_ms"]
        rows.append(["GET /health through the host", f"{t['p50']:.3f}", f"{t['p95']:.3f}", f"{t['mean']:.3f}"])
    return format_table(
        ["part", "p50 ms", "p95 ms", "mean ms"],
        rows,
        f"The request path around the service, {result['runs']} calls each: the endpoint's own work with an "
        f"instant service (search; batch-add of {BATCH_SIZE}), and the host's round trip",
    )
