"""The invocation pipeline (functions/invocation.py) under each trigger, with the real azure.functions
types: the request id each trigger gives, the metric and the log line of every invocation, and every
failure mapped once (a ServiceError with its headers, an unexpected exception without its text).
Spans are checked in a child process, where an SDK tracer provider can be installed without
touching this one's."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import azure.functions as func
import pytest
from azure.functions.timer import TimerRequest

from functions import ingest, invocation, maintenance
from functions.http import EndpointSpec, Reply, endpoint
from functions.mcp import TOOLS, ToolCall, ToolSpec, run_tool
from shared.context import request_id_var
from shared.errors import BackendUnavailable, NotFound
from shared.observability import meters
from tests.helpers import REPO

LOGGER = "memory_layer.invocation"


@dataclass(frozen=True)
class Trace:
    trace_parent: str
    trace_state: str = ""


class Context(func.Context):
    """The worker's Context as the library declares it (the worker's own class is not importable here)."""

    def __init__(self, invocation_id: str, function_name: str, trace: Trace | None = None) -> None:
        self._invocation_id, self._function_name, self._trace = invocation_id, function_name, trace

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return str(REPO)

    @property
    def trace_context(self) -> Any:
        return self._trace

    @property
    def retry_context(self) -> Any:
        return None

    @property
    def thread_local_storage(self) -> Any:
        return None


def finished(function: str) -> dict[tuple[int, str], int]:
    """How many invocations of `function` the metric counted, by (status, trigger)."""
    counts: dict[tuple[int, str], int] = {}
    for point in meters.points(meters.collect(), meters.REQUESTS):
        if point.attributes.get("function") == function:
            key = (int(point.attributes["status_code"]), str(point.attributes.get("trigger")))
            counts[key] = counts.get(key, 0) + int(point.value)
    return counts


def counted_since(before: dict[tuple[int, str], int], function: str) -> dict[tuple[int, str], int]:
    after = finished(function)
    return {key: value - before.get(key, 0) for key, value in after.items() if value != before.get(key, 0)}


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == LOGGER]


# --- HTTP -----------------------------------------------------------------------------------------


def _http(function: str, handler: Callable[..., Any], spec: EndpointSpec | None = None) -> Callable[..., Any]:
    return endpoint(spec or EndpointSpec("probe", "probe", success_message="done"), function)(handler)


def _request(body: bytes | None = None, headers: dict[str, str] | None = None) -> func.HttpRequest:
    return func.HttpRequest("POST", "http://localhost/api/probe?x=1", headers=headers or {}, body=body or b"")


def test_http_takes_the_callers_request_id_counts_and_logs_and_renders_the_envelope(
    caplog: pytest.LogCaptureFixture,
) -> None:
    name = f"probe_http_{uuid.uuid4().hex[:8]}"
    seen: list[str] = []

    def handler(req: func.HttpRequest) -> Reply:
        seen.append(request_id_var.get())
        return Reply({"n": 1})

    run = _http(name, handler)
    caplog.set_level(logging.INFO, LOGGER)
    response = run(_request(headers={"x-request-id": "caller-id-0001"}), Context("inv-1", name))
    assert response.status_code == 200 and response.headers["x-request-id"] == "caller-id-0001"
    body = json.loads(response.get_body())
    assert (body["success"], body["message"], body["data"], body["request_id"]) == (True, "done", {"n": 1}, seen[0])
    assert seen == ["caller-id-0001"] and request_id_var.get() == "-"  # set for the call only
    assert finished(name) == {(200, "http"): 1}
    assert any(line.startswith("POST /api/probe?x=1 -> 200 in ") for line in lines(caplog)), lines(caplog)


def test_http_failures_a_service_error_with_its_headers_and_a_bug_without_its_text(
    caplog: pytest.LogCaptureFixture,
) -> None:
    name = f"probe_http_{uuid.uuid4().hex[:8]}"
    errors: list[Exception] = [BackendUnavailable("vector", "the store is down", retry_after=7), RuntimeError("secret")]

    def handler(req: func.HttpRequest) -> Reply:
        raise errors.pop(0)

    run = _http(name, handler)
    caplog.set_level(logging.INFO, LOGGER)
    down = run(_request(), Context("inv-2", name))
    assert down.status_code == 503 and down.headers["Retry-After"] == "7"
    body = json.loads(down.get_body())
    assert body["success"] is False and body["message"] == "the store is down"
    assert body["error"] == {"code": "unavailable", "details": [{"backend": "vector"}]}
    assert down.headers["x-request-id"] == body["request_id"]

    bug = run(_request(), Context("inv-3", name))
    assert bug.status_code == 500 and "secret" not in bug.get_body().decode()
    body = json.loads(bug.get_body())
    assert body["error"] == {"code": "internal_error", "details": []}
    assert body["message"] == invocation.INTERNAL_ERROR_MESSAGE
    assert finished(name) == {(503, "http"): 1, (500, "http"): 1}
    records = [r for r in caplog.records if r.name == LOGGER]
    assert any(r.levelno == logging.WARNING and r.getMessage() == "unavailable: the store is down" for r in records)
    assert any(r.exc_info and r.exc_info[0] is RuntimeError for r in records)  # the traceback is logged


def test_http_body_endpoint_gets_the_caller_and_the_parsed_model_and_parse_errors_stay_4xx() -> None:
    name = f"probe_body_{uuid.uuid4().hex[:8]}"
    got: list[Any] = []

    def handler(req: func.HttpRequest, who: Any, body: Any) -> Reply:
        got.append((who, body))
        return Reply({"query": body.query})

    run = _http(name, handler, EndpointSpec("probe", "probe", "MemorySearchRequest"))
    ok = run(_request(json.dumps({"user_id": "u1", "query": "tea"}).encode()), Context("i", name))
    assert ok.status_code == 200, ok.get_body()
    who, body = got[0]
    assert type(body).__name__ == "MemorySearchRequest" and body.user_id == "u1" and body.limit == 10
    assert who.user is None
    for raw, status, code in ((b"{nope", 400, "bad_request"), (b"[]", 422, "validation_error"),
                              (b'{"user_id": "u1"}', 422, "validation_error"), (b"", 400, "bad_request")):  # fmt: skip
        answer = run(_request(raw), Context("i", name))
        assert answer.status_code == status, raw
        assert json.loads(answer.get_body())["error"]["code"] == code
    assert len(got) == 1  # the handler never saw a bad body


def test_a_handler_that_does_not_take_what_its_spec_names_is_refused_when_indexed() -> None:
    with pytest.raises(TypeError, match="takes 3 arguments"):
        _http("bad_probe", lambda req: None, EndpointSpec("probe", "probe", "MemorySearchRequest"))


# --- MCP ------------------------------------------------------------------------------------------


def _tool_result(text: str) -> dict[str, Any]:
    envelope = json.loads(text)
    result: dict[str, Any] = json.loads(envelope["content"])
    return result


def test_mcp_takes_the_request_id_of_the_call_and_maps_failures_to_tool_errors(
    caplog: pytest.LogCaptureFixture,
) -> None:
    name = f"probe_tool_{uuid.uuid4().hex[:8]}"
    spec = ToolSpec(name, "a probe", "UserPath", (TOOLS["list_memories"].args[0],))
    seen: list[str] = []
    outcomes: list[Any] = [
        {"ok": True},
        NotFound("memory 'x' not found"),
        BackendUnavailable("graph", "down", retry_after=3),
    ]

    def handler(call: ToolCall) -> Any:
        seen.append(request_id_var.get())
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    headers = {"X-Request-Id": "agent-call-0001"}
    raw = json.dumps({"name": name, "arguments": {"user_id": "u"}, "transport": {"properties": {"headers": headers}}})
    caplog.set_level(logging.INFO, LOGGER)
    assert _tool_result(run_tool(spec, handler, raw))["structuredContent"] == {"ok": True}
    missing = _tool_result(run_tool(spec, handler, raw))
    assert missing["isError"] is True
    assert missing["structuredContent"] == {
        "error": {"code": "not_found", "message": "memory 'x' not found", "details": []},
        "request_id": "agent-call-0001",
    }
    down = _tool_result(run_tool(spec, handler, raw))
    text = down["content"][0]["text"]
    assert text.startswith("unavailable: down;") and text.endswith("retry after 3s (request_id agent-call-0001)")
    assert seen == ["agent-call-0001"] * 3
    assert finished(name) == {(200, "mcp"): 1, (404, "mcp"): 1, (503, "mcp"): 1}
    assert sum(line.startswith(f"mcp {name} -> ") for line in lines(caplog)) == 3


def test_mcp_unreadable_call_is_a_tool_error_with_a_fresh_request_id() -> None:
    name = f"probe_tool_{uuid.uuid4().hex[:8]}"
    spec = ToolSpec(name, "a probe", "UserPath", (TOOLS["list_memories"].args[0],))
    result = _tool_result(run_tool(spec, lambda call: None, "not json"))
    assert result["isError"] is True and result["structuredContent"]["error"]["code"] == "internal_error"
    assert len(result["structuredContent"]["request_id"]) == 32
    assert finished(name) == {(500, "mcp"): 1}


# --- queue ----------------------------------------------------------------------------------------


class FakeIngestion:
    def __init__(self, failure: Exception | None = None) -> None:
        self.failure = failure
        self.calls: list[tuple[str, bool, str | None, str]] = []

    def process(self, event_id: str, *, last_attempt: bool, user_id: str | None = None) -> None:
        self.calls.append((event_id, last_attempt, user_id, request_id_var.get()))
        if self.failure is not None:
            raise self.failure


def _user_function(name: str) -> Callable[..., None]:
    """The function as the worker calls it, from the indexed app."""
    import function_app
    from functions.openapi import indexed_functions

    for fn in indexed_functions(function_app.app):
        if fn.get_function_name() == name:
            user_function: Callable[..., None] = fn.get_user_function()
            return user_function
    raise AssertionError(f"{name} is not indexed")


def test_queue_delivery_runs_as_its_event_counts_and_logs(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fake = FakeIngestion()
    monkeypatch.setattr(ingest, "get_ingestion", lambda: fake)
    event_id = str(uuid.uuid4())
    message = func.QueueMessage(id="msg-0001", body=json.dumps({"event_id": event_id, "user_id": "u"}).encode())
    before = finished("memory_ingest")
    caplog.set_level(logging.INFO, LOGGER)
    _user_function("memory_ingest")(
        msg=message, context=Context("inv-q", "memory_ingest", Trace("00-" + "1" * 32 + "-" + "2" * 16 + "-01"))
    )
    assert fake.calls == [(event_id, False, "u", event_id)]  # the event id is the request id
    assert counted_since(before, "memory_ingest") == {(200, "queue"): 1}
    assert any(line.startswith("queue memory-ingest message msg-0001") and "-> 200" in line for line in lines(caplog))


def test_queue_failures_are_counted_logged_and_raised_again_for_the_hosts_retries(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(ingest, "get_ingestion", lambda: FakeIngestion(BackendUnavailable("vector", "down")))
    body = json.dumps({"event_id": str(uuid.uuid4()), "user_id": "u"}).encode()
    before = finished("memory_ingest")
    caplog.set_level(logging.INFO, LOGGER)
    with pytest.raises(BackendUnavailable):
        _user_function("memory_ingest")(
            msg=func.QueueMessage(id="m-2", body=body), context=Context("inv", "memory_ingest")
        )
    with pytest.raises(ValueError, match="not an event message"):
        _user_function("memory_ingest")(
            msg=func.QueueMessage(id="m-3", body=b"{}"), context=Context("inv", "memory_ingest")
        )
    assert counted_since(before, "memory_ingest") == {(503, "queue"): 1, (500, "queue"): 1}
    records = [r for r in caplog.records if r.name == LOGGER]
    assert any(r.levelno == logging.WARNING and r.getMessage() == "unavailable: down" for r in records)
    assert any(r.exc_info and r.exc_info[0] is ValueError for r in records)
    assert any(line.startswith("queue memory-ingest message m-3") and "-> 500" in line for line in lines(caplog))


# --- timer ----------------------------------------------------------------------------------------


class FakeService:
    def __init__(self, failure: Exception | None = None) -> None:
        self.failure = failure
        self.request_ids: list[str] = []

    def purge_expired(self) -> int:
        self.request_ids.append(request_id_var.get())
        if self.failure is not None:
            raise self.failure
        return 2


def test_timer_runs_as_its_invocation_counts_logs_and_raises_a_failure(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    service = FakeService()
    monkeypatch.setattr(maintenance, "get_memory_service", lambda: service)
    invocation_id = str(uuid.uuid4())
    before = finished("memory_purge_expired")
    caplog.set_level(logging.INFO, LOGGER)
    _user_function("memory_purge_expired")(TimerRequest(past_due=True), Context(invocation_id, "memory_purge_expired"))
    assert service.request_ids == [invocation_id]
    service.failure = RuntimeError("disk says no")
    with pytest.raises(RuntimeError):
        _user_function("memory_purge_expired")(TimerRequest(), Context(str(uuid.uuid4()), "memory_purge_expired"))
    assert counted_since(before, "memory_purge_expired") == {(200, "timer"): 1, (500, "timer"): 1}
    assert [line.split(" in ")[0] for line in lines(caplog) if line.startswith("timer ")] == [
        "timer memory_purge_expired -> 200",
        "timer memory_purge_expired -> 500",
    ]


# --- spans ----------------------------------------------------------------------------------------

_SPAN_SCRIPT = r"""
import json, sys
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from functions import invocation
from shared.errors import BackendUnavailable
from shared.observability import tracing

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(tracing.request_id_processor())
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)
tracing.enable()

