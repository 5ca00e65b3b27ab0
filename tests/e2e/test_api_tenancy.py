"""Tenants and end users through the dev host: with TENANT_HEADER on, every API call without the
tenant is 401 and everything a tenant stores (memories, history, sessions, graph, stats, export) is
invisible to every other tenant, even for the same user id; another tenant's memory id is 404 like
a missing one. With USER_HEADER on too, a user_id other than the authenticated user is 403 and a
by-id call naming no user acts as that user.

Real parts: the dev host serving function_app, the embedded store, local history and sessions,
Neo4j in process; the LLM is the fake OpenAI server over HTTP.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult, TextContent

from shared.graph import EXTRACTION_PROMPT_MARKER
from tests.helpers import DevHost
from tools.harness.fake_openai import FakeOpenAIServer
from tools.harness.neo4j_server import Neo4jServer

pytestmark = pytest.mark.e2e

TENANT = "x-memory-tenant"
USER = "x-memory-user"
MISSING = "00000000-0000-4000-8000-000000000000"


@pytest.fixture(scope="module")
def llm() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as server:
        yield server


def _env(neo4j: Neo4jServer, llm: FakeOpenAIServer, **extra: str) -> dict[str, str]:
    return {
        "GRAPH_STORE": "neo4j",
        "NEO4J_URI": neo4j.uri,
        "NEO4J_USERNAME": neo4j.user,
        "NEO4J_PASSWORD": neo4j.password,
        "LLM_PROVIDER": "openai",
        "OPENAI_BASE_URL": llm.base_url,
        "OPENAI_API_KEY": "k",
        "LLM_MAX_RETRIES": "0",
        "TENANT_HEADER": TENANT,
        **extra,
    }


@pytest.fixture(scope="module")
def host(
    tmp_path_factory: pytest.TempPathFactory, neo4j_server: Neo4jServer, llm: FakeOpenAIServer
) -> Iterator[DevHost]:
    server = DevHost(tmp_path_factory.mktemp("tenants") / "data", _env(neo4j_server, llm), name="tenant-host")
    yield server.start()
    server.stop()


@pytest.fixture(scope="module")
def bound_host(
    tmp_path_factory: pytest.TempPathFactory, neo4j_server: Neo4jServer, llm: FakeOpenAIServer
) -> Iterator[DevHost]:
    env = _env(neo4j_server, llm, USER_HEADER=USER)
    server = DevHost(tmp_path_factory.mktemp("users") / "data", env, name="user-host")
    yield server.start()
    server.stop()


class As:
    """A client of one tenant (and, on the bound host, one authenticated user)."""

    def __init__(self, host: DevHost, tenant: str | None, user: str | None = None) -> None:
        self.client = host.client
        self.headers = {k: v for k, v in ((TENANT, tenant), (USER, user)) if v is not None}

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return self.client.request(method, path, headers=headers, **kwargs)

    def ok(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.call(method, path, **kwargs)
        assert response.status_code == 200, response.text
        return response.json()

    def texts(self, user: str) -> set[str]:
        return {r["memory"] for r in self.ok("GET", f"/api/memory/user/{user}")["data"]["results"]}


def _every_endpoint(user: str, memory_id: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path, request kwargs) of every API endpoint, naming `user` where a user is named."""
    return [
        ("POST", "/api/memory/add", {"json": {"user_id": user, "content": "x"}}),
        ("POST", "/api/memory/batch-add", {"json": {"user_id": user, "memories": [{"content": "x"}]}}),
        ("POST", "/api/memory/search", {"json": {"user_id": user, "query": "x"}}),
        ("GET", f"/api/memory/user/{user}", {}),
        ("PUT", "/api/memory/update", {"json": {"memory_id": memory_id, "content": "y", "user_id": user}}),
        ("GET", f"/api/memory/memory/{memory_id}", {"params": {"user_id": user}}),
        ("GET", f"/api/memory/memory/{memory_id}/history", {"params": {"user_id": user}}),
        ("DELETE", f"/api/memory/memory/{memory_id}", {"params": {"user_id": user}}),
        ("DELETE", f"/api/memory/user/{user}", {}),
        ("GET", f"/api/memory/stats/{user}", {}),
        ("GET", f"/api/memory/export/{user}", {}),
        ("GET", f"/api/memory/graph/{user}", {}),
        ("POST", "/api/chat/message", {"json": {"user_id": user, "message": "hello"}}),
        ("POST", "/api/chat/search-memories", {"json": {"user_id": user, "query": "x"}}),
        ("GET", f"/api/chat/memories/{user}", {}),
        ("DELETE", f"/api/chat/memory/{memory_id}", {"params": {"user_id": user}}),
        ("DELETE", f"/api/chat/memories/{user}", {}),
        ("GET", f"/api/memory/events/{memory_id}", {"params": {"user_id": user}}),
    ]


