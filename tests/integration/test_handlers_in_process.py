"""The registered functions called in process with a real `func.HttpRequest`, as the Python worker
calls them: no host, no HTTP server. The worker-side half of what the e2e tests see over HTTP."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import azure.functions as func
import pytest

from shared import runtime
from tests.helpers import model_env
from tools.devhost.invocation import DevContext, trace_context_from

Handler = Callable[[func.HttpRequest], func.HttpResponse]


def _functions() -> dict[str, Handler]:
    """Each HTTP function as the worker calls it: the request, and the invocation's context."""
    import function_app
    from functions.openapi import indexed_functions

    def bound(name: str, user_function: Callable[..., func.HttpResponse]) -> Handler:
        def call(req: func.HttpRequest) -> func.HttpResponse:
            context = DevContext(uuid.uuid4().hex, name, ".", trace_context_from(req.headers))
            return user_function(req, context)

        return call

    return {
        fn.get_function_name(): bound(fn.get_function_name(), fn.get_user_function())
        for fn in indexed_functions(function_app.app)
        if fn.get_trigger().get_binding_name() == "httpTrigger"
    }


@pytest.fixture(scope="module")
def functions() -> dict[str, Handler]:
    return _functions()


@pytest.fixture
def zero_setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.delenv("LOCAL_EMBEDDING_MODEL_PATH", raising=False)
    for key, value in model_env().items():
        monkeypatch.setenv(key, value)
    runtime.reset()
    yield tmp_path
    runtime.reset()


def _request(method: str, url: str, body: object = None, route: dict[str, str] | None = None) -> func.HttpRequest:
    raw = b"" if body is None else body if isinstance(body, bytes) else json.dumps(body).encode()
    return func.HttpRequest(
        method=method,
        url=f"http://localhost{url}",
        headers={"content-type": "application/json", "x-request-id": "in-process-0001"},
        params={},
        route_params=route or {},
        body=raw,
    )


def _json(response: func.HttpResponse) -> dict[str, object]:
    body = json.loads(response.get_body())
    assert isinstance(body, dict)
    return body


def test_bad_input_is_answered_by_the_handler_itself(functions, zero_setup) -> None:
    not_json = functions["memory_add"](_request("POST", "/api/memory/add", b"{nope"))
    assert not_json.status_code == 400
    body = _json(not_json)
    assert body["success"] is False and body["error"]["code"] == "bad_request"
    assert body["request_id"] == "in-process-0001" and not_json.headers["x-request-id"] == "in-process-0001"
    invalid = functions["memory_add"](_request("POST", "/api/memory/add", {"user_id": "", "content": "x"}))
    assert invalid.status_code == 422 and _json(invalid)["error"]["details"]
    assert runtime.peek_memory_service() is None  # refused before the service was needed


def test_a_memory_round_trip_through_the_registered_functions(functions, zero_setup) -> None:
    added = functions["memory_add"](
        _request("POST", "/api/memory/add", {"user_id": "ines", "content": "Ines keeps bees on her roof"})
    )
    assert added.status_code == 200, added.get_body()
    memory_id = _json(added)["data"]["memory_id"]
    found = functions["memory_search"](_request("POST", "/api/memory/search", {"user_id": "ines", "query": "bees"}))
    assert [r["id"] for r in _json(found)["data"]["results"]][:1] == [memory_id]
    # The chat shortcut runs the memory handler, with the original API's own message.
    listed = functions["chat_list_memories"](_request("GET", "/api/chat/memories/ines", route={"user_id": "ines"}))
    assert _json(listed)["message"] == "获取用户记忆成功" and _json(listed)["data"]["total"] == 1
    deleted = functions["chat_delete_user_memories"](
        _request("DELETE", "/api/chat/memories/ines", route={"user_id": "ines"})
    )
    assert _json(deleted)["message"] == "用户记忆已清除" and _json(deleted)["data"]["deleted"] == 1
    gone = functions["memory_get"](_request("GET", f"/api/memory/memory/{memory_id}", route={"memory_id": memory_id}))
    assert gone.status_code == 404 and _json(gone)["error"]["code"] == "not_found"


def test_timestamps_of_one_response_share_the_one_format(functions, zero_setup) -> None:
    functions["memory_add"](_request("POST", "/api/memory/add", {"user_id": "jo", "content": "Jo rides a tandem"}))
    body = _json(functions["memory_list_user"](_request("GET", "/api/memory/user/jo", route={"user_id": "jo"})))
    record = body["data"]["results"][0]
    stamps = [body["timestamp"], record["created_at"]]
    assert all(isinstance(s, str) and len(s) == 24 and s.endswith("Z") and s[19] == "." for s in stamps), stamps
