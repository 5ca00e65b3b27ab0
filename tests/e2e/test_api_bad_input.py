"""Bad input on every endpoint: a 4xx with the error envelope, never a 500, and nothing changed."""

from __future__ import annotations

import uuid

import httpx
import pytest

BODY_ENDPOINTS = [
    ("POST", "/api/memory/add"),
    ("POST", "/api/memory/batch-add"),
    ("POST", "/api/memory/search"),
    ("PUT", "/api/memory/update"),
    ("POST", "/api/chat/search-memories"),
    ("POST", "/api/chat/message"),
]

VALID = {
    "/api/memory/add": {"user_id": "u", "content": "c"},
    "/api/memory/batch-add": {"user_id": "u", "memories": [{"content": "c"}]},
    "/api/memory/search": {"user_id": "u", "query": "q"},
    "/api/memory/update": {"memory_id": str(uuid.uuid4()), "content": "c"},
    "/api/chat/search-memories": {"user_id": "u", "query": "q"},
    "/api/chat/message": {"user_id": "u", "message": "m"},
}


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is False
    assert body["message"] and body["request_id"] and body["timestamp"]
    assert isinstance(body["error"]["details"], list)
    if code:
        assert body["error"]["code"] == code
    return body


@pytest.mark.parametrize(("method", "path"), BODY_ENDPOINTS)
def test_malformed_and_non_object_bodies(api: httpx.Client, method: str, path: str) -> None:
    headers = {"Content-Type": "application/json"}
    assert_error(api.request(method, path, content=b"{not json", headers=headers), 400, "bad_request")
    assert_error(api.request(method, path, content=b"", headers=headers), 400, "bad_request")
    assert_error(api.request(method, path, content=b"\xff\xfe\x00", headers=headers), 400, "bad_request")
    assert_error(api.request(method, path, content=b"[1, 2]", headers=headers), 422, "validation_error")
    assert_error(api.request(method, path, content=b"null", headers=headers), 422, "validation_error")


@pytest.mark.parametrize(("method", "path"), BODY_ENDPOINTS)
def test_missing_wrong_typed_empty_and_unknown_fields(api: httpx.Client, method: str, path: str) -> None:
    valid = VALID[path]
    for field in valid:
        missing = {k: v for k, v in valid.items() if k != field}
        body = assert_error(api.request(method, path, json=missing), 422, "validation_error")
        assert any(field in d["loc"] for d in body["error"]["details"]), body
        assert_error(api.request(method, path, json={**valid, field: 12345}), 422)
        assert_error(api.request(method, path, json={**valid, field: ""}), 422)
    assert_error(api.request(method, path, json={**valid, "unexpected": 1}), 422)


def test_oversized_fields_and_bodies(api: httpx.Client) -> None:
    assert_error(api.post("/api/memory/add", json={"user_id": "u", "content": "x" * 8001}), 422)
    assert_error(api.post("/api/memory/add", json={"user_id": "u" * 129, "content": "c"}), 422)
    assert_error(api.post("/api/memory/add", json={"user_id": "u", "content": "   "}), 422)
    assert_error(api.post("/api/memory/add", json={"user_id": "a\u0000b", "content": "c"}), 422)
    assert_error(api.post("/api/memory/search", json={"user_id": "u", "query": "q", "limit": 0}), 422)
    assert_error(api.post("/api/memory/search", json={"user_id": "u", "query": "q", "limit": 101}), 422)
    assert_error(api.post("/api/memory/search", json={"user_id": "u", "query": "q", "limit": "ten"}), 422)
    assert_error(api.post("/api/memory/search", json={"user_id": "u", "query": "q", "threshold": 2}), 422)
    too_big = b'{"user_id": "u", "content": "' + b"x" * 1_100_000 + b'"}'
    assert_error(api.post("/api/memory/add", content=too_big), 413, "payload_too_large")


def test_bad_metadata(api: httpx.Client) -> None:
    for metadata in (
        {"user_id": "mallory"},
        {"data": "x"},
        {"_seq": 0},  # the store's own write order: a caller must not move a memory in it
        {"_ts": 1.0},
        {"nested": {"a": 1}},
        {"list": [1, 2]},
        {f"k{i}": i for i in range(33)},
        {"": "empty key"},
        "not an object",
    ):
        assert_error(api.post("/api/memory/add", json={"user_id": "u", "content": "c", "metadata": metadata}), 422)