def _teach(llm: FakeOpenAIServer, user: str, message: str, fact: str, thing: str) -> None:
    """The next chat saying `message`: mem0 learns `fact`, the graph learns `user -LIKES-> thing`."""
    graph = {
        "entities": [{"name": user, "type": "person"}, {"name": thing, "type": "thing"}],
        "relations": [{"source": user, "relation": "LIKES", "target": thing}],
        "invalidates": [],
    }
    llm.when(EXTRACTION_PROMPT_MARKER, role="system", match=lambda r: _last_user(r) == message, reply=graph, times=1)
    llm.when(
        match=lambda r: bool(r.get("response_format")) and message in str(r.get("messages")),
        reply={"facts": [fact]},
        times=1,
    )


def _last_user(request: dict[str, Any]) -> str:
    users = [m.get("content") for m in request.get("messages", []) if m.get("role") == "user"]
    return str(users[-1]) if users else ""


def _seed(who: As, user: str, word: str) -> list[str]:
    one = who.ok("POST", "/api/memory/add", json={"user_id": user, "content": f"{word} one", "metadata": {"t": word}})
    batch = who.ok(
        "POST",
        "/api/memory/batch-add",
        json={"user_id": user, "memories": [{"content": f"{word} two", "metadata": {"category": word}}]},
    )
    return [one["data"]["memory_id"], *batch["data"]["memory_ids"]]


# --- tenants ----------------------------------------------------------------------------------
def test_without_the_tenant_header_every_api_call_is_401(host: DevHost) -> None:
    for method, path, kwargs in _every_endpoint("alice", MISSING):
        for headers in ({}, {TENANT: ""}, {TENANT: "t" * 129}):
            response = host.client.request(method, path, headers=headers, **kwargs)
            assert response.status_code == 401, (method, path, headers, response.text)
            body = response.json()
            assert body["success"] is False and body["error"]["code"] == "unauthenticated"
            assert body["request_id"] == response.headers["x-request-id"]
    # a missing tenant wins over a bad body: nothing is parsed before the caller is known
    assert host.client.post("/api/memory/add", content=b"{not json").status_code == 401
    # the system endpoints stay open
    assert host.client.get("/health").status_code == 200


