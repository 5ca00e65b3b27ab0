"""Learning that stays true, through the dev host over HTTP, with the scripted model (the fake OpenAI
server answering our extraction and decision prompts from tests/data/updates_scenarios.json).

On each engine (embedded Qdrant Edge, local Qdrant, Chroma): every scenario's current facts are
exactly the labelled ones after every turn (adds with `"infer": true`), a superseded memory is still
readable by id with its successor and both have their history rows, and deleting the user erases
whole chains. Chat learning (inline, and queued on Azurite) reconciles too, and a replayed queued
learning event changes nothing."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from azure.storage.queue import QueueClient

from tests.helpers import DevHost
from tools.harness.azurite import AzuriteServer
from tools.harness.chroma_server import ChromaServer
from tools.harness.fake_openai import FakeOpenAIServer
from tools.harness.fake_openai.scripted import LearningScript, load_scenarios, script_learning

SCENARIOS = load_scenarios()


@pytest.fixture(scope="module")
def scripted() -> Iterator[tuple[FakeOpenAIServer, LearningScript]]:
    with FakeOpenAIServer() as server:
        yield server, script_learning(server)


def _llm_env(server: FakeOpenAIServer) -> dict[str, str]:
    return {"LLM_PROVIDER": "openai", "OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "k", "LLM_MAX_RETRIES": "0"}


@pytest.fixture(scope="module", params=["edge", "qdrant-local", "chroma"])
def host(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    scripted: tuple[FakeOpenAIServer, LearningScript],
) -> Iterator[DevHost]:
    env = _llm_env(scripted[0])
    if request.param == "qdrant-local":
        env["VECTOR_STORE"] = "qdrant"
    elif request.param == "chroma":
        chroma: ChromaServer = request.getfixturevalue("chroma_server")
        env.update({"VECTOR_STORE": "chroma", "CHROMA_HOST": chroma.host, "CHROMA_PORT": str(chroma.port)})
    started = DevHost(tmp_path_factory.mktemp(f"learn-{request.param}") / "data", env, name="learn-host").start()
    yield started
    started.stop()


def data(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()["data"]


def chat(api: httpx.Client, user: str, message: str) -> dict[str, Any]:
    response = api.post("/api/chat/message", json={"user_id": user, "message": message, "session_id": "s1"})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()  # the chat's answer is not in the envelope
    return body


def field(record: dict[str, Any], name: str) -> Any:
    """A validity field: on the record (issue 22's payload) or, before those reads exist, its metadata."""
    return record.get(name) or (record.get("metadata") or {}).get(name)


def current(api: httpx.Client, user: str) -> list[str]:
    records = data(api.get(f"/api/memory/user/{user}", params={"limit": 100}))["results"]
    return sorted(r["memory"] for r in records if not field(r, "valid_until"))


def test_every_scenario_is_exact_with_history_and_erased_whole(host: DevHost) -> None:
    api, run = host.client, uuid.uuid4().hex[:6]
    chains = 0
    for scenario in SCENARIOS:
        user = f"{run}-{scenario['id']}"
        for number, turn in enumerate(scenario["turns"], 1):
            added = data(api.post("/api/memory/add", json={"user_id": user, "content": turn["say"], "infer": True}))
            assert [f["event"] for f in added["facts"]] == [f["action"] for f in turn["facts"]], (
                scenario["id"],
                number,
            )
            assert current(api, user) == sorted(turn["current"]), (scenario["id"], number)
            for fact in added["facts"]:
                if fact["event"] == "SUPERSEDE":
                    chains += 1
                    _check_chain(api, user, fact["ids"], fact["memory_id"])
                elif fact["event"] == "INVALIDATE":
                    for old in fact["ids"]:
                        record = data(api.get(f"/api/memory/memory/{old}", params={"user_id": user}))
                        assert field(record, "valid_until") and not field(record, "superseded_by")
                        history = data(api.get(f"/api/memory/memory/{old}/history", params={"user_id": user}))
                        assert [row["event"] for row in _rows(history)][-1] == "INVALIDATED"
    assert chains >= 20
    # Erasure takes whole chains: the superseded and invalidated memories and their history too.
    user = f"{run}-en-change-twice"
    ids = [
        r["id"]
        for r in data(api.get(f"/api/memory/user/{user}", params={"limit": 100, "include_superseded": "true"}))[
            "results"
        ]
    ]
    assert len(ids) == 3
    assert api.delete(f"/api/memory/user/{user}").status_code == 200
    for memory_id in ids:
        assert api.get(f"/api/memory/memory/{memory_id}", params={"user_id": user}).status_code == 404
    assert data(api.get(f"/api/memory/user/{user}"))["results"] == []


def _rows(history: Any) -> list[dict[str, Any]]:
    return list(history if isinstance(history, list) else history.get("history") or history.get("results") or [])


def _check_chain(api: httpx.Client, user: str, old_ids: list[str], new_id: str) -> None:
    new = data(api.get(f"/api/memory/memory/{new_id}", params={"user_id": user}))
    assert field(new, "supersedes") == old_ids and not field(new, "valid_until")
    for old in old_ids:
        record = data(api.get(f"/api/memory/memory/{old}", params={"user_id": user}))  # still readable by id
        assert field(record, "superseded_by") == new_id and field(record, "valid_until")
        events = [
            row["event"] for row in _rows(data(api.get(f"/api/memory/memory/{old}/history", params={"user_id": user})))
        ]
        assert events[0] == "ADD" and events[-1] == "SUPERSEDED" and events.count("SUPERSEDED") == 1
    history = data(api.get(f"/api/memory/memory/{new_id}/history", params={"user_id": user}))
    assert [row["event"] for row in _rows(history)] == ["ADD", "SUPERSEDES"]


def _scenario(name: str) -> dict[str, Any]:
    return next(s for s in SCENARIOS if s["id"] == name)


def test_a_chat_turn_learns_with_reconciliation(host: DevHost) -> None:
    api, user = host.client, f"chat-{uuid.uuid4().hex[:6]}"
    for turn in _scenario("zh-change-twice")["turns"]:
        body = chat(api, user, turn["say"])
        assert body["learning"]["status"] == "succeeded"
        assert current(api, user) == sorted(turn["current"])


# --- queued learning, and a replayed delivery -----------------------------------------------------


@pytest.fixture(scope="module")
def queued(
    tmp_path_factory: pytest.TempPathFactory,
    azurite: AzuriteServer,
    scripted: tuple[FakeOpenAIServer, LearningScript],
) -> Iterator[DevHost]:
    env = {
        **_llm_env(scripted[0]),
        "AzureWebJobsStorage": azurite.connection_string,
        "EVENTS_TABLE": f"events{uuid.uuid4().hex[:8]}",
    }
    started = DevHost(tmp_path_factory.mktemp("learn-queued") / "data", env, name="learn-queued").start()
    yield started
    started.stop()


def _event(api: httpx.Client, event_id: str, user: str, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        event: dict[str, Any] = data(api.get(f"/api/memory/events/{event_id}", params={"user_id": user}))
        if event["status"] in ("succeeded", "failed") or time.monotonic() > deadline:
            return event
        time.sleep(0.1)


def test_queued_learning_reconciles_and_a_replayed_event_changes_nothing(
    queued: DevHost, azurite: AzuriteServer, scripted: tuple[FakeOpenAIServer, LearningScript]
) -> None:
    api, user = queued.client, f"queued-{uuid.uuid4().hex[:6]}"
    event_id = ""
    for turn in _scenario("en-change-twice")["turns"]:
        body = chat(api, user, turn["say"])
        event_id = body["learning"]["event_id"]
        assert _event(api, event_id, user)["status"] == "succeeded"
        assert current(api, user) == sorted(turn["current"])
    before = data(api.get(f"/api/memory/user/{user}", params={"limit": 100, "include_superseded": "true"}))["results"]
    decisions = scripted[1].decisions
    queue = QueueClient.from_connection_string(azurite.connection_string, "memory-ingest")
    message = json.dumps({"event_id": event_id, "user_id": user})
    queue.send_message(base64.b64encode(message.encode()).decode())  # the same event, delivered again

    def replayed() -> bool:
        return f"event {event_id} already succeeded" in queued.log(200_000)

    deadline = time.monotonic() + 30
    while not replayed() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert replayed()
    after = data(api.get(f"/api/memory/user/{user}", params={"limit": 100, "include_superseded": "true"}))["results"]
    assert after == before and scripted[1].decisions == decisions  # no model call, nothing written


def test_a_queued_add_with_infer_reconciles_on_the_queue(queued: DevHost) -> None:
    api, user = queued.client, f"qadd-{uuid.uuid4().hex[:6]}"
    for turn in _scenario("zh-change-city")["turns"]:
        body = {"user_id": user, "content": turn["say"], "infer": True}
        response = api.post("/api/memory/add", json=body, headers={"Prefer": "respond-async"})
        assert response.status_code == 202, response.text
        event = _event(api, response.json()["data"]["event_id"], user)
        assert event["status"] == "succeeded" and len(event["memory_ids"]) == 1
        assert current(api, user) == sorted(turn["current"])
