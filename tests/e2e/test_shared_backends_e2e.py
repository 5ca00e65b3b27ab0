"""Two dev host processes (two stateless workers) sharing one Chroma server and one Azurite, with
the fake LLM: what one worker writes, the other reads; a chat continues across workers; outages
are 503s that leave nothing half-written and heal without a restart."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import DevHost
from tools.harness.azurite import AzuriteServer
from tools.harness.chroma_server import ChromaServer
from tools.harness.fake_openai import FakeOpenAIServer

FACT = "Likes sci-fi films, especially Interstellar"


@pytest.fixture(scope="module")
def llm_server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as server:
        yield server


@pytest.fixture(scope="module")
def workers(
    tmp_path_factory: pytest.TempPathFactory,
    chroma_server: ChromaServer,
    azurite: AzuriteServer,
    llm_server: FakeOpenAIServer,
) -> Iterator[tuple[DevHost, DevHost]]:
    collection = f"e2e_{uuid.uuid4().hex[:8]}"
    env = {
        "VECTOR_STORE": "chroma",
        "CHROMA_HOST": chroma_server.host,
        "CHROMA_PORT": str(chroma_server.port),
        "COLLECTION_NAME": collection,
        "STATE_STORE": "azure_table",
        "AZURE_TABLES_CONNECTION_STRING": azurite.connection_string,
        "SESSIONS_TABLE": f"sessions{uuid.uuid4().hex[:8]}",
        "HISTORY_TABLE": f"history{uuid.uuid4().hex[:8]}",
        "LLM_PROVIDER": "openai",
        "OPENAI_BASE_URL": llm_server.base_url,
        "OPENAI_API_KEY": "sk-test",
        "OPENAI_MODEL": "fake-chat",
        "LLM_MAX_RETRIES": "2",
        "VECTOR_STORE_TIMEOUT_SECONDS": "3",
    }
    root = tmp_path_factory.mktemp("workers")
    first = DevHost(root / "w1", env, name="worker1").start()
    second = DevHost(root / "w2", env, name="worker2").start()
    yield first, second
    first.stop()
    second.stop()


def data(response: httpx.Response) -> dict:
    assert response.status_code == 200, response.text
    return response.json()["data"]


ALICE_TEXTS = ("Prefers Python for data analysis", "Prefers Rust for systems work", "Drinks coffee every morning")


def _table_rows_holding(azurite: AzuriteServer, texts: tuple[str, ...]) -> list[str]:
    """The rows of every table in Azurite that hold one of `texts`, as "table: row key"."""
    from azure.data.tables import TableServiceClient

    service = TableServiceClient.from_connection_string(azurite.connection_string)
    found = []
    for table in service.list_tables():
        for entity in service.get_table_client(table.name).list_entities():
            values = " ".join(str(value) for value in entity.values())
            if any(text in values for text in texts):
                found.append(f"{table.name}: {entity.get('RowKey')}")
    return found


def test_a_memory_written_by_one_worker_is_served_by_the_other(
    workers: tuple[DevHost, DevHost], azurite: AzuriteServer
) -> None:
    one, two = workers
    alice = f"alice-{uuid.uuid4().hex[:6]}"
    memory_id = data(
        one.client.post(
            "/api/memory/add",
            json={
                "user_id": alice,
                "content": "Prefers Python for data analysis",
                "metadata": {"category": "preferences"},
            },
        )
    )["memory_id"]
    data(
        one.client.post(
            "/api/memory/batch-add",
            json={
                "user_id": alice,
                "memories": [{"content": "Drinks coffee every morning", "metadata": {"category": "habits"}}],
            },
        )
    )

    found = data(two.client.post("/api/memory/search", json={"user_id": alice, "query": "programming language"}))
    assert found["results"][0]["id"] == memory_id

    data(
        two.client.put(
            "/api/memory/update",
            json={"memory_id": memory_id, "content": "Prefers Rust for systems work", "user_id": alice},
        )
    )
    assert data(one.client.get(f"/api/memory/memory/{memory_id}"))["memory"] == "Prefers Rust for systems work"
    history = data(one.client.get(f"/api/memory/memory/{memory_id}/history"))["history"]
    assert [h["event"] for h in history] == ["ADD", "UPDATE"]  # written by worker 1 then worker 2

    stats = data(two.client.get(f"/api/memory/stats/{alice}"))
    assert stats["category_distribution"] == {"preferences": 1, "habits": 1}
    assert _table_rows_holding(azurite, ALICE_TEXTS)  # the history holds them until the deletes below
    data(two.client.delete(f"/api/memory/memory/{memory_id}"))
    assert one.client.get(f"/api/memory/memory/{memory_id}").status_code == 404
    assert data(one.client.delete(f"/api/memory/user/{alice}")) == {"deleted": 1}
    # Deleting erased: no row of any table (history, sessions) holds a text alice's memories had.
    assert _table_rows_holding(azurite, ALICE_TEXTS) == []


def test_a_chat_session_continues_on_the_other_worker(
    workers: tuple[DevHost, DevHost], llm_server: FakeOpenAIServer
) -> None:
    one, two = workers
    alice = f"alice-{uuid.uuid4().hex[:6]}"
    llm_server.reset()
    llm_server.when("Interstellar", role="user", match=_extraction, reply={"facts": [FACT]}, times=1)
    first = one.client.post(
        "/api/chat/message",
        json={
            "user_id": alice,
            "message": "I love sci-fi films, Interstellar above all",
            "session_id": "s-1",
            "metadata": {"source": "web"},
        },
    )
    assert first.status_code == 200, first.text
    body = first.json()
    assert set(body) == {"response", "user_id", "session_id", "memories_used", "timestamp", "learning"}
    assert body["learning"]["status"] == "succeeded"  # no queue configured: learned inline
    assert body["session_id"] == "s-1" and body["response"].startswith("ACK:")

    second = two.client.post(
        "/api/chat/message", json={"user_id": alice, "message": "Which film did I mention?", "session_id": "s-1"}
    )
    assert second.status_code == 200, second.text
    answer_prompt = _answer_requests(llm_server)[-1]
    texts = [m["content"] for m in answer_prompt]
    assert "I love sci-fi films, Interstellar above all" in texts  # the earlier turn, from worker 1
    assert any(FACT in t for t in texts if isinstance(t, str))  # the memory learned by worker 1
    memories = data(two.client.get(f"/api/chat/memories/{alice}"))["results"]
    assert second.json()["memories_used"] == [m["id"] for m in memories if m["memory"] == FACT]

    # the export holds the session as both workers recorded it
    exported = data(one.client.get(f"/api/memory/export/{alice}"))
    turns = exported["sessions"]["s-1"]
    assert [t["user_message"] for t in turns] == [
        "I love sci-fi films, Interstellar above all",
        "Which film did I mention?",
    ]
    assert FACT in {m["memory"] for m in exported["memories"]}

    # a new session gets an id, and does not see the other session's turns
    third = one.client.post("/api/chat/message", json={"user_id": alice, "message": "hello again"})
    assert third.json()["session_id"] not in ("", "s-1")
    assert "I love sci-fi films, Interstellar above all" not in [m["content"] for m in _answer_requests(llm_server)[-1]]


def test_llm_throttling_is_retried_and_llm_down_records_nothing(
    workers: tuple[DevHost, DevHost], llm_server: FakeOpenAIServer
) -> None:
    one, two = workers
    bob = f"bob-{uuid.uuid4().hex[:6]}"
    llm_server.reset()
    llm_server.fail_next(1, status=429, retry_after="0.1")
    ok = one.client.post("/api/chat/message", json={"user_id": bob, "message": "first", "session_id": "s"})
    assert ok.status_code == 200, ok.text

    llm_server.when(match=_extraction, reply={"facts": ["Bob owns a cat"]})
    llm_server.down()
    try:
        failed = two.client.post(
            "/api/chat/message", json={"user_id": bob, "message": "I own a cat", "session_id": "s"}
        )
    finally:
        llm_server.up()
    assert failed.status_code == 503, failed.text
    assert failed.json()["error"]["code"] == "unavailable" and int(failed.headers["Retry-After"]) >= 1
    # nothing of the failed turn: no memory, and the session still holds only the first turn
    assert data(one.client.get(f"/api/memory/user/{bob}"))["total"] == 0
    llm_server.clear_rules()
    one.client.post("/api/chat/message", json={"user_id": bob, "message": "what do I own?", "session_id": "s"})
    history = [m["content"] for m in _answer_requests(llm_server)[-1]]
    assert "first" in history and "I own a cat" not in history


def test_chroma_outage_is_a_503_and_heals_without_restart(
    workers: tuple[DevHost, DevHost],
    chroma_server: ChromaServer,
) -> None:
    one, _ = workers
    carol = f"carol-{uuid.uuid4().hex[:6]}"
    data(one.client.post("/api/memory/add", json={"user_id": carol, "content": "before the outage"}))
    with chroma_server.outage():
        down = one.client.post("/api/memory/add", json={"user_id": carol, "content": "during the outage"})
        assert down.status_code == 503, down.text
        assert down.json()["error"]["code"] == "unavailable" and down.headers["Retry-After"]
        assert one.client.post("/api/memory/search", json={"user_id": carol, "query": "x"}).status_code == 503
        health = one.client.get("/health/detail").json()
        assert health["status"] == "degraded" and health["checks"]["vector_store"]["status"] == "down"
        assert health["checks"]["state_store"]["status"] == "ok"  # Azurite is still up
    after = data(one.client.get(f"/api/memory/user/{carol}"))
    assert [r["memory"] for r in after["results"]] == ["before the outage"]
    data(one.client.post("/api/memory/add", json={"user_id": carol, "content": "after the outage"}))
    assert data(one.client.get(f"/api/memory/user/{carol}"))["total"] == 2


def test_an_embedder_switch_is_refused_with_a_clear_error(
    tmp_path: Path,
    chroma_server: ChromaServer,
    llm_server: FakeOpenAIServer,
) -> None:
    collection = f"dims_{uuid.uuid4().hex[:8]}"
    env = {
        "VECTOR_STORE": "chroma",
        "CHROMA_HOST": chroma_server.host,
        "CHROMA_PORT": str(chroma_server.port),
        "COLLECTION_NAME": collection,
    }
    local = DevHost(tmp_path / "a", env, name="dims-local").start()
    try:
        data(local.client.post("/api/memory/add", json={"user_id": "u", "content": "384 dims"}))
    finally:
        local.stop()
    remote = DevHost(
        tmp_path / "b",
        {**env, "EMBEDDING_PROVIDER": "openai", "OPENAI_BASE_URL": llm_server.base_url, "OPENAI_API_KEY": "k"},
        name="dims-remote",
    ).start()
    try:
        response = remote.client.post("/api/memory/add", json={"user_id": "u", "content": "1536 dims"})
        assert response.status_code == 503
        body = response.json()
        assert body["error"]["code"] == "misconfigured"
        assert "384" in body["message"] and "1536" in body["message"] and "COLLECTION_NAME" in body["message"]
    finally:
        remote.stop()


def _extraction(request_json: dict) -> bool:
    return bool(request_json.get("response_format"))


def _answer_requests(server: FakeOpenAIServer) -> list[list[dict]]:
    return [r.json["messages"] for r in server.chat_requests(ok_only=True) if not _extraction(r.json)]


def _dump(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)