def test_the_same_user_in_two_tenants_shares_nothing(host: DevHost, llm: FakeOpenAIServer) -> None:
    a, b = As(host, f"tenant-a-{uuid.uuid4().hex[:6]}"), As(host, f"tenant-b-{uuid.uuid4().hex[:6]}")
    user = f"alice-{uuid.uuid4().hex[:6]}"
    _seed(a, user, "apple")
    _seed(b, user, "banana")
    for thing, who in (("Dune", a), ("Tea", b)):
        said = f"I really like {thing} {uuid.uuid4().hex[:6]}"
        _teach(llm, user, said, f"Likes {thing}", thing)
        turn = who.ok("POST", "/api/chat/message", json={"user_id": user, "message": said, "session_id": "s1"})
        assert turn["user_id"] == user

    assert a.texts(user) == {"apple one", "apple two", "Likes Dune"}
    assert b.texts(user) == {"banana one", "banana two", "Likes Tea"}
    for who, mine, theirs in ((a, "apple", "banana"), (b, "banana", "apple")):
        listed = who.ok("GET", f"/api/chat/memories/{user}")["data"]["results"]
        assert {r["user_id"] for r in listed} == {user}  # the plain user id, never the storage key
        assert all(theirs not in r["memory"] for r in listed)
        for path in ("/api/memory/search", "/api/chat/search-memories"):
            found = who.ok("POST", path, json={"user_id": user, "query": f"{theirs} one two", "limit": 50})
            assert {r["memory"].split()[0] for r in found["data"]["results"]} <= {mine, "Likes"}
            assert {r["user_id"] for r in found["data"]["results"]} == {user}
        stats = who.ok("GET", f"/api/memory/stats/{user}")["data"]
        assert stats["user_id"] == user and stats["total_memories"] == 3
        assert stats["category_distribution"] == {mine: 1, "other": 2}
        exported = who.ok("GET", f"/api/memory/export/{user}")["data"]
        assert exported["user_id"] == user and theirs not in str(exported).lower()
        assert [len(turns) for turns in exported["sessions"].values()] == [1]  # the same session id, apart
        assert all(m["history"] for m in exported["memories"])

    graph_a = a.ok("GET", f"/api/memory/graph/{user}")["data"]
    graph_b = b.ok("GET", f"/api/memory/graph/{user}")["data"]
    assert {(e["source_name"], e["target_name"]) for e in graph_a["edges"]} == {(user, "Dune")}
    assert {(e["source_name"], e["target_name"]) for e in graph_b["edges"]} == {(user, "Tea")}
    assert "Tea" not in str(graph_a) and "Dune" not in str(graph_b)
    search_a = a.ok("POST", "/api/memory/search", json={"user_id": user, "query": "Tea Dune"})["data"]
    assert {r["destination"] for r in search_a["relations"]} == {"Dune"}

    # deleting the user in one tenant leaves the other tenant's user whole
    assert b.ok("DELETE", f"/api/memory/user/{user}")["data"] == {"deleted": 3}
    assert b.texts(user) == set() and b.ok("GET", f"/api/memory/export/{user}")["data"]["sessions"] == {}
    assert b.ok("GET", f"/api/memory/graph/{user}")["data"]["edges"] == []
    assert a.texts(user) == {"apple one", "apple two", "Likes Dune"}
    assert len(a.ok("GET", f"/api/memory/export/{user}")["data"]["sessions"]) == 1
    assert a.ok("DELETE", f"/api/chat/memories/{user}")["data"] == {"deleted": 3}
    assert a.texts(user) == set()


