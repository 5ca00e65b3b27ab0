"""The OpenAPI document declares what the validators enforce, and no request is coerced: over HTTP."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import httpx
import pytest

from shared.contract import RESERVED_METADATA_KEYS
from tests.helpers import DevHost

EXPECTED_CODES = {
    "400": "bad_request",
    "403": "forbidden",
    "404": "not_found",
    "413": "payload_too_large",
    "422": "validation_error",
    "503": "unavailable",
}


def schemas(api: httpx.Client) -> dict:
    return api.get("/openapi.json").json()["components"]["schemas"]


@pytest.mark.parametrize(
    "body",
    [
        {"limit": "5"},
        {"limit": True},
        {"limit": 5.5},
        {"threshold": False},
        {"threshold": "0.5"},
        {"filters": {"created_after": 0}},
        {"filters": {"created_after": "2024-05-01"}},
    ],
)
def test_search_refuses_what_its_schema_types_refuse(api: httpx.Client, body: dict) -> None:
    response = api.post("/api/memory/search", json={"user_id": "u", "query": "q", **body})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "validation_error"


def test_what_json_schema_calls_an_integer_or_a_date_time_is_accepted(api: httpx.Client) -> None:
    instant = "2024-05-01T10:00:00.123456789+02:00"
    body = {"user_id": "u", "query": "q", "limit": 5.0, "threshold": 0, "filters": {"created_after": instant}}
    assert api.post("/api/memory/search", json=body).status_code == 200


@pytest.mark.parametrize("user_id", ["a\u0000b", "tab\there", "bob smith", "a\u3000b", "   "])
def test_user_ids_follow_the_declared_pattern(api: httpx.Client, user_id: str) -> None:
    pattern = schemas(api)["MemoryAddRequest"]["properties"]["user_id"]["pattern"]
    assert re.search(pattern, user_id) is None  # the document says no
    response = api.post("/api/memory/add", json={"user_id": user_id, "content": "x"})
    assert response.status_code == 422, response.text  # and so does the service (a space inside was a 500)
    assert "control characters" in response.json()["error"]["details"][0]["msg"]  # the rule, not the regex


def test_spaces_around_a_user_id_are_allowed_by_both_and_stripped(api: httpx.Client) -> None:
    pattern = schemas(api)["MemoryAddRequest"]["properties"]["user_id"]["pattern"]
    assert re.search(pattern, "  carol-contract ")
    added = api.post("/api/memory/add", json={"user_id": "  carol-contract ", "content": "likes tea"})
    assert added.status_code == 200 and added.json()["data"]["user_id"] == "carol-contract"


def test_metadata_key_rules_are_declared_and_enforced(api: httpx.Client) -> None:
    metadata = schemas(api)["MemoryAddRequest"]["properties"]["metadata"]
    assert metadata["maxProperties"] == 32
    names = metadata["propertyNames"]
    assert set(names["not"]["enum"]) == RESERVED_METADATA_KEYS
    for key, allowed in (("topic", True), ("k" * 64, True), ("k" * 65, False), ("a\u0085b", False), ("", False)):
        assert (re.search(names["pattern"], key) is not None) is allowed, key
        response = api.post("/api/memory/add", json={"user_id": "u", "content": "x", "metadata": {key: 1}})
        assert response.status_code == (200 if allowed else 422), (key, response.text)
    for key in ("_seq", "memory"):
        response = api.post("/api/memory/add", json={"user_id": "u", "content": "x", "metadata": {key: 1}})
        assert response.status_code == 422
    many = {f"k{i}": i for i in range(33)}
    assert api.post("/api/memory/add", json={"user_id": "u", "content": "x", "metadata": many}).status_code == 422


def test_a_request_logs_its_request_id_on_every_line(devhost: DevHost) -> None:
    response = devhost.client.post("/api/memory/add", json={"user_id": "logged-user", "content": "a logged line"})
    request_id = response.headers["x-request-id"]
    lines = [line for line in devhost.process.log_path.read_text().splitlines() if "POST /api/memory/add ->" in line]
    assert any(line.endswith(f"[request_id={request_id}]") for line in lines), lines[-3:]


@pytest.mark.parametrize(
    "raw",
    [
        b'{"user_id": "u", "content": "bad \\ud800 text"}',  # an escape
        b'{"user_id": "u", "content": "bad \xed\xa0\x80 text"}',  # the raw bytes the JSON reader lets through
        '{"user_id": "u", "content": "bad \ud800 text"}'.encode("utf-16-le", "surrogatepass"),  # a UTF-16 body
    ],
    ids=["escape", "utf-8-bytes", "utf-16-body"],
)
def test_a_lone_surrogate_is_a_400_not_a_500(api: httpx.Client, raw: bytes) -> None:
    response = api.post("/api/memory/add", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 400 and "surrogate" in response.json()["message"]


def test_a_surrogate_pair_escape_is_text(api: httpx.Client) -> None:
    raw = b'{"user_id": "pair-user", "content": "smile \\ud83d\\ude00"}'
    response = api.post("/api/memory/add", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text


def test_error_examples_match_their_status_and_system_routes_list_no_4xx(api: httpx.Client) -> None:
    paths = api.get("/openapi.json").json()["paths"]
    for item in paths.values():
        for operation in item.values():
            for code, response in operation["responses"].items():
                example = (response.get("content") or {}).get("application/json", {}).get("example")
                if code.startswith(("4", "5")) and example is not None:
                    assert example["error"]["code"] == EXPECTED_CODES[code], (operation["operationId"], code)
    for path in ("/health", "/", "/metrics", "/openapi.json", "/docs"):
        codes = set(paths[path]["get"]["responses"])
        assert not codes & {"400", "403", "404", "413", "422"}, (path, codes)
    assert {"403", "404"} <= set(paths["/api/memory/memory/{memory_id}"]["get"]["responses"])
    assert "403" not in paths["/api/memory/add"]["post"]["responses"]


def test_the_add_example_is_a_real_sentence(api: httpx.Client) -> None:
    content = schemas(api)["MemoryAddRequest"]["properties"]["content"]
    assert content["examples"] and content["examples"][0] != "string"


def test_ctrl_c_stops_the_host_without_a_traceback(tmp_path: Path) -> None:
    host = DevHost(tmp_path / "data", name="ctrl-c").start()
    try:
        assert host.client.post("/api/memory/add", json={"user_id": "u", "content": "before ctrl-c"}).status_code == 200
        assert host.process.proc is not None
        host.process.proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        assert host.process.proc.wait(timeout=30) == 0
    finally:
        host.stop()
    log = host.process.log_path.read_text()
    assert "Traceback" not in log and "Exception ignored" not in log, log[-3000:]
