"""Bounded reads through the dev host over HTTP: a list (and its chat alias, and the export) answers a
page of at most `limit` memories with `data.next_cursor`; following the cursors yields every memory
once while others are added; without them the call keeps its shape and answers the first page of
LIST_PAGE_SIZE (100); a cursor or a limit that is not one is a 422 naming it; the stats count every
memory, in the engine. The page rule on each engine: tests/integration/test_store_contract.py."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.types import TextContent

from tests.helpers import DevHost

TOTAL = 250


def _user(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _data(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def _batch(api: httpx.Client, user: str, texts: list[str], **metadata: Any) -> list[str]:
    memories = [{"content": text, "metadata": metadata or None} for text in texts]
    ids: list[str] = _data(api.post("/api/memory/batch-add", json={"user_id": user, "memories": memories}))[
        "memory_ids"
    ]
    return ids


@pytest.fixture(scope="module")
def stocked(devhost: DevHost) -> tuple[str, list[str]]:
    """A user with 250 memories (150 of category "food"), written in two batches: ids in write order."""
    api, user = devhost.client, _user("pager")
    ids = _batch(api, user, [f"fact number {i} about pages" for i in range(150)], category="food")
    ids += _batch(api, user, [f"fact number {i} about pages" for i in range(150, TOTAL)])
    return user, ids


def _follow(api: httpx.Client, path: str, limit: int | None, between: Any = None) -> list[dict[str, Any]]:
    pages, cursor = [], None
    while True:
        params = {k: v for k, v in (("limit", limit), ("cursor", cursor)) if v is not None}
        page = _data(api.get(path, params=params))
        pages.append(page)
        cursor = page["next_cursor"]
        if cursor is None:
            return pages
        if between is not None:
            between()


def test_pages_of_100_yield_every_memory_once_while_others_are_added(api: httpx.Client) -> None:
    user = _user("busy")
    ids = _batch(api, user, [f"note {i} on the busy shelf" for i in range(TOTAL)])
    added: list[str] = []

    def add_some() -> None:
        added.extend(_batch(api, user, [f"late note {len(added) + i}" for i in range(3)]))  # new texts each time

    pages = _follow(api, f"/api/memory/user/{user}", 100, add_some)
    assert [len(page["results"]) for page in pages] == [100, 100, 50]
    assert [page["total"] for page in pages] == [100, 100, 50]  # the page's own count, as the seed's total
    seen = [m["id"] for page in pages for m in page["results"]]
    assert seen == ids[::-1]  # newest first, each once; none of the memories added meanwhile
    assert len(added) == 6 and set(added).isdisjoint(seen)
    assert all(m["user_id"] == user and m["memory"].startswith("note ") for page in pages for m in page["results"])
    # the chat alias pages the same way, and now finds the added memories first
    alias = _follow(api, f"/api/chat/memories/{user}", 100)
    assert [m["id"] for page in alias for m in page["results"]] == added[::-1] + ids[::-1]


def test_without_limit_and_cursor_the_seed_call_answers_the_first_page(
    api: httpx.Client, stocked: tuple[str, list[str]]
) -> None:
    user, ids = stocked
    for path in (f"/api/memory/user/{user}", f"/api/chat/memories/{user}"):
        first = _data(api.get(path))
        assert set(first) == {"results", "total", "next_cursor"} and first["total"] == 100
        assert [m["id"] for m in first["results"]] == ids[:-101:-1] and first["next_cursor"]
    small = _user("small")
    one = _batch(api, small, ["only memory"])
    body = api.get(f"/api/memory/user/{small}").json()
    assert body["data"] == {"results": body["data"]["results"], "total": 1, "next_cursor": None}  # null, present
    assert [m["id"] for m in body["data"]["results"]] == one


def test_the_export_pages_the_memories_with_their_history(api: httpx.Client, stocked: tuple[str, list[str]]) -> None:
    user, ids = stocked
    pages = _follow(api, f"/api/memory/export/{user}", 120)
    assert [len(page["memories"]) for page in pages] == [120, 120, 10]
    assert [m["id"] for page in pages for m in page["memories"]] == ids[::-1]
    assert all([row["event"] for row in m["history"]] == ["ADD"] for page in pages for m in page["memories"])
    assert all(page["user_id"] == user and page["sessions"] == {} for page in pages)
    assert pages[-1]["next_cursor"] is None


def test_the_stats_count_every_memory(api: httpx.Client, stocked: tuple[str, list[str]]) -> None:
    user, _ids = stocked
    stats = _data(api.get(f"/api/memory/stats/{user}"))
    assert stats["total_memories"] == TOTAL and sum(stats["date_distribution"].values()) == TOTAL
    assert stats["category_distribution"] == {"food": 150, "other": 100}


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"cursor": "A" * 31 + "="}, "cursor"),
        ({"limit": "0"}, "limit"),
        ({"limit": "1001"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"limit": "1.5"}, "limit"),
        ({"limit": "-3"}, "limit"),
    ],
)
def test_a_cursor_or_limit_that_is_not_one_is_a_422_naming_it(
    api: httpx.Client, stocked: tuple[str, list[str]], query: dict[str, str], field: str
) -> None:
    user, _ids = stocked
    for path in (f"/api/memory/user/{user}", f"/api/chat/memories/{user}", f"/api/memory/export/{user}"):
        response = api.get(path, params=query)
        assert response.status_code == 422, response.text
        body = response.json()
        assert body["success"] is False and body["error"]["code"] == "validation_error"
        assert [detail["loc"] for detail in body["error"]["details"]] == [[field]]


def test_a_cursor_is_the_users_own_place_and_leaks_nothing(api: httpx.Client, stocked: tuple[str, list[str]]) -> None:
    user, _ids = stocked
    cursor = _data(api.get(f"/api/memory/user/{user}", params={"limit": 5}))["next_cursor"]
    other = _user("other")
    _batch(api, other, ["the other user's only memory"])
    theirs = _data(api.get(f"/api/memory/user/{other}", params={"cursor": cursor}))
    assert all(m["user_id"] == other for m in theirs["results"])  # a cursor is a place, never a user


def test_the_mcp_list_tool_pages_too(devhost: DevHost, stocked: tuple[str, list[str]]) -> None:
    user, ids = stocked

    async def page(arguments: dict[str, Any]) -> dict[str, Any]:
        async with (
            streamable_http_client(f"{devhost.base_url}/runtime/webhooks/mcp") as (read, write, _),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            result = await session.call_tool("list_memories", arguments)
        assert not result.isError and isinstance(result.content[0], TextContent), result
        answer: dict[str, Any] = json.loads(result.content[0].text)
        return answer

    first = asyncio.run(page({"user_id": user, "limit": 200}))
    rest = asyncio.run(page({"user_id": user, "limit": 200, "cursor": first["next_cursor"]}))
    assert [m["id"] for m in first["results"] + rest["results"]] == ids[::-1] and rest["next_cursor"] is None