def test_another_tenants_memory_id_is_not_found(host: DevHost) -> None:
    a, b = As(host, f"tenant-a-{uuid.uuid4().hex[:6]}"), As(host, f"tenant-b-{uuid.uuid4().hex[:6]}")
    user = f"bob-{uuid.uuid4().hex[:6]}"
    target = _seed(a, user, "cherry")[0]
    before = a.ok("GET", f"/api/memory/memory/{target}")["data"]
    assert before["user_id"] == user and before["metadata"] == {"t": "cherry"}  # `_tenant` is never shown

    def refusals(memory_id: str, owner: dict[str, str]) -> list[httpx.Response]:
        return [
            b.call("GET", f"/api/memory/memory/{memory_id}", params=owner),
            b.call("GET", f"/api/memory/memory/{memory_id}/history", params=owner),
            b.call("PUT", "/api/memory/update", json={"memory_id": memory_id, "content": "hijacked", **owner}),
            b.call("DELETE", f"/api/memory/memory/{memory_id}", params=owner),
            b.call("DELETE", f"/api/chat/memory/{memory_id}", params=owner),
        ]

    for owner in ({}, {"user_id": user}):
        for theirs, missing in zip(refusals(target, owner), refusals(MISSING, owner), strict=True):
            # answered exactly as an id that does not exist: no oracle of another tenant's ids
            assert theirs.status_code == missing.status_code == 404, theirs.text
            assert theirs.json()["error"] == missing.json()["error"] == {"code": "not_found", "details": []}
            assert theirs.json()["message"].replace(target, "ID") == missing.json()["message"].replace(MISSING, "ID")
    assert a.ok("GET", f"/api/memory/memory/{target}")["data"] == before
    assert [h["event"] for h in a.ok("GET", f"/api/memory/memory/{target}/history")["data"]["history"]] == ["ADD"]
    # within its own tenant a by-id call works as before: with the owner, and without one
    updated = a.ok("PUT", "/api/memory/update", json={"memory_id": target, "content": "cherry three"})
    assert updated["data"]["content"] == "cherry three"
    assert a.call("GET", f"/api/memory/memory/{target}", params={"user_id": "someone-else"}).status_code == 403
    assert a.ok("DELETE", f"/api/chat/memory/{target}", params={"user_id": user})["data"] == {"memory_id": target}


def test_another_tenants_event_is_not_found(host: DevHost) -> None:
    a, b = As(host, f"tenant-a-{uuid.uuid4().hex[:6]}"), As(host, f"tenant-b-{uuid.uuid4().hex[:6]}")
    user = f"eve-{uuid.uuid4().hex[:6]}"
    accepted = a.call(
        "POST", "/api/memory/add", json={"user_id": user, "content": "plum jam"}, headers={"Prefer": "respond-async"}
    )
    assert accepted.status_code == 202, accepted.text
    location = accepted.headers["location"]
    event_id = accepted.json()["data"]["event_id"]
    event = a.ok("GET", location)["data"]
    assert event["status"] == "succeeded"  # the zero-setup default runs events before answering
    # the memory it wrote is the tenant's: found by id and listed in tenant a only
    assert a.ok("GET", f"/api/memory/memory/{event['memory_ids'][0]}")["data"]["memory"] == "plum jam"
    assert b.texts(user) == set()
    for owner in ({}, {"user_id": user}):
        theirs = b.call("GET", location, params=owner)
        missing = b.call("GET", f"/api/memory/events/{MISSING}", params=owner)
        assert theirs.status_code == missing.status_code == 404
        assert theirs.json()["message"].replace(event_id, "ID") == missing.json()["message"].replace(MISSING, "ID")


def test_metadata_cannot_claim_a_tenant(host: DevHost) -> None:
    a = As(host, f"tenant-a-{uuid.uuid4().hex[:6]}")
    refused = a.call("POST", "/api/memory/add", json={"user_id": "u", "content": "x", "metadata": {"_tenant": "b"}})
    assert refused.status_code == 422


# --- end users ----------------------------------------------------------------------------------
def test_without_the_user_header_every_api_call_is_401(bound_host: DevHost) -> None:
    tenant = f"tenant-{uuid.uuid4().hex[:6]}"
    for method, path, kwargs in _every_endpoint("alice", MISSING):
        response = bound_host.client.request(method, path, headers={TENANT: tenant}, **kwargs)
        assert response.status_code == 401, (method, path, response.text)
        assert response.json()["error"]["code"] == "unauthenticated"


def test_a_user_id_other_than_the_authenticated_user_is_403(bound_host: DevHost) -> None:
    tenant = f"tenant-{uuid.uuid4().hex[:6]}"
    alice, mallory = As(bound_host, tenant, "alice"), As(bound_host, tenant, "mallory")
    target = _seed(alice, "alice", "damson")[0]
    for method, path, kwargs in _every_endpoint("alice", target):
        response = mallory.call(method, path, **kwargs)
        assert response.status_code == 403, (method, path, response.text)
        assert response.json()["error"]["code"] == "forbidden"
    # the update names its owner in the body and in the query: each must be the authenticated user
    mixed = alice.call(
        "PUT", "/api/memory/update", params={"user_id": "mallory"}, json={"memory_id": target, "content": "z"}
    )
    assert mixed.status_code == 403
    assert alice.texts("alice") == {"damson one", "damson two"}
    assert alice.ok("GET", "/api/memory/stats/alice")["data"]["total_memories"] == 2


