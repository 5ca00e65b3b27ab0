"""Explicit supersession (issue 22) through the dev host over real HTTP: an add naming the memories it
replaces, what search, list, stats, by-id reads and history show afterwards, `as_of` and
`include_superseded` on REST and MCP, and the 404/422 of a wrong `supersedes` with nothing written."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import httpx
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.types import TextContent

from tests.helpers import DevHost


def _user(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _data(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()["data"]


def _ids(records: list[dict[str, Any]]) -> list[str]:
    return [record["id"] for record in records]


def test_an_add_that_supersedes_changes_what_every_read_shows(api: httpx.Client) -> None:
    alice = _user("alice")
    a = _data(api.post("/api/memory/add", json={"user_id": alice, "content": "I live in Paris"}))["memory_id"]
    time.sleep(0.05)  # B is created strictly after A, at millisecond precision
    added = api.post("/api/memory/add", json={"user_id": alice, "content": "I moved to Berlin", "supersedes": [a]})
    b = _data(added)["memory_id"]

    search = {"user_id": alice, "query": "where do I live", "limit": 10}
    assert _ids(_data(api.post("/api/memory/search", json=search))["results"]) == [b]
    assert _ids(_data(api.get(f"/api/memory/user/{alice}"))["results"]) == [b]
    assert _ids(_data(api.get(f"/api/chat/memories/{alice}"))["results"]) == [b]
    assert _data(api.get(f"/api/memory/stats/{alice}"))["total_memories"] == 1

    old = _data(api.get(f"/api/memory/memory/{a}", params={"user_id": alice}))
    assert old["superseded_by"] == b and old["valid_until"] and old["valid_from"] == old["created_at"]
    new = _data(api.get(f"/api/memory/memory/{b}", params={"user_id": alice}))
    assert new["supersedes"] == [a] and new.get("superseded_by") is None and new.get("valid_until") is None

    # as of A's creation: A was true, B not yet written
    then = old["created_at"]
    assert _ids(_data(api.post("/api/memory/search", json={**search, "as_of": then}))["results"]) == [a]
    assert _ids(_data(api.get(f"/api/memory/user/{alice}", params={"as_of": then}))["results"]) == [a]
    # everything, with its validity
    both = _data(api.post("/api/memory/search", json={**search, "include_superseded": True}))["results"]
    assert {r["id"]: r.get("superseded_by") for r in both} == {a: b, b: None}
    listed = _data(api.get(f"/api/memory/user/{alice}", params={"include_superseded": "true"}))["results"]
    assert _ids(listed) == [b, a] and listed[1]["valid_until"] == old["valid_until"]
    chat_listed = _data(api.get(f"/api/chat/memories/{alice}", params={"include_superseded": "true"}))
    assert _ids(chat_listed["results"]) == [b, a]

    history_a = _data(api.get(f"/api/memory/memory/{a}/history", params={"user_id": alice}))["history"]
    history_b = _data(api.get(f"/api/memory/memory/{b}/history", params={"user_id": alice}))["history"]
    assert [h["event"] for h in history_a] == ["ADD", "SUPERSEDED"] and history_a[-1]["new_memory"] == b
    assert [h["event"] for h in history_b] == ["ADD", "SUPERSEDES"] and history_b[-1]["old_memory"] == a

    # superseding A again is a 422 (no longer current); the user's erasure takes the whole chain
    again = api.post("/api/memory/add", json={"user_id": alice, "content": "I live in Rome", "supersedes": [a]})
    assert again.status_code == 422 and "supersedes" in again.text
    assert _data(api.delete(f"/api/memory/user/{alice}"))["deleted"] == 2
    assert api.get(f"/api/memory/memory/{a}").status_code == 404


def test_a_wrong_supersedes_is_404_or_422_and_nothing_is_written(api: httpx.Client) -> None:
    alice, bob = _user("alice"), _user("bob")
    bobs = _data(api.post("/api/memory/add", json={"user_id": bob, "content": "I live in Oslo"}))["memory_id"]
    unknown = str(uuid.uuid4())
    for ids in ([bobs], [unknown]):
        one = api.post("/api/memory/add", json={"user_id": alice, "content": "I live in Rome", "supersedes": ids})
        assert one.status_code == 404, one.text
        assert one.json()["error"]["code"] == "not_found"
        batch = {"user_id": alice, "memories": [{"content": "fine"}, {"content": "x", "supersedes": ids}]}
        assert api.post("/api/memory/batch-add", json=batch).status_code == 404
        queued = api.post("/api/memory/batch-add", json=batch, headers={"Prefer": "respond-async"})
        assert queued.status_code == 404
    assert _data(api.get(f"/api/memory/user/{alice}"))["results"] == []
    assert _data(api.get(f"/api/memory/memory/{bobs}", params={"user_id": bob})).get("superseded_by") is None
    bad = [
        api.post("/api/memory/add", json={"user_id": alice, "content": "x", "supersedes": ["not-an-id"]}),
        api.post("/api/memory/add", json={"user_id": alice, "content": "x", "supersedes": []}),
        api.post("/api/memory/search", json={"user_id": alice, "query": "x", "as_of": "yesterday"}),
        api.post("/api/memory/search", json={"user_id": alice, "query": "x", "include_superseded": "yes"}),
        api.get(f"/api/memory/user/{alice}", params={"as_of": "2024-13-01T00:00:00Z"}),
        api.get(f"/api/memory/user/{alice}", params={"include_superseded": "1"}),
    ]
    assert [response.status_code for response in bad] == [422] * len(bad)
    assert _data(api.get(f"/api/memory/user/{alice}"))["results"] == []


def test_a_batch_item_supersedes_and_mcp_reads_with_include_superseded(devhost: DevHost) -> None:
    api = devhost.client
    alice = _user("alice")
    old = _data(api.post("/api/memory/add", json={"user_id": alice, "content": "My favourite colour is blue"}))
    batch = {
        "user_id": alice,
        "memories": [{"content": "My favourite colour is green", "supersedes": [old["memory_id"]]}, {"content": "x"}],
    }
    green, _ = _data(api.post("/api/memory/batch-add", json=batch))["memory_ids"]

    async def calls() -> dict[str, Any]:
        url = f"{devhost.base_url}/runtime/webhooks/mcp"
        async with streamable_http_client(url) as (read, write, _), ClientSession(read, write) as session:
            await session.initialize()
            out = {}
            query = {"user_id": alice, "query": "favourite colour", "limit": 5}
            for name, tool, args in (
                ("now", "search_memories", query),
                ("all", "search_memories", {**query, "include_superseded": True}),
                ("listed", "list_memories", {"user_id": alice, "include_superseded": True}),
            ):
                result = await session.call_tool(tool, args)
                assert not result.isError and isinstance(result.content[0], TextContent), result.content
                out[name] = json.loads(result.content[0].text)
            return out

    out = asyncio.run(calls())
    assert old["memory_id"] not in _ids(out["now"]["results"]) and green in _ids(out["now"]["results"])
    found = {r["id"]: r for r in out["all"]["results"]}
    assert found[old["memory_id"]]["superseded_by"] == green and found[green]["supersedes"] == [old["memory_id"]]
    assert old["memory_id"] in _ids(out["listed"]["results"])
