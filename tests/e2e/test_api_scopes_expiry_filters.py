"""Issue 14 through the dev host over HTTP on the zero-setup default (Qdrant Edge): agent/run
scopes on add, batch-add, search, list and delete-all; expiry invisible on search, list, get and
stats; mem0's filter operators and their 422 paths."""

from __future__ import annotations

import json
import sqlite3
import uuid
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import DevHost
from tools.harness.ports import wait_until


def _user(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _data(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()["data"]


def _texts(records: list[dict]) -> set[str]:
    return {r["memory"] for r in records}


def test_agent_and_run_scopes(api: httpx.Client) -> None:
    user = _user("scopes")
    add = {"user_id": user, "content": "tea with the planner", "agent_id": "planner", "run_id": "r1"}
    _data(api.post("/api/memory/add", json=add))
    batch = {"user_id": user, "agent_id": "coder", "run_id": "r1", "memories": [{"content": "tea with the coder"}]}
    _data(api.post("/api/memory/batch-add", json=batch))
    _data(api.post("/api/memory/add", json={"user_id": user, "content": "tea with nobody"}))

    listed = _data(api.get(f"/api/memory/user/{user}", params={"agent_id": "planner"}))
    assert listed["total"] == 1 and listed["results"][0]["agent_id"] == "planner"
    assert listed["results"][0]["run_id"] == "r1" and "agent_id" not in listed["results"][0]["metadata"]
    run = _data(api.get(f"/api/memory/user/{user}", params={"run_id": "r1"}))
    assert _texts(run["results"]) == {"tea with the planner", "tea with the coder"}
    found = _data(api.post("/api/memory/search", json={"user_id": user, "query": "tea", "agent_id": "coder"}))
    assert _texts(found["results"]) == {"tea with the coder"}
    assert _data(api.get(f"/api/memory/user/{user}"))["total"] == 3

    assert _data(api.delete(f"/api/memory/user/{user}", params={"run_id": "r1", "agent_id": "coder"}))["deleted"] == 1
    assert _texts(_data(api.get(f"/api/memory/user/{user}"))["results"]) == {"tea with the planner", "tea with nobody"}
    for bad in ({"run_id": "x" * 200}, {"agent_id": "a\x01"}, {"agent_id": " "}):
        response = api.get(f"/api/memory/user/{user}", params=bad)
        assert response.status_code == 422, response.text
    bad_add = api.post("/api/memory/add", json={**add, "agent_id": " "})
    assert bad_add.status_code == 422, bad_add.text
    reserved = api.post("/api/memory/add", json={"user_id": user, "content": "c", "metadata": {"agent_id": "x"}})
    assert reserved.status_code == 422  # metadata cannot set a scope


def test_an_expired_memory_is_invisible_everywhere(api: httpx.Client) -> None:
    user = _user("expiry")
    past = (datetime.now(UTC) - timedelta(days=3)).date().isoformat()
    future = (datetime.now(UTC) + timedelta(hours=5)).isoformat()
    gone = _data(
        api.post(
            "/api/memory/add", json={"user_id": user, "content": "the locker code is 1111", "expiration_date": past}
        )
    )["memory_id"]
    kept = _data(
        api.post(
            "/api/memory/add", json={"user_id": user, "content": "the locker code is 2222", "expiration_date": future}
        )
    )["memory_id"]
    batch = {
        "user_id": user,
        "memories": [
            {"content": "the locker code was 3333", "expiration_date": "2001-01-01T00:00:00Z"},
            {"content": "the locker is by the door", "metadata": {"category": "places"}},
        ],
    }
    _data(api.post("/api/memory/batch-add", json=batch))

    listed = _data(api.get(f"/api/memory/user/{user}"))
    assert _texts(listed["results"]) == {"the locker code is 2222", "the locker is by the door"}
    found = _data(api.post("/api/memory/search", json={"user_id": user, "query": "locker code", "limit": 10}))
    assert _texts(found["results"]) == {"the locker code is 2222", "the locker is by the door"}
    assert api.get(f"/api/memory/memory/{gone}").status_code == 404
    assert api.get(f"/api/memory/memory/{gone}/history").status_code == 404
    stats = _data(api.get(f"/api/memory/stats/{user}"))
    assert stats["total_memories"] == 2 and stats["category_distribution"] == {"places": 1, "other": 1}
    record = _data(api.get(f"/api/memory/memory/{kept}"))
    assert record["expiration_date"].endswith("Z") and record["expiration_date"][:13] == future[:13]
    assert (
        api.post("/api/memory/add", json={"user_id": user, "content": "c", "expiration_date": "soon"}).status_code
        == 422
    )
    # The purge (the timer of functions/maintenance.py) is run by the dev host in the next test.


def test_the_hourly_purge_erases_expired_memories_and_their_history(tmp_path: Path) -> None:
    """The timer function through the dev host by the host's rules: a run that was due while no
    host was up (its schedule status says so) is run at start, as the Functions host does."""
    host = DevHost(tmp_path / "data", name="purge-host")
    try:
        api = host.start().client
        user = _user("purge")
        past = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
        gone = _data(
            api.post("/api/memory/add", json={"user_id": user, "content": "old pin 4444", "expiration_date": past})
        )
        kept = _data(api.post("/api/memory/add", json={"user_id": user, "content": "the pin is 5555"}))
        history = tmp_path / "data" / "history.db"
        assert _history_rows(history, gone["memory_id"]) == 1  # hidden, not yet erased
        host.stop()
        # The host's schedule status for the hourly timer: the last run two hours ago, the next one
        # due an hour ago, i.e. missed while the host was down.
        hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        status = {
            "Last": (hour - timedelta(hours=2)).isoformat(),
            "Next": (hour - timedelta(hours=1)).isoformat(),
            "LastUpdated": (hour - timedelta(hours=2)).isoformat(),
        }
        timers = tmp_path / "data" / "devhost-state" / "timers"
        timers.mkdir(parents=True, exist_ok=True)
        (timers / "memory_purge_expired.status.json").write_text(json.dumps(status))
        host.start()
        wait_until(lambda: "Executed 'Functions.memory_purge_expired' (Succeeded" in host.log(200_000), 60)
        assert "purged 1 expired memories" in host.log(200_000)
        assert _history_rows(history, gone["memory_id"]) == 0
        assert _history_rows(history, kept["memory_id"]) == 1
        assert _texts(_data(api.get(f"/api/memory/user/{user}"))["results"]) == {"the pin is 5555"}
    finally:
        host.stop()


def _history_rows(path: Path, memory_id: str) -> int:
    with closing(sqlite3.connect(path)) as db:
        return int(db.execute("SELECT COUNT(*) FROM history WHERE memory_id = ?", (memory_id,)).fetchone()[0])


SEARCH_CASES: list[tuple[dict[str, Any], set[str]]] = [
    ({"tier": "gold"}, {"alpha", "gamma"}),
    ({"age": {"eq": 30}}, {"alpha"}),
    ({"tier": {"ne": "gold"}}, {"beta", "delta"}),
    ({"age": {"gt": 30}}, {"beta"}),
    ({"age": {"gte": 30}}, {"alpha", "beta"}),
    ({"age": {"lt": 30}}, {"gamma"}),
    ({"age": {"lte": 25}}, {"gamma"}),
    ({"tier": {"in": ["silver", "bronze"]}}, {"beta"}),
    ({"tier": {"nin": ["gold"]}}, {"beta", "delta"}),
    ({"topic": {"contains": "tea"}}, {"alpha", "gamma"}),
    ({"OR": [{"tier": "silver"}, {"age": {"lt": 26}}]}, {"beta", "gamma"}),
    ({"AND": [{"tier": "gold"}, {"age": {"gte": 26}}]}, {"alpha"}),
    ({"NOT": [{"tier": "gold"}, {"vip": False}]}, {"delta"}),
    ({"OR": [{"AND": [{"tier": "gold"}, {"NOT": [{"vip": True}]}]}, {"age": {"gt": 40}}]}, {"beta", "gamma"}),
]


@pytest.fixture(scope="module")
def seeded(devhost: Any) -> str:
    user = _user("operators")
    memories = [
        {"content": "alpha likes green tea", "metadata": {"topic": "tea time", "age": 30, "vip": True, "tier": "gold"}},
        {"content": "beta drinks coffee", "metadata": {"topic": "coffee", "age": 40.5, "vip": False, "tier": "silver"}},
        {"content": "gamma orders iced tea", "metadata": {"topic": "Tea", "age": 25, "tier": "gold"}},
        {"content": "delta has no preference"},
    ]
    _data(devhost.client.post("/api/memory/batch-add", json={"user_id": user, "memories": memories}))
    return user


@pytest.mark.parametrize(("metadata", "expected"), SEARCH_CASES, ids=[str(c[0]) for c in SEARCH_CASES])
def test_filter_operators(api: httpx.Client, seeded: str, metadata: dict, expected: set) -> None:
    body = {"user_id": seeded, "query": "tea coffee preference", "limit": 10, "filters": {"metadata": metadata}}
    found = _data(api.post("/api/memory/search", json=body))
    assert {r["memory"].split()[0] for r in found["results"]} == expected


@pytest.mark.parametrize(
    ("metadata", "path"),
    [
        ({"age": {"between": [1, 2]}}, "filters.metadata.age.between"),
        ({"OR": {"a": 1}}, "filters.metadata.OR"),
        ({"AND": []}, "filters.metadata.AND"),
        ({"NOT": [{"age": {"gt": "x"}}]}, "filters.metadata.NOT[0].age.gt"),
        ({"OR": [{"a": 1}, {"b": {"in": []}}]}, "filters.metadata.OR[1].b.in"),
        ({"a": None}, "filters.metadata.a"),
        ({"a": [1, 2]}, "filters.metadata.a"),
        ({"a": {}}, "filters.metadata.a"),
        ({"a.b": 1}, "filters.metadata.a.b"),
        ({"run_id": "x"}, "filters.metadata.run_id"),
        ({"t": {"contains": "!!"}}, "filters.metadata.t.contains"),
    ],
)
def test_a_wrong_filter_is_a_422_naming_its_path(api: httpx.Client, metadata: dict, path: str) -> None:
    body = {"user_id": "someone", "query": "q", "filters": {"metadata": metadata}}
    response = api.post("/api/memory/search", json=body)
    assert response.status_code == 422, response.text
    assert path in response.text, response.text


def test_the_openapi_document_describes_scopes_expiry_and_the_grammar(api: httpx.Client) -> None:
    document = api.get("/openapi.json").json()
    schemas = document["components"]["schemas"]
    for model in ("MemoryAddRequest", "MemoryBatchAddRequest", "MemorySearchRequest", "MemoryRecord"):
        assert {"agent_id", "run_id"} <= set(schemas[model]["properties"]), model
    assert "expiration_date" in schemas["MemoryAddRequest"]["properties"]
    assert "expiration_date" in schemas["MemoryInput"]["properties"]
    grammar = schemas["SearchFilters"]["properties"]["metadata"]["description"]
    assert all(word in grammar for word in ("nin", "contains", "AND", "NOT", "422"))
    for method in ("get", "delete"):
        names = {p["name"] for p in document["paths"]["/api/memory/user/{user_id}"][method]["parameters"]}
        assert {"agent_id", "run_id"} <= names