class Host:
    trace_parent = "00-" + "a" * 32 + "-" + "b" * 16 + "-01"
    trace_state = ""

def fail():
    raise RuntimeError("user text must not be exported")

invocation.run("http", "probe_http", "rid-http-0001", Host(), lambda: "ok")
try:
    invocation.run("queue", "probe_queue", "rid-queue-0001", None, fail)
except RuntimeError:
    pass
invocation.run("timer", "probe_timer", "rid-timer-0001", None, lambda: None)
invocation.run("mcp", "probe_mcp", "rid-mcp-0001", None, lambda: (_ for _ in ()).throw(BackendUnavailable("x", "down")),
               lambda failure, request_id: "rendered")
out = []
for span in exporter.get_finished_spans():
    out.append({
        "name": span.name, "kind": span.kind.name, "trace_id": format(span.context.trace_id, "032x"),
        "parent": format(span.parent.span_id, "016x") if span.parent else None,
        "attributes": dict(span.attributes), "status": span.status.status_code.name,
        "events": [event.name for event in span.events],
    })
print(json.dumps(out))
"""


def test_each_invocation_has_one_span_under_the_hosts_with_its_request_id_and_outcome() -> None:
    done = subprocess.run([sys.executable, "-c", _SPAN_SCRIPT], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    spans = {span["name"]: span for span in json.loads(done.stdout.strip().splitlines()[-1])}
    http = spans["probe_http"]
    assert (http["kind"], http["trace_id"], http["parent"]) == ("INTERNAL", "a" * 32, "b" * 16)
    assert http["attributes"]["request_id"] == "rid-http-0001"
    assert http["attributes"]["faas.trigger"] == "http" and http["attributes"]["memory_layer.status_code"] == 200
    queue = spans["probe_queue"]
    assert (queue["kind"], queue["parent"], queue["status"]) == ("CONSUMER", None, "ERROR")
    assert queue["attributes"]["request_id"] == "rid-queue-0001"
    assert queue["attributes"]["error.type"] == "RuntimeError"
    assert queue["attributes"]["memory_layer.error_code"] == "internal_error"
    assert "user text" not in json.dumps(queue) and queue["events"] == []
    timer = spans["probe_timer"]
    assert (timer["kind"], timer["attributes"]["faas.trigger"], timer["attributes"]["request_id"]) == (
        "SERVER",
        "timer",
        "rid-timer-0001",
    )
    mcp = spans["probe_mcp"]
    assert mcp["attributes"]["memory_layer.status_code"] == 503 and mcp["status"] == "ERROR"
    assert mcp["attributes"]["faas.trigger"] == "other"


# --- how many invocations work at once ----------------------------------------------------------
def test_no_more_invocations_work_at_once_than_the_limit_and_a_nested_one_takes_no_second_turn(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import threading

    from functions import invocation
    from shared.settings import get_settings

    monkeypatch.setenv("WORKER_CONCURRENCY", "2")
    get_settings.cache_clear()
    invocation.reset_work_gate()
    busy, most, lock = [0], [0], threading.Lock()
    # Each work waits until `meet` has gathered its parties: two requests at a time must get their
    # turns together (no sleep to hope for an overlap), and a third would show in `most`.
    meet = [threading.Barrier(2)]

    def work() -> str:
        with lock:
            busy[0] += 1
            most[0] = max(most[0], busy[0])
        meet[0].wait(timeout=10)
        # an invocation run inside this one (same thread) must not wait for a turn of its own
        inner = invocation.run(invocation.HTTP, "inner", "r-inner", None, lambda: "inner")
        with lock:
            busy[0] -= 1
        return inner

    try:
        results: list[str] = []
        threads = [
            threading.Thread(target=lambda: results.append(invocation.run(invocation.HTTP, "f", "r", None, work)))
            for _ in range(8)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)
        assert results == ["inner"] * 8
        assert most[0] == 2
        # queue work is not held to the requests' turns (the host's batch size bounds it): four meet
        busy[0], most[0] = 0, 0
        meet[0] = threading.Barrier(4)
        queued = [
            threading.Thread(target=lambda: invocation.run(invocation.QUEUE, "q", "r", None, work)) for _ in range(4)
        ]
        for thread in queued:
            thread.start()
        for thread in queued:
            thread.join(timeout=15)
        assert most[0] == 4
    finally:
        get_settings.cache_clear()
        invocation.reset_work_gate()


def test_the_default_limit_is_the_cpu_count_with_the_embedded_engine_and_none_with_a_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import os

    from shared.settings import Settings

    for name in ("WORKER_CONCURRENCY", "QDRANT_URL", "VECTOR_STORE", "CHROMA_HOST"):
        monkeypatch.delenv(name, raising=False)
    assert Settings().resolved_worker_concurrency == (os.cpu_count() or 1)
    assert Settings(qdrant_url="http://qdrant:6333").resolved_worker_concurrency is None
    assert Settings(vector_store="chroma", chroma_host="chroma").resolved_worker_concurrency is None
    assert Settings(worker_concurrency=0).resolved_worker_concurrency is None
    assert Settings(worker_concurrency=3, qdrant_url="http://q:6333").resolved_worker_concurrency == 3
