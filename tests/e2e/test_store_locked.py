"""Two dev hosts on one embedded store: the second answers 503 `store_locked` and says so in /health."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import DevHost


def test_a_second_process_on_the_embedded_store_is_told_why(tmp_path: Path) -> None:
    first = DevHost(tmp_path / "data", name="owner").start()
    try:
        assert first.client.post("/api/memory/add", json={"user_id": "u", "content": "hello"}).status_code == 200
        second = DevHost(tmp_path / "data", name="second").start()
        try:
            before = second.client.get("/health").json()  # checked before any call: cached for 30 s
            response = second.client.post("/api/memory/search", json={"user_id": "u", "query": "hello"})
            # The failed call turns the cached answer at once, whatever the check said before it.
            after = second.client.get("/health").json()
            assert after["status"] == "degraded", (before, after)
            assert response.status_code == 503
            body = response.json()
            assert body["error"]["code"] == "store_locked"
            assert "DATA_DIR" in body["message"] and "another process" in body["message"]
            assert "Retry-After" not in response.headers  # only stopping the other process helps
            health = second.client.get("/health/detail").json()
            assert health["checks"]["vector_store"]["status"] == "down"
            assert health["checks"]["vector_store"]["error"] == "store_locked"
            assert health["status"] != "healthy"
        finally:
            second.stop()
        # the owner was never disturbed
        found = first.client.post("/api/memory/search", json={"user_id": "u", "query": "hello"}).json()
        assert [m["memory"] for m in found["data"]["results"]] == ["hello"]
    finally:
        first.stop()
