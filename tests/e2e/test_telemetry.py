"""Telemetry through the dev host with the real azure-monitor exporter, posting to a local ingestion
stand-in (tools/harness/ingestion.py): the request span and its dependency spans (vector store,
embedder, LLM, Neo4j, Table Storage) with their links, a queue delivery's and a timer run's own span and
metric under their request ids, the service's metrics on both Application Insights and `/metrics`, and
no user text in anything exported.

Everything waits on conditions (envelopes arriving), never on fixed delays.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.graph import EXTRACTION_PROMPT_MARKER
from tests.helpers import REPO, DevHost, base_env
from tools.harness.azurite import AzuriteServer
from tools.harness.fake_openai import FakeOpenAIServer
from tools.harness.ingestion import DEPENDENCY, MESSAGE, METRIC, REQUEST, IngestionServer, base_data, kind
from tools.harness.neo4j_server import Neo4jServer

pytestmark = pytest.mark.e2e

CHAT_MODEL = "fake-chat-model"


@pytest.fixture(scope="module")
def llm() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as server:
        yield server


@pytest.fixture(scope="module")
def host(
    tmp_path_factory: pytest.TempPathFactory,
    ingestion: IngestionServer,
    azurite: AzuriteServer,
    neo4j_server: Neo4jServer,
    llm: FakeOpenAIServer,
) -> Iterator[DevHost]:
    suffix = uuid.uuid4().hex[:8]
    env = {
        **ingestion.exporter_env(),
        "GRAPH_STORE": "neo4j",
        "NEO4J_URI": neo4j_server.uri,
        "NEO4J_USERNAME": neo4j_server.user,
        "NEO4J_PASSWORD": neo4j_server.password,
        "STATE_STORE": "azure_table",
        "AZURE_TABLES_CONNECTION_STRING": azurite.connection_string,
        "SESSIONS_TABLE": f"sessions{suffix}",
        "HISTORY_TABLE": f"history{suffix}",
        "LLM_PROVIDER": "openai",
        "OPENAI_BASE_URL": llm.base_url,
        "OPENAI_API_KEY": "k",
        "OPENAI_MODEL": CHAT_MODEL,
        "LLM_MAX_RETRIES": "2",
    }
    server = DevHost(tmp_path_factory.mktemp("telemetry") / "data", env, name="telemetry-host").start()
    yield server
    server.stop()


# --- reading envelopes ------------------------------------------------------------------------------


def props(envelope: dict[str, Any]) -> dict[str, Any]:
    return base_data(envelope).get("properties") or {}


def operation_id(envelope: dict[str, Any]) -> str:
    return str(envelope["tags"].get("ai.operation.id"))


def parent_id(envelope: dict[str, Any]) -> str | None:
    return envelope["tags"].get("ai.operation.parentId")


def request_of(items: list[dict[str, Any]], request_id: str) -> dict[str, Any] | None:
    found = [i for i in items if kind(i) == REQUEST and props(i).get("request_id") == request_id]
    return found[0] if found else None


def trace_of(items: list[dict[str, Any]], request_id: str) -> list[dict[str, Any]]:
    """The dependency envelopes that belong to the request with `request_id` (by its operation id)."""
    request = request_of(items, request_id)
    if request is None:
        return []
    return [i for i in items if kind(i) == DEPENDENCY and operation_id(i) == operation_id(request)]


def descends_from(items: list[dict[str, Any]], envelope: dict[str, Any], ancestor_id: str) -> bool:
    by_id = {base_data(i).get("id"): i for i in items if kind(i) in (REQUEST, DEPENDENCY)}
    current: dict[str, Any] | None = envelope
    for _ in range(20):
        if current is None:
            return False
        parent = parent_id(current)
        if parent == ancestor_id:
            return True
        current = by_id.get(parent)
    return False


def wait_for_trace(ingestion: IngestionServer, request_id: str, *types: str) -> list[dict[str, Any]]:
    """Wait until the request and a dependency of each of `types` (`type` startswith) have arrived."""

    def complete(items: list[dict[str, Any]]) -> bool:
        deps = trace_of(items, request_id)
        return bool(deps) and all(any(str(base_data(d).get("type")).startswith(t) for d in deps) for t in types)

    return ingestion.wait_for(complete)


def call(host: DevHost, path: str, body: dict[str, Any]) -> httpx.Response:
    response = host.client.post(path, json=body)
    assert response.status_code == 200, response.text
    return response


# --- traces -------------------------------------------------------------------------------------


def test_add_is_one_request_with_its_dependency_spans_under_it(host: DevHost, ingestion: IngestionServer) -> None:
    traceparent_trace = uuid.uuid4().hex
    response = host.client.post(
        "/api/memory/add",
        json={"user_id": f"u-{uuid.uuid4().hex[:8]}", "content": "likes green tea"},
        headers={"traceparent": f"00-{traceparent_trace}-{uuid.uuid4().hex[:16]}-01"},
    )
    assert response.status_code == 200, response.text
    request_id = response.headers["x-request-id"]
    items = wait_for_trace(ingestion, request_id, "qdrant-edge", "GenAI | fastembed", "azure_table")

    request = request_of(items, request_id)
    assert request is not None
    # The caller's trace continues: the operation id is the incoming trace id.
    assert operation_id(request) == traceparent_trace
    assert base_data(request)["responseCode"] == "200"
    deps = trace_of(items, request_id)
    request_span = base_data(request)["id"]
    for dep in deps:
        assert descends_from(items, dep, request_span), (base_data(dep)["name"], parent_id(dep))
        assert props(dep).get("request_id") == request_id, base_data(dep)["name"]
    names = {base_data(d)["name"] for d in deps}
    assert "qdrant-edge insert" in names, names
    assert any(n.startswith("embeddings ") for n in names), names
    assert any(n.startswith("table storage ") for n in names), names
    insert = next(d for d in deps if base_data(d)["name"] == "qdrant-edge insert")
    assert props(insert)["memory_layer.store.kind"] == "edge"
    assert props(insert)["memory_layer.items_sent"] == "1"
    embed = next(d for d in deps if base_data(d)["name"].startswith("embeddings "))
    assert props(embed)["memory_layer.batch_size"] == "1"
    assert props(embed)["gen_ai.request.model"]


@pytest.fixture(scope="module")
def queued(
    tmp_path_factory: pytest.TempPathFactory, ingestion: IngestionServer, azurite: AzuriteServer
) -> Iterator[DevHost]:
    """A dev host whose asynchronous adds go through the `memory-ingest` queue (on Azurite)."""
    env = {**ingestion.exporter_env(), "AzureWebJobsStorage": azurite.connection_string, "INGEST_MODE": "queue"}
    env["EVENTS_TABLE"] = f"events{uuid.uuid4().hex[:8]}"
    server = DevHost(tmp_path_factory.mktemp("telemetry-queue") / "data", env, name="telemetry-queue").start()
    yield server
    server.stop()


def test_an_async_add_traces_its_queue_send_under_the_request(queued: DevHost, ingestion: IngestionServer) -> None:
    response = queued.client.post(
        "/api/memory/add",
        json={"user_id": f"u-{uuid.uuid4().hex[:8]}", "content": "keeps a bonsai"},
        headers={"Prefer": "respond-async"},
    )
    assert response.status_code == 202, response.text
    request_id = response.headers["x-request-id"]
    items = wait_for_trace(ingestion, request_id, "azure_queue")
    request = request_of(items, request_id)
    assert request is not None
    send = next(d for d in trace_of(items, request_id) if base_data(d)["name"] == "queue send memory-ingest")
    assert descends_from(items, send, base_data(request)["id"])
    assert base_data(send)["type"] == "azure_queue" and base_data(send)["success"] is True


def test_a_queue_delivery_is_a_span_and_a_metric_under_its_event_id(
    queued: DevHost, ingestion: IngestionServer
) -> None:
    response = queued.client.post(
        "/api/memory/add",
        json={"user_id": f"u-{uuid.uuid4().hex[:8]}", "content": "grows basil"},
        headers={"Prefer": "respond-async"},
    )
    assert response.status_code == 202, response.text
    event_id = response.json()["data"]["event_id"]

    def delivered(items: list[dict[str, Any]]) -> bool:
        return bool(spans_named(items, "memory_ingest", event_id)) and (
            metric_total(items, "memory_layer.requests", function="memory_ingest", trigger="queue") >= 1
        )

    items = ingestion.wait_for(delivered)
    (span,) = spans_named(items, "memory_ingest", event_id)
    # The dev host hands a queue function no trace context: the invocation's span is its root, a request.
    assert kind(span) == REQUEST and base_data(span)["success"] is True
    assert props(span)["faas.trigger"] == "pubsub" and props(span)["memory_layer.status_code"] == "200"
    writes = [i for i in items if kind(i) == DEPENDENCY and operation_id(i) == operation_id(span)]
    assert any(base_data(w)["name"] == "qdrant-edge insert" for w in writes), [base_data(w)["name"] for w in writes]
    assert all(props(w).get("request_id") == event_id for w in writes)
    durations = {p.get("function") for _, p in metric_points(items, "memory_layer.request.duration")}
    assert "memory_ingest" in durations


def spans_named(items: list[dict[str, Any]], name: str, request_id: str) -> list[dict[str, Any]]:
    """The invocation spans (requests or dependencies) called `name` that carry `request_id`."""
    return [
        i
        for i in items
        if kind(i) in (REQUEST, DEPENDENCY)
        and base_data(i).get("name") == name
        and props(i).get("request_id") == request_id
    ]


# The timer's run as the worker makes it, in a process of its own that exports like the app: the dev
# host fires the purge only at its schedule (minute 0), which a test cannot wait for.
_TIMER_RUN = """
import sys
from azure.functions.timer import TimerRequest
from opentelemetry import metrics, trace
from opentelemetry._logs import get_logger_provider

