"""Every memory endpoint through the dev host over real HTTP, on the zero-setup default, with the
seed README's own request examples; results verified by reading back."""

from __future__ import annotations

import re
import uuid

import httpx

from tests.helpers import DevHost


def user(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def ok(response: httpx.Response, status: int = 200) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is True
    assert body["timestamp"].endswith("Z")
    assert response.headers["x-request-id"] == body["request_id"]
    return body["data"]


def test_seed_add_example_returns_documented_shape(api: httpx.Client) -> None:
    alice = user("alice")
    response = api.post(
        "/api/memory/add",
        json={
            "user_id": alice,
            "content": "用户偏好使用Python进行数据分析",
            "metadata": {"category": "preferences", "topic": "programming", "confidence": 0.9},
        },
    )
    body = response.json()
    assert body["message"] == "记忆添加成功"
    data = ok(response)
    assert set(data) == {"memory_id", "user_id", "content"}
    assert data["user_id"] == alice and data["content"] == "用户偏好使用Python进行数据分析"
    uuid.UUID(data["memory_id"])

    listed = ok(api.get(f"/api/memory/user/{alice}"))
    assert listed["total"] == 1
    memory = listed["results"][0]
    assert memory["id"] == data["memory_id"]
    assert memory["memory"] == "用户偏好使用Python进行数据分析"
    assert memory["user_id"] == alice
    assert memory["metadata"] == {"category": "preferences", "topic": "programming", "confidence": 0.9}
    assert memory["created_at"] and memory["updated_at"]


def test_batch_add_search_and_chat_search(api: httpx.Client) -> None:
    alice = user("alice")
    data = ok(
        api.post(
            "/api/memory/batch-add",
            json={
                "user_id": alice,
                "memories": [
                    {"content": "喜欢早上喝咖啡", "metadata": {"category": "habits"}},
                    {"content": "工作时间是9-17点", "metadata": {"category": "schedule"}},
                    {"content": "Prefers Python for data analysis", "metadata": {"category": "preferences"}},
                ],
            },
        )
    )
    assert data["count"] == 3 and len(set(data["memory_ids"])) == 3

    results = ok(api.post("/api/memory/search", json={"user_id": alice, "query": "programming language", "limit": 10}))
    ranked = results["results"]
    assert len(ranked) == 3
    assert ranked[0]["memory"] == "Prefers Python for data analysis"
    assert all("score" in r for r in ranked)
    assert ranked[0]["score"] >= ranked[1]["score"] >= ranked[2]["score"]

    limited = ok(api.post("/api/chat/search-memories", json={"user_id": alice, "query": "coffee", "limit": 1}))
    assert [r["memory"] for r in limited["results"]] == ["喜欢早上喝咖啡"]
    # chat search defaults to 5, memory search to 10: both bounded by what exists here
    assert len(ok(api.post("/api/chat/search-memories", json={"user_id": alice, "query": "x"}))["results"]) == 3


def test_search_filters_narrow_results(api: httpx.Client) -> None:
    alice = user("alice")
    ok(
        api.post(
            "/api/memory/batch-add",
            json={
                "user_id": alice,
                "memories": [
                    {"content": "drinks green tea", "metadata": {"category": "habits", "source": "web"}},
                    {"content": "drinks black coffee", "metadata": {"category": "habits", "source": "app"}},
                    {"content": "meeting about tea exports", "metadata": {"category": "work"}},
                ],
            },
        )
    )
    by_category = ok(
        api.post("/api/memory/search", json={"user_id": alice, "query": "tea", "filters": {"categories": ["work"]}})
    )
    assert [r["memory"] for r in by_category["results"]] == ["meeting about tea exports"]
    by_metadata = ok(
        api.post(
            "/api/memory/search", json={"user_id": alice, "query": "drinks", "filters": {"metadata": {"source": "app"}}}
        )
    )
    assert [r["memory"] for r in by_metadata["results"]] == ["drinks black coffee"]
    strict = ok(api.post("/api/memory/search", json={"user_id": alice, "query": "tea", "threshold": 0.99}))
    assert strict["results"] == []


def test_update_then_read_back_and_history(api: httpx.Client) -> None:
    alice = user("alice")
    memory_id = ok(
        api.post(
            "/api/memory/add",
            json={
                "user_id": alice,
                "content": "用户偏好使用Python进行数据分析",
                "metadata": {"category": "preferences"},
            },
        )
    )["memory_id"]
    response = api.put(
        "/api/memory/update",
        json={
            "memory_id": memory_id,
            "content": "用户偏好使用Python和JavaScript进行开发",
            "metadata": {"category": "preferences", "topic": "programming", "updated": True},
        },
    )
    assert response.json()["message"] == "记忆更新成功"
    assert ok(response) == {"memory_id": memory_id, "content": "用户偏好使用Python和JavaScript进行开发"}

    got = ok(api.get(f"/api/memory/memory/{memory_id}"))
    assert got["memory"] == "用户偏好使用Python和JavaScript进行开发"
    assert got["metadata"] == {"category": "preferences", "topic": "programming", "updated": True}
    assert got["updated_at"] > got["created_at"]
    # the new text is what search now finds
    found = ok(api.post("/api/memory/search", json={"user_id": alice, "query": "JavaScript", "limit": 1}))
    assert found["results"][0]["id"] == memory_id

    history = ok(api.get(f"/api/memory/memory/{memory_id}/history", params={"user_id": alice}))["history"]
    assert [h["event"] for h in history] == ["ADD", "UPDATE"]
    assert history[1]["old_memory"] == "用户偏好使用Python进行数据分析"
    assert history[1]["new_memory"] == "用户偏好使用Python和JavaScript进行开发"


def test_delete_one_and_delete_all_both_apis(api: httpx.Client) -> None:
    alice = user("alice")
    ids = ok(
        api.post(
            "/api/memory/batch-add",
            json={"user_id": alice, "memories": [{"content": f"fact number {i}"} for i in range(5)]},
        )
    )["memory_ids"]

    assert ok(api.delete(f"/api/memory/memory/{ids[0]}")) == {"memory_id": ids[0]}
    assert api.get(f"/api/memory/memory/{ids[0]}").status_code == 404
    assert ok(api.delete(f"/api/chat/memory/{ids[1]}")) == {"memory_id": ids[1]}
    remaining = ok(api.get(f"/api/chat/memories/{alice}"))
    assert remaining["total"] == 3 and {r["id"] for r in remaining["results"]} == set(ids[2:])

    assert api.delete(f"/api/memory/memory/{ids[0]}").status_code == 404  # already gone

    assert ok(api.delete(f"/api/chat/memories/{alice}")) == {"deleted": 3}
    assert ok(api.get(f"/api/memory/user/{alice}")) == {"results": [], "total": 0, "next_cursor": None}
    assert ok(api.delete(f"/api/memory/user/{alice}")) == {"deleted": 0}


def test_stats_date_and_category_distribution(api: httpx.Client) -> None:
    alice = user("alice")
    ok(
        api.post(
            "/api/memory/batch-add",
            json={
                "user_id": alice,
                "memories": [
                    {"content": "a", "metadata": {"category": "preferences"}},
                    {"content": "b", "metadata": {"category": "preferences"}},
                    {"content": "c", "metadata": {"category": "habits"}},
                    {"content": "d"},
                ],
            },
        )
    )
    response = api.get(f"/api/memory/stats/{alice}")
    assert response.json()["message"] == "统计信息获取成功"
    stats = ok(response)
    assert stats["user_id"] == alice
    assert stats["total_memories"] == 4
    assert stats["category_distribution"] == {"preferences": 2, "habits": 1, "other": 1}
    ((day, count),) = stats["date_distribution"].items()
    assert count == 4 and len(day) == 10 and day[4] == "-"


def test_system_endpoints(api: httpx.Client) -> None:
    health = api.get("/health").json()
    assert set(health) == {"status", "timestamp", "version"}  # the seed's shape; the checks need a key
    assert health["status"] == "healthy" and health["version"] == "2.0.0"
    assert isinstance(health["timestamp"], float)
    health = api.get("/health/detail").json()
    assert health["status"] == "healthy" and health["checks"]["llm"]["status"] == "not_configured"
    assert health["checks"]["vector_store"]["status"] == "ok"

    api.get("/api/memory/user/someone")
    metrics = api.get("/metrics").json()
    assert {"active_connections", "total_requests", "timestamp"} <= set(metrics)
    assert metrics["total_requests"] >= 2 and metrics["active_connections"] >= 1
    listed = metrics["functions"]["memory_list_user"]
    assert listed["requests"] >= 1 and listed["latency_ms"]["p50"] is not None

    info = api.get("/").json()
    assert info["version"] == "2.0.0" and info["docs"] == "/docs" and info["health"] == "/health"


def test_docs_render_offline(api: httpx.Client) -> None:
    page = api.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "http://" not in page.text and "https://" not in page.text  # every asset is served by the app
    for asset in ("/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui.css"):
        response = api.get(asset)
        assert response.status_code == 200 and len(response.content) > 10_000
    assert api.get("/docs/assets/..%2Fsecret").status_code == 404
    document = api.get("/openapi.json").json()
    assert document["openapi"].startswith("3.1")
    assert "/api/memory/add" in document["paths"] and "post" in document["paths"]["/api/memory/add"]


def test_chat_without_llm_is_a_clear_503(api: httpx.Client) -> None:
    response = api.post(
        "/api/chat/message",
        json={
            "user_id": "alice",
            "message": "我喜欢科幻电影，特别是《星际穿越》",
            "session_id": "session_001",
            "metadata": {"source": "web", "timestamp": "2024-01-01T10:00:00Z"},
        },
    )
    assert response.status_code == 503
    body = response.json()
    assert body["success"] is False and body["error"]["code"] == "llm_not_configured"
    # A configuration fact, not an outage: no Retry-After, and the details list every setting the message names.
    assert "Retry-After" not in response.headers
    settings = body["error"]["details"][0]["settings"]
    named = set(re.findall(r"\b[A-Z][A-Z_]{4,}\b", body["message"]))
    assert set(settings) == named and len(settings) == 7


def test_data_survives_a_restart(tmp_path) -> None:
    host = DevHost(tmp_path / "data", name="restart").start()
    try:
        alice = user("alice")
        memory_id = ok(host.client.post("/api/memory/add", json={"user_id": alice, "content": "remember me"}))[
            "memory_id"
        ]
        host.restart()
        got = ok(host.client.get(f"/api/memory/memory/{memory_id}", params={"user_id": alice}))
        assert got["memory"] == "remember me"
        found = ok(host.client.post("/api/memory/search", json={"user_id": alice, "query": "remember"}))
        assert [r["id"] for r in found["results"]] == [memory_id]
    finally:
        host.stop()


def test_concurrent_writes_and_reads_are_all_served(api: httpx.Client) -> None:
    from concurrent.futures import ThreadPoolExecutor

    alice = user("alice")

    def add(i: int) -> int:
        return api.post("/api/memory/add", json={"user_id": alice, "content": f"parallel fact {i}"}).status_code

    def batch(i: int) -> int:
        items = [{"content": f"batched fact {i}-{j}"} for j in range(10)]
        return api.post("/api/memory/batch-add", json={"user_id": alice, "memories": items}).status_code

    def search(i: int) -> int:
        return api.post("/api/memory/search", json={"user_id": alice, "query": f"fact {i}"}).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = [pool.submit(fn, i) for i in range(12) for fn in (add, batch, search)]
        statuses = [f.result() for f in futures]
    assert statuses == [200] * len(statuses)
    assert ok(api.get(f"/api/memory/stats/{alice}"))["total_memories"] == 12 + 12 * 10


def test_export_holds_every_memory_with_its_history(api: httpx.Client) -> None:
    alice = user("alice")
    first = ok(api.post("/api/memory/add", json={"user_id": alice, "content": "first", "metadata": {"category": "a"}}))
    ok(api.post("/api/memory/batch-add", json={"user_id": alice, "memories": [{"content": "second"}]}))
    ok(api.put("/api/memory/update", json={"memory_id": first["memory_id"], "content": "first, edited"}))
    exported = ok(api.get(f"/api/memory/export/{alice}"))
    assert exported["user_id"] == alice and exported["sessions"] == {}
    by_text = {m["memory"]: m for m in exported["memories"]}
    assert set(by_text) == {"first, edited", "second"}
    assert by_text["first, edited"]["metadata"] == {"category": "a"}
    assert [h["event"] for h in by_text["first, edited"]["history"]] == ["ADD", "UPDATE"]
    assert [h["event"] for h in by_text["second"]["history"]] == ["ADD"]
