"""The memory tools over MCP: the official `mcp` client over streamable HTTP against the dev host serving
the real function_app at /runtime/webhooks/mcp (as `func start` and Azure serve it)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult, TextContent

from tests.helpers import DevHost

T = TypeVar("T")
TOOLS = {"add_memory", "search_memories", "list_memories", "get_memory", "update_memory", "delete_memory"}


def _run(devhost: DevHost, body: Callable[[ClientSession], Awaitable[T]]) -> T:
    async def main() -> T:
        url = f"{devhost.base_url}/runtime/webhooks/mcp"
        async with streamable_http_client(url) as (read, write, _), ClientSession(read, write) as session:
            await session.initialize()
            return await body(session)

    return asyncio.run(main())


def _data(result: CallToolResult) -> Any:
    assert not result.isError, result.content
    assert isinstance(result.content[0], TextContent)
    data = json.loads(result.content[0].text)
    assert result.structuredContent == data
    return data


def _error_text(result: CallToolResult) -> str:
    assert result.isError, result
    assert isinstance(result.content[0], TextContent)
    return result.content[0].text


def test_lists_the_tools_with_their_input_schemas(devhost: DevHost) -> None:
    async def body(session: ClientSession) -> Any:
        return (await session.list_tools()).tools

    tools = {tool.name: tool for tool in _run(devhost, body)}
    assert set(tools) == TOOLS
    add = tools["add_memory"].inputSchema
    assert add["type"] == "object"
    assert set(add["properties"]) == {
        "user_id",
        "content",
        "metadata",
        "agent_id",
        "run_id",
        "expiration_date",
        "allow_duplicates",
        "supersedes",
        "infer",
    }
    assert add["properties"]["allow_duplicates"]["type"] == "boolean"
    assert sorted(add["required"]) == ["content", "user_id"]
    assert add["properties"]["metadata"]["type"] == "object"
    search = tools["search_memories"].inputSchema
    assert set(search["properties"]) == {
        "user_id", "query", "limit", "threshold", "filters", "agent_id", "run_id", "as_of", "include_superseded"
    }  # fmt: skip
    assert search["properties"]["limit"]["type"] == "integer"
    assert sorted(tools["delete_memory"].inputSchema["required"]) == ["memory_id", "user_id"]
    assert all(tool.description for tool in tools.values())


def test_add_search_list_delete_round_trip(devhost: DevHost) -> None:
    user = f"mcp-{uuid.uuid4().hex[:8]}"

    async def body(session: ClientSession) -> dict[str, Any]:
        added = _data(
            await session.call_tool(
                "add_memory",
                {"user_id": user, "content": "prefers green tea in the morning", "metadata": {"category": "food"}},
            )
        )
        other = _data(
            await session.call_tool("add_memory", {"user_id": user, "content": "plays the cello on weekends"})
        )
        found = _data(await session.call_tool("search_memories", {"user_id": user, "query": "green tea", "limit": 5}))
        listed = _data(await session.call_tool("list_memories", {"user_id": user}))
        got = _data(await session.call_tool("get_memory", {"memory_id": added["memory_id"], "user_id": user}))
        updated = _data(
            await session.call_tool(
                "update_memory",
                {"memory_id": other["memory_id"], "user_id": user, "content": "plays the viola on weekends"},
            )
        )
        deleted = _data(await session.call_tool("delete_memory", {"memory_id": added["memory_id"], "user_id": user}))
        after = _data(await session.call_tool("list_memories", {"user_id": user}))
        return {
            "added": added,
            "found": found,
            "listed": listed,
            "got": got,
            "updated": updated,
            "deleted": deleted,
            "after": after,
        }

    out = _run(devhost, body)
    memory_id = out["added"]["memory_id"]
    assert out["added"]["user_id"] == user
    assert out["found"]["results"][0]["id"] == memory_id
    assert out["found"]["results"][0]["memory"] == "prefers green tea in the morning"
    assert out["listed"]["total"] == 2
    assert out["got"]["metadata"]["category"] == "food"
    assert out["updated"]["content"] == "plays the viola on weekends"
    assert out["deleted"]["memory_id"] == memory_id
    assert [r["memory"] for r in out["after"]["results"]] == ["plays the viola on weekends"]
    # The tools and the REST API are one store: what the tools wrote, REST reads.
    rest = devhost.client.get(f"/api/memory/user/{user}").json()["data"]
    assert [r["memory"] for r in rest["results"]] == ["plays the viola on weekends"]


def test_one_user_cannot_see_or_touch_anothers_memory(devhost: DevHost) -> None:
    alice, bob = f"alice-{uuid.uuid4().hex[:6]}", f"bob-{uuid.uuid4().hex[:6]}"

    async def body(session: ClientSession) -> dict[str, Any]:
        secret = _data(
            await session.call_tool("add_memory", {"user_id": alice, "content": "alice's locker code is 4711"})
        )
        memory_id = secret["memory_id"]
        return {
            "memory_id": memory_id,
            "search": _data(await session.call_tool("search_memories", {"user_id": bob, "query": "locker code 4711"})),
            "list": _data(await session.call_tool("list_memories", {"user_id": bob})),
            "get": await session.call_tool("get_memory", {"memory_id": memory_id, "user_id": bob}),
            "update": await session.call_tool(
                "update_memory", {"memory_id": memory_id, "user_id": bob, "content": "overwritten by bob"}
            ),
            "delete": await session.call_tool("delete_memory", {"memory_id": memory_id, "user_id": bob}),
            "alice": _data(await session.call_tool("list_memories", {"user_id": alice})),
        }

    out = _run(devhost, body)
    assert out["search"]["results"] == []
    assert out["list"] == {"results": [], "total": 0, "next_cursor": None}
    for name in ("get", "update", "delete"):
        assert "forbidden" in _error_text(out[name]), name
    assert [r["memory"] for r in out["alice"]["results"]] == ["alice's locker code is 4711"]


def test_bad_input_is_a_tool_error_with_the_validation_message(devhost: DevHost) -> None:
    user = f"bad-{uuid.uuid4().hex[:6]}"

    async def body(session: ClientSession) -> dict[str, CallToolResult]:
        return {
            "blank": await session.call_tool("add_memory", {"user_id": user, "content": "   "}),
            "limit": await session.call_tool("search_memories", {"user_id": user, "query": "x", "limit": 1000}),
            "unknown": await session.call_tool("list_memories", {"user_id": user, "usr": "typo"}),
            "reserved": await session.call_tool(
                "add_memory", {"user_id": user, "content": "ok", "metadata": {"user_id": "someone-else"}}
            ),
            "type": await session.call_tool("add_memory", {"user_id": user, "content": ["not", "text"]}),
        }

    out = _run(devhost, body)
    assert "content: must not be blank" in _error_text(out["blank"])
    assert "limit: Input should be less than or equal to 100" in _error_text(out["limit"])
    assert "usr: unknown argument" in _error_text(out["unknown"])
    assert "metadata key 'user_id' is reserved" in _error_text(out["reserved"])
    assert "content: Input should be a valid string" in _error_text(out["type"])
    for result in out.values():
        assert result.structuredContent is not None
        assert result.structuredContent["error"]["code"] == "validation_error"
    # Nothing was stored by the refused calls.
    assert devhost.client.get(f"/api/memory/user/{user}").json()["data"]["total"] == 0


def test_missing_required_argument_and_unknown_tool_are_refused_like_the_host(devhost: DevHost) -> None:
    async def body(session: ClientSession) -> list[str]:
        messages = []
        for name, args in (("add_memory", {"content": "no user"}), ("no_such_tool", {})):
            try:
                await session.call_tool(name, args)
            except Exception as error:  # the client raises McpError for a JSON-RPC error
                messages.append(str(error))
        return messages

    assert _run(devhost, body) == [
        "One or more required tool properties are missing values. Please provide: user_id",
        "Unknown tool: 'no_such_tool'",
    ]


def test_transport_rules_of_the_extension(devhost: DevHost) -> None:
    url = f"{devhost.base_url}/runtime/webhooks/mcp"
    both = {"accept": "application/json, text/event-stream"}
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    with httpx.Client(timeout=30) as client:
        assert client.get(url, headers=both).status_code == 405
        refused = client.post(url, json=ping, headers={"accept": "application/json"})
        assert refused.status_code == 406
        assert "must accept both" in refused.json()["error"]["message"]
        assert client.post(url, content=b"[1, 2]", headers=both).status_code == 400
        assert (
            client.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=both).status_code
            == 202
        )
        init = client.post(
            url,
            json={
                "jsonrpc": "2.0",
                "id": 7,
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-06-18",
                    "capabilities": {},
                    "clientInfo": {"name": "t", "version": "0"},
                },
            },
            headers=both,
        )
        assert init.status_code == 200
        assert init.headers["content-type"].startswith("text/event-stream")
        session = init.headers["mcp-session-id"]
        payload = json.loads(init.text.split("data: ", 1)[1])
        assert payload["id"] == 7
        assert payload["result"]["protocolVersion"] == "2025-06-18"
        assert payload["result"]["serverInfo"]["name"] == "memory-layer"
        bad_session = client.post(url, json=ping, headers={**both, "mcp-session-id": "nonsense"})
        assert bad_session.status_code == 400
        ok = client.post(url, json=ping, headers={**both, "mcp-session-id": session})
        assert json.loads(ok.text.split("data: ", 1)[1]) == {"jsonrpc": "2.0", "id": 1, "result": {}}
