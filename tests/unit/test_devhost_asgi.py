"""The dev host's ASGI app in-process (httpx ASGITransport), serving the sample FunctionApp."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.devhost import sample_app
from tools.devhost.asgi import DevHostApp
from tools.devhost.host import create_asgi_app


def call(app: DevHostApp, method: str, url: str, **kwargs: Any) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            return await client.request(method, url, **kwargs)

    return asyncio.run(go())


@pytest.fixture(scope="module")
def api() -> Iterator[DevHostApp]:
    """Route prefix "api", the host's default."""
    app = create_asgi_app(sample_app.build_app(), "api")
    yield app
    app.close()


@pytest.fixture(scope="module")
def bare() -> Iterator[DevHostApp]:
    """Route prefix "" (no prefix)."""
    app = create_asgi_app(sample_app.build_app(), "")
    yield app
    app.close()


def test_literal_beats_parameter_and_constraints_pick_the_route(api: DevHostApp) -> None:
    assert call(api, "GET", "/api/items/special").json() == {"route": "special"}
    assert call(api, "GET", "/api/ITEMS/SPECIAL").json() == {"route": "special"}
    assert call(api, "GET", "/api/items/42").json() == {"route": "int", "id": "42"}
    assert call(api, "GET", "/api/items/abc").json() == {"route": "name", "name": "abc", "method": "GET"}
    assert call(api, "GET", "/api/catalog/featured").json() == {"route": "featured"}
    assert call(api, "GET", "/api/catalog/other").json() == {"route": "slug", "slug": "other"}


def test_host_route_order_option_copies_the_functions_host() -> None:
    app = create_asgi_app(sample_app.build_app(), "api", route_order="host")
    try:
        # 'catalog_entry' sorts before 'featured_catalog', and the host takes the first match.
        assert call(app, "GET", "/api/catalog/featured").json() == {"route": "slug", "slug": "featured"}
    finally:
        app.close()


def test_int_constraint_without_fallback_is_404(api: DevHostApp) -> None:
    assert call(api, "GET", "/api/orders/7").json() == {"id": "7"}
    response = call(api, "GET", "/api/orders/seven")
    assert response.status_code == 404
    assert response.content == b""


def test_optional_default_catch_all_and_complex_segments(api: DevHostApp) -> None:
    assert call(api, "GET", "/api/greet").text == "hello world"
    assert call(api, "GET", "/api/greet/ann").text == "hello ann"
    assert call(api, "GET", "/api/docs").json() == {"lang": "en"}
    assert call(api, "GET", "/api/docs/fr").json() == {"lang": "fr"}
    assert call(api, "GET", "/api/files").json() == {}
    assert call(api, "GET", "/api/files/a/b/c.txt").json() == {"path": "a/b/c.txt"}
    assert call(api, "GET", "/api/reports/q1.tar.gz").json() == {"name": "q1.tar", "ext": "gz"}
    assert call(api, "GET", "/api/reports/q1").json() == {"name": "q1"}


def test_method_mismatch_is_404_like_the_host(api: DevHostApp) -> None:
    assert call(api, "GET", "/api/readonly").text == "read"
    for method in ("POST", "PUT", "DELETE", "HEAD"):
        response = call(api, method, "/api/readonly")
        assert response.status_code == 404, method
        assert response.content == b""
    # No methods given means every method.
    assert call(api, "DELETE", "/api/items/abc").json()["method"] == "DELETE"


def test_unknown_route_is_404(api: DevHostApp) -> None:
    assert call(api, "GET", "/api/nothing/here").status_code == 404
    assert call(api, "GET", "/items/special").status_code == 404  # the prefix is required
    assert call(api, "GET", "/").status_code == 404


def test_route_defaults_to_the_function_name(api: DevHostApp) -> None:
    assert call(api, "GET", "/api/ping").text == "pong"
    assert call(api, "POST", "/api/ping").text == "pong"
    assert call(api, "GET", "/api/HealthCheck").text == "healthy"
    assert call(api, "GET", "/api/healthcheck").text == "healthy"


def test_empty_route_prefix(bare: DevHostApp) -> None:
    assert call(bare, "GET", "/items/special").json() == {"route": "special"}
    assert call(bare, "GET", "/ping").text == "pong"
    assert call(bare, "GET", "/api/items/special").status_code == 404