def test_huge_and_empty_batches_change_nothing(api: httpx.Client) -> None:
    someone = f"batch-{uuid.uuid4().hex[:6]}"
    too_many = {"user_id": someone, "memories": [{"content": f"m{i}"} for i in range(501)]}
    assert_error(api.post("/api/memory/batch-add", json=too_many), 422, "validation_error")
    assert_error(api.post("/api/memory/batch-add", json={"user_id": someone, "memories": []}), 422)
    one_bad = {"user_id": someone, "memories": [{"content": "fine"}, {"content": ""}]}
    assert_error(api.post("/api/memory/batch-add", json=one_bad), 422)
    assert api.get(f"/api/memory/user/{someone}").json()["data"]["total"] == 0


def test_unknown_and_malformed_ids(api: httpx.Client) -> None:
    unknown = str(uuid.uuid4())
    for mid in (unknown, "mem_id_123", "not-a-uuid", "%20"):
        assert_error(api.get(f"/api/memory/memory/{mid}"), 404, "not_found")
        assert_error(api.delete(f"/api/memory/memory/{mid}"), 404, "not_found")
        assert_error(api.delete(f"/api/chat/memory/{mid}"), 404, "not_found")
        assert_error(api.get(f"/api/memory/memory/{mid}/history"), 404, "not_found")
    assert_error(api.put("/api/memory/update", json={"memory_id": unknown, "content": "c"}), 404, "not_found")


def test_bad_path_and_query_parameters(api: httpx.Client) -> None:
    assert_error(api.get("/api/memory/user/" + "u" * 200), 422)
    assert_error(api.get("/api/memory/stats/%01"), 422)
    assert_error(api.delete("/api/memory/user/%20%20"), 422)
    # an empty ?user_id= is dropped by the host (as absent); a blank one is refused
    assert_error(api.get(f"/api/memory/memory/{uuid.uuid4()}", params={"user_id": "   "}), 422)


def test_wrong_method_and_unknown_route_are_404(api: httpx.Client) -> None:
    assert api.get("/api/memory/add").status_code == 404
    assert api.get("/api/nothing/here").status_code == 404


def test_bodies_python_reads_but_json_does_not_mean(api: httpx.Client) -> None:
    huge = b'{"user_id": "u", "content": "c", "metadata": {"n": 1' + b"0" * 5000 + b"}}"
    assert_error(api.post("/api/memory/add", content=huge), 400, "bad_request")  # more digits than Python reads
    deep = b'{"user_id": "u", "content": "c", "metadata": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    assert_error(api.post("/api/memory/add", content=deep), 400, "bad_request")
    for constant in (b"NaN", b"Infinity", b"-Infinity"):
        body = b'{"user_id": "u", "content": "c", "metadata": {"x": ' + constant + b"}}"
        assert_error(api.post("/api/memory/add", content=body), 422, "validation_error")
    someone = f"nan-{uuid.uuid4().hex[:6]}"
    search = b'{"user_id": "' + someone.encode() + b'", "query": "q", "threshold": NaN}'
    assert_error(api.post("/api/memory/search", content=search), 422, "validation_error")
    assert api.get(f"/api/memory/user/{someone}").json()["data"]["results"] == []  # nothing was stored


def test_filter_keys_of_any_shape_are_answered_never_with_a_5xx(api: httpx.Client) -> None:
    user = f"filters-{uuid.uuid4().hex[:6]}"
    assert (
        api.post("/api/memory/add", json={"user_id": user, "content": "tea", "metadata": {"OR": "x"}}).status_code
        == 200
    )
    for key in ("topic", "a_b-c"):
        found = api.post(
            "/api/memory/search", json={"user_id": user, "query": "tea", "filters": {"metadata": {key: "x"}}}
        )
        assert found.status_code == 200, (key, found.text)
    # AND/OR/NOT are the grammar's (lists of conditions), no longer plain keys: a metadata key named
    # "OR" is stored, but a filter on it is a 422 naming the path.
    for key in ("OR", "AND", "NOT", "$or", "*", "a b", "a:b", 'a"b', " a", "a ", "a.b", "a[0]", "-a"):
        body = assert_error(
            api.post("/api/memory/search", json={"user_id": user, "query": "tea", "filters": {"metadata": {key: "x"}}}),
            422,
            "validation_error",
        )
        assert any(f"filters.metadata.{key}" in d["msg"] for d in body["error"]["details"]), body
