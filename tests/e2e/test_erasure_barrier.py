"""Erasure wins races, end to end: the dev host runs the real app with its state in Table Storage and
its ingestion on the `memory-ingest` queue, both on an Azurite of the test's own (no other host takes
its messages, and its files are the test's to read). A 500-item asynchronous batch-add is under way
(its embedding call held by the fake OpenAI server) when the user is deleted; afterwards nothing of
the user is left: no memory, history row, logged message, session turn, event row or queue message,
through the API, in any table or queue, or in any file of the app's or Azurite's."""

from __future__ import annotations

import base64
import contextlib
import json
import time
import uuid
from pathlib import Path
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableServiceClient
from azure.storage.queue import QueueClient

from tests.helpers import DevHost
from tools.harness.azurite import AzuriteServer
from tools.harness.fake_openai import FakeOpenAIServer, json_mode
from tools.harness.ports import wait_until

ASYNC = {"Prefer": "respond-async"}
HELD = 15.0  # seconds the batch's embedding call is held: the deletion lands inside it


def _files_holding(root: Path, needle: str, *, skip: str | None = None) -> list[str]:
    data = needle.encode()
    return [
        str(path)
        for path in root.rglob("*")
        if path.is_file() and (skip is None or skip not in path.parts) and data in path.read_bytes()
    ]


def _table_rows_naming(storage: AzuriteServer, needles: tuple[str, ...]) -> list[dict[str, Any]]:
    """Every row of every table holding one of `needles` in a key or a value."""
    found = []
    with TableServiceClient.from_connection_string(storage.connection_string) as service:
        for table in service.list_tables():
            for row in service.get_table_client(table.name).list_entities():
                text = json.dumps({**row, "PartitionKey": row["PartitionKey"], "RowKey": row["RowKey"]}, default=str)
                if any(needle in text for needle in needles):
                    found.append({"table": table.name, **row})
    return found


def _queued_bodies(storage: AzuriteServer, name: str) -> list[dict[str, Any]]:
    queue = QueueClient.from_connection_string(storage.connection_string, name)
    with contextlib.suppress(ResourceNotFoundError):  # the poison queue exists once something went there
        return [json.loads(base64.b64decode(m.content)) for m in queue.peek_messages(max_messages=32)]
    return []


def _backlog(storage: AzuriteServer) -> int:
    queue = QueueClient.from_connection_string(storage.connection_string, "memory-ingest")
    return int(queue.get_queue_properties().approximate_message_count or 0)


