"""Signed caller headers through the dev host, on the REST API and on the MCP tools (the official `mcp`
client over streamable HTTP): with CALLER_SIGNING_KEY set, a tenant and user that API Management
signed are honoured; the same headers without a signature, with one of another tenant or user, or
with a stale one, are 401 (a tool error `unauthenticated` over MCP) and reach no data.

Real parts: the dev host serving function_app, the embedded store, local history and sessions.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult, TextContent

from shared.caller_signature import SIGNATURE_HEADER, sign
from tests.helpers import DevHost

pytestmark = pytest.mark.e2e

TENANT, USER = "x-memory-tenant", "x-memory-user"
KEY = "signing-key-for-the-e2e-test-0123456789"


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevHost]:
    env = {"TENANT_HEADER": TENANT, "USER_HEADER": USER, "CALLER_SIGNING_KEY": KEY}
    server = DevHost(tmp_path_factory.mktemp("signed") / "data", env, name="signed-host")
    yield server.start()
    server.stop()


def _signed(tenant: str, user: str, **overrides: str) -> dict[str, str]:
    return {TENANT: tenant, USER: user, SIGNATURE_HEADER: sign(KEY, tenant, user), **overrides}


def _forged(tenant: str, user: str) -> list[dict[str, str]]:
    """What a caller past the gateway could send: no signature, another caller's, a stale one, junk."""
    other = f"sub-{uuid.uuid4().hex[:6]}"
    return [
        {TENANT: tenant, USER: user},
        _signed(tenant, user, **{TENANT: other}),
        _signed(tenant, user, **{USER: "mallory"}),
        _signed(tenant, user, **{SIGNATURE_HEADER: sign(KEY, tenant, user, int(time.time()) - 3600)}),
        _signed(tenant, user, **{SIGNATURE_HEADER: sign("x" * 40, tenant, user)}),
        _signed(tenant, user, **{SIGNATURE_HEADER: "t=1,v1=AAAA"}),
    ]


def test_rest_honours_a_signed_tenant_and_refuses_every_forgery(host: DevHost) -> None:
    tenant, user = f"sub-{uuid.uuid4().hex[:6]}", f"ann-{uuid.uuid4().hex[:6]}"
    added = host.client.post(
        "/api/memory/add", json={"user_id": user, "content": "ann keeps bees"}, headers=_signed(tenant, user)
    )
    assert added.status_code == 200, added.text
    listed = host.client.get(f"/api/memory/user/{user}", headers=_signed(tenant, user))
    assert [m["memory"] for m in listed.json()["data"]["results"]] == ["ann keeps bees"]
    for headers in _forged(tenant, user):
        for method, path, kwargs in (
            ("GET", f"/api/memory/user/{user}", {}),
            ("POST", "/api/memory/add", {"json": {"user_id": user, "content": "planted"}}),
        ):
            response = host.client.request(method, path, headers=headers, **kwargs)
            assert response.status_code == 401, (headers, response.text)
            body = response.json()
            assert body["success"] is False and body["error"]["code"] == "unauthenticated"
            assert "not trusted" in body["message"]
    # Nothing a forgery sent was stored.
    again = host.client.get(f"/api/memory/user/{user}", headers=_signed(tenant, user))
    assert [m["memory"] for m in again.json()["data"]["results"]] == ["ann keeps bees"]


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


def _text(result: CallToolResult) -> str:
    assert isinstance(result.content[0], TextContent)
    return result.content[0].text


def test_mcp_honours_a_signed_tenant_and_refuses_every_forgery(host: DevHost) -> None:
    tenant, user = f"sub-{uuid.uuid4().hex[:6]}", f"bo-{uuid.uuid4().hex[:6]}"
    added = _tool(host, _signed(tenant, user), "add_memory", {"user_id": user, "content": "bo sails dinghies"})
    assert not added.isError, _text(added)
    memory_id = json.loads(_text(added))["memory_id"]
    for headers in _forged(tenant, user):
        listed = _tool(host, headers, "list_memories", {"user_id": user})
        assert listed.isError and "unauthenticated" in _text(listed) and "not trusted" in _text(listed), headers
        deleted = _tool(host, headers, "delete_memory", {"memory_id": memory_id, "user_id": user})
        assert deleted.isError and "unauthenticated" in _text(deleted)
    # The signed caller still sees its memory, untouched; REST and MCP agree.
    mine = _tool(host, _signed(tenant, user), "list_memories", {"user_id": user})
    assert [m["id"] for m in json.loads(_text(mine))["results"]] == [memory_id]
    rest = host.client.get(f"/api/memory/user/{user}", headers=_signed(tenant, user)).json()["data"]
    assert [m["id"] for m in rest["results"]] == [memory_id]