def test_by_id_calls_naming_no_user_act_as_the_authenticated_user(bound_host: DevHost) -> None:
    tenant = f"tenant-{uuid.uuid4().hex[:6]}"
    alice, mallory = As(bound_host, tenant, "alice"), As(bound_host, tenant, "mallory")
    target = _seed(alice, "alice", "elder")[0]
    before = alice.ok("GET", f"/api/memory/memory/{target}")["data"]
    for response in (
        mallory.call("GET", f"/api/memory/memory/{target}"),
        mallory.call("GET", f"/api/memory/memory/{target}/history"),
        mallory.call("PUT", "/api/memory/update", json={"memory_id": target, "content": "hijacked"}),
        mallory.call("DELETE", f"/api/memory/memory/{target}"),
        mallory.call("DELETE", f"/api/chat/memory/{target}"),
    ):
        assert response.status_code == 403, response.text  # never unscoped
    assert alice.ok("GET", f"/api/memory/memory/{target}")["data"] == before
    # the same user in another tenant is another caller: that id does not exist there
    elsewhere = As(bound_host, f"tenant-{uuid.uuid4().hex[:6]}", "alice")
    assert elsewhere.call("GET", f"/api/memory/memory/{target}").status_code == 404
    assert elsewhere.call("DELETE", f"/api/memory/memory/{target}").status_code == 404
    # the authenticated owner needs no user_id
    assert alice.ok("PUT", "/api/memory/update", json={"memory_id": target, "content": "elder three"})
    assert alice.ok("GET", f"/api/memory/memory/{target}/history")["data"]["history"][-1]["new_memory"] == "elder three"
    assert alice.ok("DELETE", f"/api/memory/memory/{target}")["data"] == {"memory_id": target}
    assert alice.texts("alice") == {"elder two"}


# --- the MCP tools act in the same scope ------------------------------------------------------
def _tool(host: DevHost, headers: dict[str, str], name: str, arguments: dict[str, Any]) -> CallToolResult:
    async def main() -> CallToolResult:
        async with httpx.AsyncClient(headers=headers, timeout=60) as client:
            url = f"{host.base_url}/runtime/webhooks/mcp"
            async with (
                streamable_http_client(url, http_client=client) as (read, write, _),
                ClientSession(read, write) as session,
            ):
                await session.initialize()
                return await session.call_tool(name, arguments)

    return asyncio.run(main())


def _tool_text(result: CallToolResult) -> str:
    assert isinstance(result.content[0], TextContent)
    return result.content[0].text


def test_the_mcp_tools_act_in_the_callers_tenant(host: DevHost) -> None:
    tenant_a, tenant_b = f"tenant-a-{uuid.uuid4().hex[:6]}", f"tenant-b-{uuid.uuid4().hex[:6]}"
    a = As(host, tenant_a)
    user = f"mo-{uuid.uuid4().hex[:6]}"
    memory_id = a.ok("POST", "/api/memory/add", json={"user_id": user, "content": "mo grows figs"})["data"]["memory_id"]
    mine = _tool(host, {TENANT: tenant_a}, "list_memories", {"user_id": user})
    assert not mine.isError and [m["id"] for m in json.loads(_tool_text(mine))["results"]] == [memory_id]
    theirs = _tool(host, {TENANT: tenant_b}, "list_memories", {"user_id": user})
    assert not theirs.isError and json.loads(_tool_text(theirs))["results"] == []
    for name in ("get_memory", "delete_memory"):
        refused = _tool(host, {TENANT: tenant_b}, name, {"memory_id": memory_id, "user_id": user})
        assert refused.isError and "not_found" in _tool_text(refused)
    anonymous = _tool(host, {}, "search_memories", {"user_id": user, "query": "figs"})
    assert anonymous.isError and "unauthenticated" in _tool_text(anonymous)
    assert a.texts(user) == {"mo grows figs"}  # nothing the other tenant tried reached it


