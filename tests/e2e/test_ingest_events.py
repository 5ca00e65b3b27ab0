"""Ingestion off the request path, through the dev host over HTTP: `Prefer: respond-async` adds,
the events endpoint, the `memory-ingest` queue run by the dev host against Azurite, chat learning
as an event, retries ending in `failed` and the poison queue, and the zero-setup inline mode."""

from __future__ import annotations

import base64
import contextlib
import json
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.queue import QueueClient

from tests.helpers import DevHost
from tools.harness.azurite import AzuriteServer
from tools.harness.fake_openai import FakeOpenAIServer, json_mode, last_user_message
from tools.harness.ports import wait_until

ASYNC = {"Prefer": "respond-async"}


def wait_for_event(client: httpx.Client, location: str, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        response = client.get(location)
        assert response.status_code == 200, response.text
        data = response.json()["data"]
        if data["status"] in ("succeeded", "failed") or time.monotonic() > deadline:
            return data
        time.sleep(0.1)


def accepted(response: httpx.Response) -> tuple[str, dict]:
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["success"] is True
    location = response.headers["location"]
    assert location == f"/api/memory/events/{body['data']['event_id']}"
    assert response.headers["preference-applied"] == "respond-async"
    return location, body["data"]


# --- zero-setup: inline ---------------------------------------------------------------------------


def test_inline_default_events_have_succeeded_when_the_202_is_sent(api: httpx.Client) -> None:
    user = f"inline-{uuid.uuid4().hex[:6]}"
    location, data = accepted(api.post("/api/memory/add", json={"user_id": user, "content": "Likes green tea"},
                                       headers=ASYNC))  # fmt: skip
    assert data["status"] == "succeeded"
    event = api.get(location, params={"user_id": user}).json()["data"]
    (memory_id,) = event["memory_ids"]
    memory = api.get(f"/api/memory/memory/{memory_id}", params={"user_id": user}).json()["data"]
    assert memory["memory"] == "Likes green tea"

    location, data = accepted(
        api.post("/api/memory/batch-add", json={"user_id": user, "memories": [{"content": "a"}, {"content": "b"}]},
                 headers={"Prefer": "wait=5, respond-async"})
    )  # fmt: skip
    assert data["status"] == "succeeded" and len(api.get(location).json()["data"]["memory_ids"]) == 2
    assert api.get(f"/api/memory/user/{user}").json()["data"]["total"] == 3


def test_without_the_header_the_seed_shapes_are_unchanged(api: httpx.Client) -> None:
    response = api.post("/api/memory/add", json={"user_id": "seedshape", "content": "plain add"})
    assert response.status_code == 200 and "location" not in response.headers
    assert set(response.json()["data"]) == {"memory_id", "user_id", "content"}
    response = api.post("/api/memory/batch-add", json={"user_id": "seedshape", "memories": [{"content": "x"}]})
    assert response.status_code == 200 and set(response.json()["data"]) == {"memory_ids", "count"}


def test_events_are_scoped_by_owner_and_never_leak_existence(api: httpx.Client) -> None:
    location, _ = accepted(api.post("/api/memory/add", json={"user_id": "owner", "content": "mine"}, headers=ASYNC))
    event_id = location.rsplit("/", 1)[1]
    other = api.get(location, params={"user_id": "intruder"})
    unknown = api.get(f"/api/memory/events/{uuid.uuid4()}", params={"user_id": "intruder"})
    assert other.status_code == unknown.status_code == 404
    assert other.json()["error"]["code"] == unknown.json()["error"]["code"] == "not_found"
    assert event_id not in json.dumps(unknown.json())
    assert api.get("/api/memory/events/not-an-id").status_code == 404
    assert api.get(location, params={"user_id": "owner"}).status_code == 200


# --- the queue, run by the dev host against Azurite -----------------------------------------------


@pytest.fixture(scope="module")
def llm() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as server:
        yield server


@pytest.fixture(scope="module")
def queued(
    tmp_path_factory: pytest.TempPathFactory, azurite: AzuriteServer, llm: FakeOpenAIServer
) -> Iterator[DevHost]:
    env = {
        "AzureWebJobsStorage": azurite.connection_string,
        "EVENTS_TABLE": f"events{uuid.uuid4().hex[:8]}",
        "LLM_PROVIDER": "openai",
        "OPENAI_BASE_URL": llm.base_url,
        "OPENAI_API_KEY": "k",
        "LLM_MAX_RETRIES": "0",
    }
    host = DevHost(tmp_path_factory.mktemp("queued") / "data", env, name="queued-host").start()
    yield host
    host.stop()


@pytest.fixture
def fresh_llm(llm: FakeOpenAIServer) -> Iterator[FakeOpenAIServer]:
    llm.reset()
    yield llm
    llm.reset()


def test_an_async_add_is_queued_then_succeeds_on_the_queue(queued: DevHost) -> None:
    api = queued.client
    user = f"q-{uuid.uuid4().hex[:6]}"
    texts = [f"Queued fact number {i}" for i in range(5)]
    location, data = accepted(
        api.post("/api/memory/batch-add", json={"user_id": user, "memories": [{"content": t} for t in texts]},
                 headers=ASYNC)
    )  # fmt: skip
    assert data["status"] == "queued"
    event = wait_for_event(api, location)
    assert event["status"] == "succeeded", event
    assert event["created_at"] <= event["updated_at"]
    listed = api.get(f"/api/memory/user/{user}").json()["data"]["results"]
    assert sorted(m["memory"] for m in listed) == sorted(texts)
    assert sorted(m["id"] for m in listed) == sorted(event["memory_ids"])
    assert "learned" not in queued.log()  # nothing else ran for it
    # The host logs "Executed" once the function returned, a moment after the event was saved.
    wait_until(lambda: "Executed 'Functions.memory_ingest' (Succeeded" in queued.log(), 30, what="the Executed line")


def test_chat_answers_with_the_learning_queued_and_the_next_turn_sees_it(
    queued: DevHost, fresh_llm: FakeOpenAIServer
) -> None:
    api = queued.client
    user = f"chat-{uuid.uuid4().hex[:6]}"
    fresh_llm.when(match=json_mode, reply={"facts": ["Keeps bees on the roof"]}, times=1)
    reply = api.post("/api/chat/message", json={"user_id": user, "message": "I keep bees", "session_id": "s1"})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert set(body) >= {"response", "user_id", "session_id", "memories_used", "timestamp"}
    assert body["learning"]["status"] == "queued"
    sessions = api.get(f"/api/memory/export/{user}").json()["data"]["sessions"]
    assert [t["user_message"] for t in sessions["s1"]] == ["I keep bees"]  # the turn is in the session already
    event = wait_for_event(api, f"/api/memory/events/{body['learning']['event_id']}?user_id={user}")
    assert event["status"] == "succeeded", event
    (learned,) = api.get(f"/api/memory/user/{user}").json()["data"]["results"]
    assert learned["memory"] == "Keeps bees on the roof" and learned["id"] == event["memory_ids"][0]
    api.post("/api/chat/message", json={"user_id": user, "message": "what about my bees?", "session_id": "s1"})
    prompts = [r for r in fresh_llm.chat_requests() if not json_mode(r.json)]
    assert "Keeps bees on the roof" in prompts[-1].messages[1]["content"]  # the memory data block


def test_learning_that_keeps_failing_ends_failed_and_its_message_in_the_poison_queue(
    queued: DevHost, fresh_llm: FakeOpenAIServer, azurite: AzuriteServer
) -> None:
    api = queued.client
    user = f"fail-{uuid.uuid4().hex[:6]}"

    def answer_then_go_down(request: dict) -> str:
        fresh_llm.down()  # every later call (the extraction, each retry's) is a 503
        return f"Sure: {last_user_message(request)}"

    fresh_llm.chat_responder = answer_then_go_down
    reply = api.post("/api/chat/message", json={"user_id": user, "message": "remember my locker code"})
    assert reply.status_code == 200, reply.text
    event_id = reply.json()["learning"]["event_id"]
    event = wait_for_event(api, f"/api/memory/events/{event_id}", timeout=90)
    assert event["status"] == "failed", event
    assert "llm" in event["error"].lower() or "unavailable" in event["error"].lower(), event
    deliveries = re.findall(rf"event {event_id}: delivery (\d+)", queued.log(200_000))
    assert deliveries == ["1", "2", "3", "4"]  # host.json maxDequeueCount
    assert all(r.status == 503 for r in fresh_llm.chat_requests() if json_mode(r.json))
    # The event turns `failed` inside the function, on its last delivery; the host copies the message
    # to the poison queue only once the function has returned. Wait for the copy, not for the status.
    poison = QueueClient.from_connection_string(azurite.connection_string, "memory-ingest-poison")

    def poisoned() -> bool:
        with contextlib.suppress(ResourceNotFoundError):  # the host creates the queue with its first message
            bodies = [json.loads(base64.b64decode(m.content)) for m in poison.peek_messages(max_messages=32)]
            return {"event_id": event_id, "user_id": user} in bodies
        return False

    wait_until(poisoned, timeout=60, interval=0.2, what=f"event {event_id} in memory-ingest-poison")
    assert api.get(f"/api/memory/user/{user}").json()["data"]["total"] == 0  # all or nothing
    # the poison gauge counts it (an approximate count read from the queue service on each collection)
    gauges = api.get("/metrics").json()["queues"]["memory-ingest"]
    assert gauges["poison"] >= 1 and gauges["backlog"] >= 0


# --- a host killed with a full queue --------------------------------------------------------------


def test_a_host_killed_with_a_full_queue_loses_and_doubles_nothing(tmp_path: Path) -> None:
    # Each event's work outlasts the sending of all of them and a poll of every status: with 6 or 12
    # memories an event, a fast host had done all 24 before the first poll (CI, twice).
    events, per_event = 24, 40
    with AzuriteServer() as storage:  # its own queue: no other host may take these messages
        env = {"AzureWebJobsStorage": storage.connection_string}
        host = DevHost(tmp_path / "data", env, name="killed-host", args=["--queue-lease", "3"]).start()
        api = host.client
        user = "kill-9"
        texts = [[f"event {e} fact {i} about item{e}x{i}" for i in range(per_event)] for e in range(events)]
        locations = []
        for batch in texts:
            body = {"user_id": user, "memories": [{"content": t} for t in batch]}
            locations.append(accepted(api.post("/api/memory/batch-add", json=body, headers=ASYNC))[0])
        # Killed as soon as the host has messages in hand and the queue is not drained: a condition,
        # not a delay, so a faster or slower machine kills it at the same point.
        statuses: list[str] = []
        seen: list[str] = []  # each poll's statuses, run-length coded: what a failure shows

        def draining() -> bool:
            try:
                statuses[:] = [api.get(loc).json()["data"]["status"] for loc in locations]
            except Exception as error:
                seen.append(f"poll failed: {error!r}"[:200])
                raise
            seen.append(" ".join(f"{s}x{statuses.count(s)}" for s in ("queued", "processing", "succeeded")))
            return "processing" in statuses or ("succeeded" in statuses and "queued" in statuses)

        try:
            wait_until(draining, 60, interval=0.01, what="the host taking messages in hand")
        except TimeoutError as error:
            raise AssertionError(f"never seen mid-way; polls: {list(dict.fromkeys(seen))}") from error
        host.kill()
        assert any(s != "succeeded" for s in statuses), statuses  # the queue was not drained yet
        host.start()
        try:
            finished = [wait_for_event(api, loc, timeout=120) for loc in locations]
            assert [e["status"] for e in finished] == ["succeeded"] * events, (statuses, finished)
            listed = api.get(f"/api/memory/user/{user}", params={"limit": 1000}).json()["data"]["results"]
            stored = sorted(m["memory"] for m in listed)
            assert stored == sorted(t for batch in texts for t in batch)  # nothing lost, nothing twice
            assert sorted(m["id"] for m in listed) == sorted(i for e in finished for i in e["memory_ids"])
            history = api.get(f"/api/memory/memory/{listed[0]['id']}/history").json()["data"]["history"]
            assert [h["event"] for h in history] == ["ADD"]  # a redo left no second history row
        finally:
            host.stop()
