"""Route templates, route order and host.json, without any server."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from functions.hostjson import read_route_prefix
from tools.devhost.cli import load_local_settings
from tools.devhost.indexing import HttpFunction
from tools.devhost.messages import decode_request_path, request_headers, request_query
from tools.devhost.routing import Router
from tools.devhost.templates import RouteTemplateError, parse_route_template


def matched(router: Router, method: str, path: str) -> str | None:
    found = router.match(method, path)
    return found.route.function.name if found else None


def fn(name: str, route: str, methods: set[str] | None = None) -> HttpFunction:
    return HttpFunction(
        name=name,
        route=route,
        methods=frozenset(methods) if methods else None,
        auth_level="anonymous",
        trigger_arg="req",
        user_function=lambda req: "",
    )


@pytest.mark.parametrize(
    ("template", "path", "expected"),
    [
        ("items/special", "items/special", {}),
        ("items/special", "ITEMS/Special", {}),  # literals ignore case
        ("items/special", "items/special/", {}),  # one trailing slash is ignored
        ("items/special", "items/special/x", None),
        ("items/special", "items", None),
        ("items/{id}", "items/a b", {"id": "a b"}),
        ("items/{id}", "items//", None),
        ("items/{id:int}", "items/42", {"id": "42"}),
        ("items/{id:int}", "items/-7", {"id": "-7"}),
        ("items/{id:int}", "items/4x", None),
        ("items/{id:int}", "items/99999999999", None),  # beyond Int32
        ("items/{id:long}", "items/99999999999", {"id": "99999999999"}),
        ("items/{id:alpha}", "items/abcXYZ", {"id": "abcXYZ"}),
        ("items/{id:alpha}", "items/abc1", None),
        ("items/{id:bool}", "items/True", {"id": "True"}),
        ("items/{id:bool}", "items/yes", None),
        (
            "items/{id:guid}",
            "items/0f8fad5b-d9cb-469f-a165-70867728950e",
            {"id": "0f8fad5b-d9cb-469f-a165-70867728950e"},
        ),
        ("items/{id:guid}", "items/0f8fad5bd9cb469fa16570867728950e", {"id": "0f8fad5bd9cb469fa16570867728950e"}),
        ("items/{id:guid}", "items/not-a-guid", None),
        ("items/{id:double}", "items/1.5e3", {"id": "1.5e3"}),
        ("items/{id:double}", "items/x1.5", None),
        ("items/{id:min(10)}", "items/9", None),
        ("items/{id:range(1,3)}", "items/3", {"id": "3"}),
        ("items/{id:maxlength(3)}", "items/abcd", None),
        ("items/{id:regex(^a\\d+$)}", "items/A12", {"id": "A12"}),  # regex constraints ignore case
        ("items/{id:regex(^\\d{{3}}$)}", "items/123", {"id": "123"}),  # {{ }} escape braces in templates
        ("greet/{name?}", "greet", {}),
        ("greet/{name?}", "greet/", {}),
        ("greet/{name?}", "greet/ann", {"name": "ann"}),
        ("docs/{lang=en}", "docs", {"lang": "en"}),
        ("docs/{lang=en}", "docs/fr", {"lang": "fr"}),
        ("files/{*path}", "files", {}),
        ("files/{*path}", "files/a/b/c.txt", {"path": "a/b/c.txt"}),
        ("files/{*path}", "files/a//b/", {"path": "a//b/"}),  # a catch-all keeps what it gets
        ("files/{**path}", "files/a/b", {"path": "a/b"}),
        ("reports/{name}.{ext?}", "reports/q1.tar.gz", {"name": "q1.tar", "ext": "gz"}),
        ("reports/{name}.{ext?}", "reports/q1", {"name": "q1"}),
        ("{ignored:maxlength(0)?}", "", {}),  # the documented way to serve the bare prefix
        ("{ignored:maxlength(0)?}", "x", None),
        ("/leading/slash", "leading/slash", {}),
    ],
)
def test_template_matching(template: str, path: str, expected: dict[str, str] | None) -> None:
    assert parse_route_template(template).match(path) == expected


@pytest.mark.parametrize(
    "template",
    [
        "a//b",
        "a/{id",
        "a/id}",
        "a/{*rest}/b",
        "a/{*rest?}",
        "a/{id?=x}",
        "a/{id}/{ID}",
        "a/{x}{y}",
        "a/{x}-{y?}",
        "a/{id:nosuchconstraint}",
        "a/{id:min(x)}",
        "a/{}",
    ],
)
def test_invalid_templates_are_rejected(template: str) -> None:
    with pytest.raises(RouteTemplateError):
        parse_route_template(template)


def test_unchecked_constraints_are_reported() -> None:
    template = parse_route_template("a/{when:datetime}/{id:int}")
    assert template.unchecked_constraints() == [("when", "datetime")]
    assert template.match("a/anything/1") == {"when": "anything", "id": "1"}


def test_precedence_order_literal_constrained_parameter_catch_all() -> None:
    router = Router(
        [
            fn("a_catch_all", "items/{*rest}"),
            fn("b_param", "items/{name}"),
            fn("c_int", "items/{id:int}"),
            fn("d_literal", "items/special"),
        ],
        "api",
    )
    assert [r.function.name for r in router.routes] == ["d_literal", "c_int", "b_param", "a_catch_all"]
    assert matched(router, "GET", "api/items/special") == "d_literal"
    assert matched(router, "GET", "api/items/12") == "c_int"
    assert matched(router, "GET", "api/items/x") == "b_param"
    assert matched(router, "GET", "api/items/x/y") == "a_catch_all"
    # The host tries them by function name, so every overlapping pair disagrees (only int vs "special" cannot
    # overlap) and is reported.
    assert len(router.warnings) == 5


def test_host_order_uses_function_names_like_the_host() -> None:
    # OrdinalIgnoreCase upper-cases, so "AAB" < "A_B" ('A' < '_'): the catch-all function wins.
    functions = [fn("a_b", "x/special"), fn("aab", "x/{*rest}")]
    host = Router(functions, "", route_order="host")
    assert matched(host, "GET", "x/special") == "aab"
    precedence = Router(functions, "")
    assert matched(precedence, "GET", "x/special") == "a_b"
    assert len(host.warnings) == len(precedence.warnings) == 1
    assert "'aab' (first by function name)" in host.warnings[0]


def test_methods_are_route_constraints_not_405() -> None:
    router = Router([fn("get_item", "items/{id}", {"GET"}), fn("post_any", "items/{*rest}", {"POST"})], "")
    assert matched(router, "GET", "items/1") == "get_item"
    assert matched(router, "POST", "items/1") == "post_any"
    assert router.match("DELETE", "items/1") is None
    assert router.match("HEAD", "items/1") is None  # the host does not derive HEAD from GET


def test_host_validation_errors() -> None:
    router = Router(
        [
            fn("admin_page", "administrators"),
            fn("runtime_info", "/runtime/x"),
            fn("one", "same", {"GET"}),
            fn("two", "SAME/", {"POST", "GET"}),
            fn("three", "same", {"DELETE"}),
            fn("bad", "a//b"),
        ],
        "api",
    )
    assert set(router.errors) == {"admin_page", "runtime_info", "two", "bad"}
    assert "'one'" in router.errors["two"]
    assert [r.function.name for r in router.routes] == ["one", "three"]


def test_no_warning_when_routes_cannot_overlap() -> None:
    router = Router(
        [fn("a", "items/{id:int}"), fn("b", "items/{name:alpha}"), fn("c", "items/{id}/history"), fn("d", "other")],
        "",
    )
    assert router.warnings == []


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ({"version": "2.0"}, "api"),
        ({"version": "2.0", "extensions": {"http": {"routePrefix": ""}}}, ""),
        ({"version": "2.0", "extensions": {"http": {"routePrefix": "api"}}}, "api"),
        ({"version": "2.0", "extensions": {"http": {"routePrefix": "/v1/"}}}, "v1"),
        ({"version": "2.0", "Extensions": {"HTTP": {"RoutePrefix": "x"}}}, "x"),
        ({"version": "2.0", "extensions": {"http": {"routePrefix": None}}}, "api"),
    ],
)
def test_route_prefix_from_host_json(tmp_path: Path, content: dict[str, object], expected: str) -> None:
    host_json = tmp_path / "host.json"
    host_json.write_text(json.dumps(content), encoding="utf-8")
    assert read_route_prefix(host_json) == expected


def test_path_decoding_keeps_encoded_slashes() -> None:
    assert decode_request_path("/a%20b/%E2%82%AC/c%2Fd/%2f") == "/a b/€/c%2Fd/%2f"
    assert decode_request_path("/bad%FF") == "/bad%FF"
    assert decode_request_path("/€".encode().decode("latin-1")) == "/€"  # unescaped UTF-8 in the raw path


def test_query_and_headers_are_joined_like_the_host() -> None:
    assert request_query(b"q=1&Q=2&empty=&flag&b=x+y&c=%C3%A9") == {"q": "1,2", "b": "x y", "c": "é"}
    scope = {"headers": [(b"X-A", b"1"), (b"x-a", b"2"), (b"Accept", b"*/*"), (b"x-empty", b"")]}
    assert request_headers(scope) == {"x-a": "1,2", "accept": "*/*", "x-empty": ""}


def test_local_settings_fill_only_unset_variables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = tmp_path / "local.settings.json"
    values = {"DEVHOST_T_NEW": "from-file", "DEVHOST_T_SET": "from-file", "DEVHOST_T_EMPTY": "from-file"}
    settings.write_text(json.dumps({"IsEncrypted": False, "Values": values}), encoding="utf-8")
    monkeypatch.delenv("DEVHOST_T_NEW", raising=False)
    monkeypatch.setenv("DEVHOST_T_SET", "from-env")
    monkeypatch.setenv("DEVHOST_T_EMPTY", "")
    assert sorted(load_local_settings(settings)) == ["DEVHOST_T_EMPTY", "DEVHOST_T_NEW"]
    assert os.environ["DEVHOST_T_NEW"] == "from-file"
    assert os.environ["DEVHOST_T_SET"] == "from-env"
    assert os.environ["DEVHOST_T_EMPTY"] == "from-file"