def test_functions_the_host_refuses_are_not_served(api: DevHostApp) -> None:
    assert set(api.router.errors) == {"administer", "dup_b", "from_blob"}
    assert "input binding" in api.router.errors["from_blob"]
    assert call(api, "GET", "/api/administer").status_code == 404
    assert call(api, "GET", "/api/dup").text == "a"
    assert call(api, "POST", "/api/dup").status_code == 404
    assert api.non_http_functions == [("nightly", "timerTrigger")]


def test_request_reaches_the_function_like_the_worker_builds_it(api: DevHostApp) -> None:
    response = call(
        api,
        "POST",
        "/api/echo/hello%20world?q=1&q=2&empty=&Name=x",
        headers={"X-Trace": "abc", "Content-Type": "application/json"},
        content=b'{"a": 1}',
    )
    assert response.status_code == 200
    echoed = response.json()
    assert echoed["method"] == "POST"
    assert echoed["url"] == "http://testserver/api/echo/hello%20world?q=1&q=2&empty=&Name=x"
    assert echoed["route_params"] == {"tag": "hello world"}
    assert echoed["params"] == {"q": "1,2", "Name": "x"}  # joined like the host; empty values dropped
    assert echoed["headers"]["x-trace"] == "abc"
    assert echoed["headers"]["content-type"] == "application/json"
    assert echoed["body"] == '{"a": 1}'
    assert echoed["json"] == {"a": 1}


def test_encoded_slash_stays_inside_its_segment(api: DevHostApp) -> None:
    assert call(api, "PUT", "/api/echo/a%2Fb").json()["route_params"] == {"tag": "a%2Fb"}


def test_custom_response_status_headers_cookies_and_mimetype(api: DevHostApp) -> None:
    response = call(api, "GET", "/api/teapot")
    assert response.status_code == 418
    assert response.text == "short and stout"
    assert response.headers["x-custom"] == "yes"
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.headers["content-length"] == str(len(b"short and stout"))
    assert response.headers.get_list("set-cookie") == ["a=1; Path=/", "b=2; HttpOnly; Path=/"]
    # The worker sends headers as a map: a repeated header other than Set-Cookie keeps its last value.
    assert response.headers.get_list("x-repeated") == ["second"]

    binary = call(api, "GET", "/api/binary")
    assert binary.content == b"\x00\x01\x02"
    assert binary.headers["content-type"] == "application/octet-stream"


def test_return_types_follow_the_library_converter(api: DevHostApp) -> None:
    plain = call(api, "GET", "/api/plain")
    assert (plain.status_code, plain.text) == (200, "just text")
    assert plain.headers["content-type"] == "text/plain; charset=utf-8"
    # The worker refuses to encode anything but HttpResponse or str, so the invocation fails.
    assert call(api, "GET", "/api/returns-dict").status_code == 500


def test_async_function_runs_on_the_event_loop(api: DevHostApp) -> None:
    data = call(api, "GET", "/api/async-hello").json()
    assert data["loop"] is True
    assert not data["thread"].startswith("devhost-worker")


def test_context_argument(api: DevHostApp) -> None:
    data = call(api, "GET", "/api/whoami").json()
    assert data["function"] == "with_context"
    assert len(data["invocation"]) == 36


def test_exception_is_a_generic_500_and_logged(api: DevHostApp, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="devhost"):
        response = call(api, "GET", "/api/boom")
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/json"
    assert "boom" not in response.text
    assert json.loads(response.text)["error"] == "internal_server_error"
    assert any("Functions.boom" in r.getMessage() and r.exc_info for r in caplog.records)
    assert call(api, "GET", "/api/plain").status_code == 200


def test_output_bindings_are_accepted_and_discarded(api: DevHostApp) -> None:
    assert call(api, "POST", "/api/enqueue", content=b"job").text == "queued"
    assert any("'msg'" in w and "discarded" in w for w in api.router.warnings)


def test_start_up_diagnostics_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="devhost"):
        create_asgi_app(sample_app.build_app(), "api").close()
    messages = [r.getMessage() for r in caplog.records]
    assert any("'administer' function is in error" in m for m in messages)
    assert any("'dup_b' function is in error" in m and "'dup_a'" in m for m in messages)
    assert any("catalog_entry" in m and "featured_catalog" in m for m in messages)


def test_the_same_app_can_be_indexed_twice() -> None:
    # FunctionApp.get_functions() reports every name as a duplicate on a second call; the dev host copes.
    app = sample_app.build_app()
    create_asgi_app(app, "api").close()
    create_asgi_app(app, "").close()