import function_app
from functions.openapi import indexed_functions

class Trace:
    trace_parent, trace_state = sys.argv[2], ""

class Context:
    invocation_id, function_name, function_directory, trace_context = sys.argv[1], "memory_purge_expired", ".", Trace()

functions = {f.get_function_name(): f.get_user_function() for f in indexed_functions(function_app.app)}
functions["memory_purge_expired"](timer=TimerRequest(), context=Context())
for provider in (trace.get_tracer_provider(), metrics.get_meter_provider(), get_logger_provider()):
    provider.force_flush()
"""


def test_a_timer_run_is_a_span_under_the_hosts_and_a_metric_with_its_invocation_id(
    tmp_path: Path, ingestion: IngestionServer
) -> None:
    invocation_id, trace_id = str(uuid.uuid4()), uuid.uuid4().hex
    argv = [sys.executable, "-c", _TIMER_RUN, invocation_id, f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"]
    env = base_env(tmp_path / "data", ingestion.exporter_env())
    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    items = ingestion.wait_for(
        lambda i: (
            bool(spans_named(i, "memory_purge_expired", invocation_id))
            and metric_total(i, "memory_layer.requests", function="memory_purge_expired", trigger="timer") >= 1
        )
    )
    (span,) = spans_named(items, "memory_purge_expired", invocation_id)
    assert kind(span) == DEPENDENCY and operation_id(span) == trace_id  # a child of the host's span
    assert props(span)["faas.trigger"] == "timer" and props(span)["memory_layer.status_code"] == "200"
    logged = [i for i in items if kind(i) == MESSAGE and props(i).get("request_id") == invocation_id]
    assert any("timer memory_purge_expired -> 200" in base_data(i).get("message", "") for i in logged)


def test_search_spans_give_the_result_count(host: DevHost, ingestion: IngestionServer) -> None:
    user = f"u-{uuid.uuid4().hex[:8]}"
    call(host, "/api/memory/batch-add", {"user_id": user, "memories": [{"content": f"fact {i}"} for i in range(3)]})
    response = call(host, "/api/memory/search", {"user_id": user, "query": "fact", "limit": 5})
    request_id = response.headers["x-request-id"]
    items = wait_for_trace(ingestion, request_id, "qdrant-edge")
    candidates = [d for d in trace_of(items, request_id) if base_data(d)["name"] == "qdrant-edge candidates"]
    assert candidates, [base_data(d)["name"] for d in trace_of(items, request_id)]
    assert int(props(candidates[0])["memory_layer.result_count"]) >= 3


def test_chat_traces_the_llm_with_tokens_the_graph_and_the_session_store(
    host: DevHost, ingestion: IngestionServer
) -> None:
    user = f"u-{uuid.uuid4().hex[:8]}"
    response = call(host, "/api/chat/message", {"user_id": user, "message": "hello there", "session_id": "s1"})
    request_id = response.headers["x-request-id"]
    items = wait_for_trace(ingestion, request_id, "GenAI", "neo4j", "azure_table", "qdrant-edge")
    deps = trace_of(items, request_id)
    request_span = base_data(request_of(items, request_id) or {})["id"]
    chats = [d for d in deps if base_data(d)["name"] == f"chat {CHAT_MODEL}"]
    assert chats, [base_data(d)["name"] for d in deps]
    for span in chats:
        assert descends_from(items, span, request_span)
        assert int(props(span)["gen_ai.usage.input_tokens"]) > 0
        assert int(props(span)["gen_ai.usage.output_tokens"]) > 0
    # The SDK's HTTP call to the model is a child of the LLM span.
    http_calls = [d for d in deps if base_data(d).get("type") == "HTTP"]
    chat_ids = {base_data(c)["id"] for c in chats}
    assert any(parent_id(h) in chat_ids for h in http_calls), [base_data(h)["name"] for h in http_calls]
    assert any(base_data(d).get("type") == "neo4j" for d in deps)


def test_llm_retries_and_throttles_are_recorded(
    host: DevHost, ingestion: IngestionServer, llm: FakeOpenAIServer
) -> None:
    llm.fail_next(1, status=429, retry_after="0.05", kind="chat")
    user = f"u-{uuid.uuid4().hex[:8]}"
    response = call(host, "/api/chat/message", {"user_id": user, "message": "are you there", "session_id": "s"})
    request_id = response.headers["x-request-id"]
    items = wait_for_trace(ingestion, request_id, "GenAI")
    retried = [d for d in trace_of(items, request_id) if props(d).get("memory_layer.retries") == "1"]
    assert retried, "no LLM span recorded the retry"
    ingestion.wait_for(lambda all_items: metric_total(all_items, "memory_layer.llm.throttles") >= 1)


# --- metrics ------------------------------------------------------------------------------------


def metric_points(items: list[dict[str, Any]], name: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    points = []
    for item in items:
        if kind(item) != METRIC:
            continue
        for metric in base_data(item).get("metrics", []):
            if metric.get("name") == name:
                points.append((metric, props(item)))
    return points


def metric_total(items: list[dict[str, Any]], name: str, **dims: str) -> float:
    return sum(
        float(m.get("value", 0))
        for m, p in metric_points(items, name)
        if all(str(p.get(k)) == v for k, v in dims.items())
    )


def test_service_metrics_reach_application_insights_and_metrics_endpoint(
    host: DevHost, ingestion: IngestionServer
) -> None:
    user = f"u-{uuid.uuid4().hex[:8]}"
    call(host, "/api/memory/add", {"user_id": user, "content": "plays chess"})
    call(host, "/api/memory/batch-add", {"user_id": user, "memories": [{"content": "a"}, {"content": "b"}]})
    call(host, "/api/memory/search", {"user_id": user, "query": "chess"})
    call(host, "/api/chat/message", {"user_id": user, "message": "what do I play?"})

    items = ingestion.wait_for(
        lambda i: (
            metric_total(i, "memory_layer.requests", function="memory_add", status_code="200") >= 1
            and metric_total(i, "memory_layer.memories.added", operation="batch_add") >= 2
            and bool(metric_points(i, "memory_layer.request.duration"))
            and metric_total(i, "memory_layer.llm.tokens", kind="prompt") > 0
            and bool(metric_points(i, "memory_layer.batch.size"))
            and bool(metric_points(i, "memory_layer.breaker.open"))
        )
    )
    durations = {p.get("function") for _, p in metric_points(items, "memory_layer.request.duration")}
    assert {"memory_add", "memory_search", "chat_message"} <= durations, durations
    assert all(p.get("backend") == "graph" for _, p in metric_points(items, "memory_layer.breaker.open"))
    # No user id is a metric dimension.
    for item in items:
        if kind(item) == METRIC:
            assert user not in json.dumps(item)

    local = host.client.get("/metrics").json()
    assert {"active_connections", "total_requests", "timestamp", "total_errors", "uptime_seconds"} <= set(local)
    added = local["functions"]["memory_add"]
    assert added["requests"] >= 1 and added["errors"] == 0
    assert 0 < added["latency_ms"]["p50"] <= added["latency_ms"]["p95"] <= added["latency_ms"]["p99"]
    assert local["total_requests"] >= 4 and local["active_connections"] >= 1  # this call is in flight


# --- privacy ------------------------------------------------------------------------------------


def test_no_user_text_in_any_exported_envelope(
    host: DevHost, ingestion: IngestionServer, llm: FakeOpenAIServer
) -> None:
    canary = f"zq{uuid.uuid4().hex[:12]}canary"
    user = f"u-{uuid.uuid4().hex[:8]}"
    # The model learns the canary (a fact and a graph entity), so it flows through every store.
    llm.when(EXTRACTION_PROMPT_MARKER, role="system", reply=_graph(canary), times=5)
    llm.when(match=lambda r: bool(r.get("response_format")), reply={"facts": [canary]}, times=5)
    request_ids = [
        call(host, "/api/memory/add", {"user_id": user, "content": f"my secret is {canary}"}),
        call(host, "/api/memory/batch-add", {"user_id": user, "memories": [{"content": f"{canary} twice"}]}),
        call(host, "/api/memory/search", {"user_id": user, "query": f"where is {canary}"}),
        call(host, "/api/chat/message", {"user_id": user, "message": f"remember {canary}", "session_id": "p"}),
    ]
    ids = [r.headers["x-request-id"] for r in request_ids]
    assert canary in request_ids[-1].text or llm.chat_requests()  # it did reach the service and the model
    llm.clear_rules()

    # Every request's trace and its log lines have been exported, and a metric export after them.
    def flushed(items: list[dict[str, Any]]) -> bool:
        logged = {props(i).get("request_id") for i in items if kind(i) == MESSAGE}
        return all(request_of(items, rid) and trace_of(items, rid) and rid in logged for rid in ids)

    ingestion.wait_for(flushed)
    ingestion.wait_for(lambda i: metric_total(i, "memory_layer.memories.added", operation="chat") >= 1)
    leaks = [body for body in ingestion.raw_bodies() if canary.encode() in body]
    assert not leaks, leaks[0][:2000]
    assert len(ingestion.items()) > 0


def _graph(name: str) -> dict[str, Any]:
    return {
        "entities": [{"name": "I", "type": "person"}, {"name": name, "type": "thing"}],
        "relations": [{"source": "I", "relation": "remembers", "target": name}],
        "invalidates": [],
    }