def test_a_user_erased_mid_batch_leaves_nothing_anywhere(tmp_path: Path) -> None:
    user, other = f"gone-{uuid.uuid4().hex[:8]}", f"kept-{uuid.uuid4().hex[:8]}"
    canary, kept = f"canary{uuid.uuid4().hex[:12]}", f"kept{uuid.uuid4().hex[:12]}"
    with AzuriteServer(tmp_path / "azurite") as storage, FakeOpenAIServer() as llm:
        env = {
            "AzureWebJobsStorage": storage.connection_string,
            "STATE_STORE": "azure_table",  # history, sessions and events in Table Storage
            "EMBEDDING_PROVIDER": "openai",  # so that the test can hold the batch's embedding call
            "LLM_PROVIDER": "openai",
            "OPENAI_BASE_URL": llm.base_url,
            "OPENAI_API_KEY": "k",
            "LLM_MAX_RETRIES": "0",
        }
        data_dir = tmp_path / "data"
        host = DevHost(data_dir, env, name="erasure-host").start()
        api = host.client
        try:
            # What the user had before: a memory (updated: two history texts), a chat turn (session,
            # mem0's message log, a learned memory); and another user, who must keep everything.
            added = api.post("/api/memory/add", json={"user_id": user, "content": f"I keep a {canary} at home"})
            memory_id = added.json()["data"]["memory_id"]
            update = {"memory_id": memory_id, "content": f"I keep two {canary}s", "user_id": user}
            assert api.put("/api/memory/update", json=update).status_code == 200
            llm.when(match=json_mode, reply={"facts": [f"Talks about a {canary}"]})
            turn = api.post(
                "/api/chat/message", json={"user_id": user, "message": f"my {canary} sings", "session_id": "s1"}
            )
            learned = f"/api/memory/events/{turn.json()['learning']['event_id']}"
            wait_until(lambda: api.get(learned).json()["data"]["status"] == "succeeded", 60, what="the turn's learning")
            api.post("/api/memory/add", json={"user_id": other, "content": f"another user's {kept}"})

            # The 500-item batch: its embedding call is held while the user is deleted.
            embedded = len(llm.embedding_requests())
            llm.delay_next(1, seconds=HELD, kind="embeddings")
            items = [{"content": f"fact {i} about the {canary}"} for i in range(500)]
            batch = api.post("/api/memory/batch-add", json={"user_id": user, "memories": items}, headers=ASYNC)
            assert batch.status_code == 202 and batch.json()["data"]["status"] == "queued"
            event_id = batch.json()["data"]["event_id"]

            def batch_embedding_sent() -> bool:
                return any(len(r.json.get("input") or []) == 500 for r in llm.embedding_requests()[embedded:])

            wait_until(batch_embedding_sent, 60, what="the batch's embedding call")
            started = time.monotonic()
            deleted = api.delete(f"/api/memory/user/{user}")
            assert deleted.status_code == 200, deleted.text
            assert time.monotonic() - started < HELD, "the deletion did not land inside the held call"

            # The attempt goes on once its embedding call is answered, and its message is gone once
            # the function returned (the queue's count includes the messages being worked on).
            wait_until(lambda: all(r.status for r in llm.embedding_requests()), HELD + 30, what="the held call")
            wait_until(lambda: _backlog(storage) == 0, 90, what="the queue drained")

            # Through the API: nothing.
            assert api.get(f"/api/memory/user/{user}").json()["data"]["total"] == 0
            exported = api.get(f"/api/memory/export/{user}").json()["data"]
            assert exported["memories"] == [] and exported["sessions"] == {}
            assert api.get(f"/api/memory/events/{event_id}").status_code == 404
            assert api.get(f"/api/memory/memory/{memory_id}/history").status_code == 404
            # In every table and queue: nothing naming the user or holding their words.
            assert _table_rows_naming(storage, (canary, user)) == []
            for name in ("memory-ingest", "memory-ingest-poison"):
                assert [m for m in _queued_bodies(storage, name) if m.get("user_id") == user] == []
            # It was the barrier that removed the attempt's writes: it found the epoch moved.
            assert f"event {event_id} cancelled" in host.log(400_000)
            # The user may come back: work started after the erasure runs normally.
            back = api.post(
                "/api/memory/batch-add", json={"user_id": user, "memories": [{"content": "back"}]}, headers=ASYNC
            )
            done = f"/api/memory/events/{back.json()['data']['event_id']}"
            wait_until(lambda: api.get(done).json()["data"]["status"] == "succeeded", 60, what="the new batch")
            assert [m["memory"] for m in api.get(f"/api/memory/user/{user}").json()["data"]["results"]] == ["back"]
            assert [m["memory"] for m in api.get(f"/api/memory/user/{other}").json()["data"]["results"]] == [
                f"another user's {kept}"
            ]
        finally:
            host.stop()
        # In the files: the app's (the embedded engine's shard folder aside: its log keeps deleted
        # points until compaction, see docs/operations.md) and Azurite's store files, once it saved them
        # on stopping.
        assert _files_holding(data_dir, canary, skip="qdrant") == []
        storage.stop()
        # (the user's id is there again, rightly: the user came back; their erased words are not)
        assert _files_holding(storage.root, canary, skip="azurite.log") == []
        assert _files_holding(storage.root, kept, skip="azurite.log")  # the check can see what is kept
