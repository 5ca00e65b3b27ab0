"""`python -m tools.bench ingest`: ingestion off the request path, measured through dev hosts.

- 202 latency: `POST /api/memory/add` with `Prefer: respond-async`, p50/p95 (queue mode).
- Drain rate: events put on `memory-ingest` (from this process, through the app's own Ingestion,
  as fast as Azurite takes them) while one, then two dev hosts consume the one queue; memories
  per second from the first enqueue until the last event `succeeded`.
- Chat turn latency with the fake LLM answering every call after `--llm-delay` (500 ms): inline
  (the answer, mem0's extraction and the graph's in line: three calls) against queue mode (one).

Everything real but Azure OpenAI: Azurite (queue, events, sessions, history), a Chroma server (the
two hosts share it), Neo4j (the graph's call), the fake LLM over HTTP.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tools.bench.common import fmt_ms, format_table, latency_summary, loadavg_1m, machine_info
from tools.bench.host import ServiceHost


@dataclass
class IngestConfig:
    accepts: int = 200  # timed 202s
    events: int = 60  # events per drain run
    per_event: int = 10  # memories per event
    chat_turns: int = 8
    llm_delay: float = 0.5
    root: Path | None = None


def _wait_for(what: str, condition: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)


@contextmanager
def _servers(root: Path, delay: float) -> Iterator[dict[str, Any]]:
    from tools.harness.azurite import AzuriteServer
    from tools.harness.chroma_server import ChromaServer
    from tools.harness.fake_openai import FakeOpenAIServer, default_chat_responder
    from tools.harness.neo4j_server import Neo4jServer

    def slow(request: dict[str, Any]) -> Any:
        time.sleep(delay)  # every chat call: the answer, mem0's extraction, the graph's
        return default_chat_responder(request)

    with ExitStack() as stack:
        azurite = stack.enter_context(AzuriteServer())
        chroma = stack.enter_context(ChromaServer(root / "chroma"))
        neo4j = Neo4jServer(root / "neo4j")
        neo4j.start()
        stack.callback(neo4j.stop)
        llm = stack.enter_context(FakeOpenAIServer())
        llm.chat_responder = slow
        yield {"azurite": azurite, "chroma": chroma, "neo4j": neo4j, "llm": llm}


def _env(servers: dict[str, Any], mode: str, graph: bool) -> dict[str, str]:
    azurite, chroma, neo4j, llm = servers["azurite"], servers["chroma"], servers["neo4j"], servers["llm"]
    env = {
        "VECTOR_STORE": "chroma",
        "CHROMA_HOST": chroma.host,
        "CHROMA_PORT": str(chroma.port),
        "COLLECTION_NAME": "bench_ingest",
        "STATE_STORE": "azure_table",
        "AZURE_TABLES_CONNECTION_STRING": azurite.connection_string,
        "AzureWebJobsStorage": azurite.connection_string,
        "INGEST_MODE": mode,
        "LLM_PROVIDER": "openai",
        "OPENAI_BASE_URL": llm.base_url,
        "OPENAI_API_KEY": "k",
        "LLM_MAX_RETRIES": "0",
        "LOG_LEVEL": "WARNING",
    }
    if graph:
        env.update({"GRAPH_STORE": "neo4j", "NEO4J_URI": neo4j.uri, "NEO4J_PASSWORD": neo4j.password})
    return env


def _accept_latency(url: str, count: int) -> dict[str, Any]:
    latencies = []
    with httpx.Client(base_url=url, timeout=60) as client:
        for index in range(count):
            body = {"user_id": "bench-accept", "content": f"accepted memory number {index} about topic{index % 17}"}
            began = time.perf_counter()
            response = client.post("/api/memory/add", json=body, headers={"Prefer": "respond-async"})
            latencies.append((time.perf_counter() - began) * 1000)
            if response.status_code != 202:
                raise RuntimeError(f"expected 202, got {response.status_code}: {response.text[:200]}")
    return latency_summary(latencies)


def _ingestion_here(env: dict[str, str]) -> Any:
    """The app's Ingestion in this process, on the hosts' queue and tables (it builds no mem0)."""
    from shared import runtime

    for key, value in env.items():
        os.environ[key] = value
    runtime.reset()
    return runtime.get_ingestion()


def _drain(ingestion: Any, run: str, events: int, per_event: int) -> dict[str, Any]:
    from shared.contract import MemoryInput

    began = time.perf_counter()
    ids = []
    for e in range(events):
        items = [MemoryInput(content=f"{run} event {e} fact {i} about thing{e}x{i}") for i in range(per_event)]
        ids.append(ingestion.submit_memories(f"bench-drain-{run}", items).event_id)
    filled = time.perf_counter() - began
    pending = set(ids)

    def drained() -> bool:
        for event_id in list(pending):
            event = ingestion.events.get(event_id)
            if event.status == "failed":
                raise RuntimeError(f"event {event_id} failed: {event.error}")
            if event.status == "succeeded":
                pending.discard(event_id)
        return not pending

    _wait_for("the queue to drain", drained, timeout=900)
    elapsed = time.perf_counter() - began
    memories = events * per_event
    return {
        "events": events,
        "memories": memories,
        "fill_s": round(filled, 2),
        "drain_s": round(elapsed, 2),
        "memories_per_s": round(memories / elapsed, 1),
    }


def _chat_latency(url: str, turns: int) -> dict[str, Any]:
    latencies = []
    statuses = set()
    with httpx.Client(base_url=url, timeout=120) as client:
        user = f"bench-chat-{uuid.uuid4().hex[:6]}"
        for index in range(turns):
            body = {"user_id": user, "message": f"I visited Lisbon in year {2000 + index}", "session_id": "s"}
            began = time.perf_counter()
            response = client.post("/api/chat/message", json=body)
            latencies.append((time.perf_counter() - began) * 1000)
            if response.status_code != 200:
                raise RuntimeError(f"chat answered {response.status_code}: {response.text[:200]}")
            statuses.add(response.json()["learning"]["status"])
    return {**latency_summary(latencies), "learning_status": sorted(statuses)}


def run_ingest(config: IngestConfig, root: Path) -> dict[str, Any]:
    result: dict[str, Any] = {"config": {k: str(v) for k, v in vars(config).items()}, "machine": machine_info()}
    result["load_before"] = loadavg_1m()
    with _servers(root, config.llm_delay) as servers:
        llm = servers["llm"]
        queue_env = _env(servers, "queue", graph=False)
        first = ServiceHost(root / "w1", queue_env, name="ingest-w1")
        first.start()
        try:
            result["accept_202"] = _accept_latency(first.url, config.accepts)
            ingestion = _ingestion_here(queue_env)
            _wait_for("the accepted adds to drain", lambda: _queue_empty(ingestion), timeout=600)
            result["drain_one_host"] = _drain(ingestion, "one", config.events, config.per_event)
            second = ServiceHost(root / "w2", queue_env, name="ingest-w2")
            second.start()
            try:
                result["drain_two_hosts"] = _drain(ingestion, "two", config.events, config.per_event)
            finally:
                second.stop()
        finally:
            first.stop()

        for mode in ("inline", "queue"):
            host = ServiceHost(root / f"chat-{mode}", _env(servers, mode, graph=True), name=f"chat-{mode}")
            host.start()
            try:
                llm.requests.clear()
                result[f"chat_{mode}"] = _chat_latency(host.url, config.chat_turns)
                result[f"chat_{mode}"]["llm_calls_in_line"] = 3 if mode == "inline" else 1
            finally:
                host.stop()
    result["load_after"] = loadavg_1m()
    return result


def _queue_empty(ingestion: Any) -> bool:
    return bool(ingestion.queue.backlog() == 0)


def ingest_tables(result: dict[str, Any]) -> str:
    accept = result["accept_202"]
    rows = [["202 (Prefer: respond-async)", accept["count"], fmt_ms(accept["ms_p50"]), fmt_ms(accept["ms_p95"])]]
    for mode in ("inline", "queue"):
        chat = result[f"chat_{mode}"]
        label = f"chat turn, {mode} ({chat['llm_calls_in_line']} LLM call(s) in line)"
        rows.append([label, chat["count"], fmt_ms(chat["ms_p50"]), fmt_ms(chat["ms_p95"])])
    latency = format_table(["request", "n", "p50 ms", "p95 ms"], rows, title="Latency")
    drains = [
        [name, run["events"], run["memories"], run["fill_s"], run["drain_s"], run["memories_per_s"]]
        for name, run in (("one dev host", result["drain_one_host"]), ("two dev hosts", result["drain_two_hosts"]))
    ]
    drain = format_table(
        ["consumers", "events", "memories", "fill s", "drained s", "memories/s"], drains, title="Drain of one queue"
    )
    load = f"load average (1 min): {result['load_before']} before, {result['load_after']} after"
    return f"{latency}\n\n{drain}\n\n{load}"