def test_the_mcp_tools_act_as_the_authenticated_user(bound_host: DevHost) -> None:
    tenant = f"tenant-{uuid.uuid4().hex[:6]}"
    user, other = f"kim-{uuid.uuid4().hex[:6]}", f"lee-{uuid.uuid4().hex[:6]}"
    headers = {TENANT: tenant, USER: user}
    added = _tool(bound_host, headers, "add_memory", {"user_id": user, "content": "kim plays go"})
    assert not added.isError, _tool_text(added)
    refused = _tool(bound_host, headers, "list_memories", {"user_id": other})
    assert refused.isError and "forbidden" in _tool_text(refused)


# --- a tenant-less user whose id looks like a tenant's key ------------------------------------
def test_a_tenantless_user_named_like_a_tenant_key_is_never_seen_by_that_tenant(
    tmp_path: Path, neo4j_server: Neo4jServer, llm: FakeOpenAIServer
) -> None:
    """The same data served first without tenancy, then with it (an operator turning tenancy on):
    what the tenant-less user `1:t:<name>` stored is not tenant `t`'s user `<name>`, on any path."""
    name = f"alice{uuid.uuid4().hex[:6]}"
    shaped, data = f"1:t:{name}", tmp_path / "data"
    env = _env(neo4j_server, llm)
    env.pop("TENANT_HEADER")
    plain = DevHost(data, env, name="no-tenancy").start()
    try:
        said = f"I really like Planted {uuid.uuid4().hex[:6]}"
        _teach(llm, shaped, said, "Likes Planted", "Planted")
        who = As(plain, None)
        who.ok("POST", "/api/memory/add", json={"user_id": shaped, "content": "planted secret"})
        who.ok("POST", "/api/chat/message", json={"user_id": shaped, "message": said, "session_id": "s1"})
        assert who.texts(shaped) == {"planted secret", "Likes Planted"}  # the tenant-less user's own
        assert who.ok("GET", f"/api/memory/graph/{shaped}")["data"]["edges"]
    finally:
        plain.stop()

    tenanted = DevHost(data, _env(neo4j_server, llm), name="tenancy-on").start()
    try:
        t = As(tenanted, "t")
        assert t.texts(name) == set() and t.ok("GET", f"/api/chat/memories/{name}")["data"]["results"] == []
        for path in ("/api/memory/search", "/api/chat/search-memories"):
            found = t.ok("POST", path, json={"user_id": name, "query": "planted secret Planted", "limit": 50})
            assert found["data"]["results"] == [], found
        assert t.ok("GET", f"/api/memory/stats/{name}")["data"]["total_memories"] == 0
        exported = t.ok("GET", f"/api/memory/export/{name}")["data"]
        assert "planted" not in json.dumps(exported).lower() and exported["sessions"] == {}
        assert t.ok("GET", f"/api/memory/graph/{name}")["data"]["nodes"] == []
        t.ok("POST", "/api/chat/message", json={"user_id": name, "message": "what do I like?", "session_id": "s1"})
        prompt = [r for r in llm.chat_requests() if not r.json.get("response_format")][-1]
        assert "planted" not in json.dumps(prompt.messages).lower()  # nor the session's earlier turn
        listed = _tool(tenanted, {TENANT: "t"}, "list_memories", {"user_id": name})
        searched = _tool(tenanted, {TENANT: "t"}, "search_memories", {"user_id": name, "query": "planted secret"})
        assert "planted" not in (_tool_text(listed) + _tool_text(searched)).lower()
    finally:
        tenanted.stop()
