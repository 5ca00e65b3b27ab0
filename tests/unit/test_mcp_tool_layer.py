"""The MCP tools' declared arguments agree with their contract models, and the tool layer turns the host's
invocation context into a call and every outcome into a CallToolResult; the dev host's MCP pieces
(input schema, return value binders) copy the extension."""

from __future__ import annotations

import json
from typing import Any

import pytest

import function_app
from functions.mcp import TOOLS, ToolCall, ToolSpec, read_invocation, run_tool
from shared import contract
from shared.errors import NotFound
from tools.devhost.mcp import index_mcp_tools, schema_from_properties, to_call_tool_result

SCHEMA_TYPES = {"string", "integer", "number", "boolean", "object", "array"}


def _field_type(schema: dict[str, Any], defs: dict[str, Any]) -> str:
    options = [s for s in schema.get("anyOf", [schema]) if s.get("type") != "null"]
    kinds = {("object" if "$ref" in s else s.get("type")) for s in options}
    assert len(kinds) == 1, schema
    return str(kinds.pop())


@pytest.mark.parametrize("name", sorted(TOOLS))
def test_declared_arguments_agree_with_the_contract_model(name: str) -> None:
    spec = TOOLS[name]
    model = getattr(contract, spec.model)
    schema = model.model_json_schema()
    fields = schema["properties"]
    declared = {arg.name: arg for arg in spec.args}
    # Every field of the model is an argument of the tool and nothing else is: a field added to the model
    # (agent_id, run_id, expiration_date ...) fails here until the tool declares it.
    assert set(declared) == set(fields), (name, set(fields) ^ set(declared))
    for arg in spec.args:
        assert arg.type in SCHEMA_TYPES
        field = fields[arg.name]
        if arg.array:  # the host's spelling of a list: the items' type, with isArray
            assert _field_type(field, schema.get("$defs", {})) == "array", (name, arg.name)
            field = next(s for s in field.get("anyOf", [field]) if s.get("type") == "array")["items"]
        assert arg.type == _field_type(field, schema.get("$defs", {})), (name, arg.name)
        assert arg.description
        if model.model_fields[arg.name].is_required():
            assert arg.required, (name, arg.name)


def test_by_id_tools_always_name_the_owner() -> None:
    for name in ("get_memory", "update_memory", "delete_memory"):
        assert {a.name for a in TOOLS[name].args if a.required} >= {"memory_id", "user_id"}


def test_the_host_invocation_context_becomes_a_call() -> None:
    raw = json.dumps(
        {
            "name": "add_memory",
            "arguments": {"user_id": "u", "content": "c"},
            "sessionid": "abc",
            "clientinfo": {"name": "client", "version": "1"},
            "transport": {"name": "http-streamable", "properties": {"headers": {"X-Tenant-Id": "t1"}}},
        }
    )
    call = read_invocation(raw)
    assert call == ToolCall("add_memory", {"user_id": "u", "content": "c"}, {"x-tenant-id": "t1"}, "abc")


def _result(text: str) -> dict[str, Any]:
    envelope = json.loads(text)
    assert envelope["type"] == "call_tool_result"
    return to_call_tool_result(text, use_result_schema=True) | {"_inner": json.loads(envelope["content"])}


def test_a_result_and_each_kind_of_failure_as_a_call_tool_result() -> None:
    spec = ToolSpec("probe", "a probe", "UserPath", (TOOLS["list_memories"].args[0],))

    def ok(call: ToolCall) -> Any:
        return call.parse()

    def missing(call: ToolCall) -> Any:
        raise NotFound("memory 'x' not found")

    def broken(call: ToolCall) -> Any:
        raise RuntimeError("secret detail")

    context = json.dumps({"name": "probe", "arguments": {"user_id": " alice "}})
    good = _result(run_tool(spec, ok, context))
    assert good["structuredContent"] == {"user_id": "alice"}
    assert "isError" not in good
    not_found = _result(run_tool(spec, missing, context))
    assert not_found["isError"] is True
    assert not_found["content"][0]["text"].startswith("not_found: memory 'x' not found")
    crash = _result(run_tool(spec, broken, context))
    assert crash["isError"] is True
    assert "secret detail" not in json.dumps(crash)
    assert crash["structuredContent"]["error"]["code"] == "internal_error"
    for bad in ("not json", json.dumps({"arguments": [1]}), json.dumps({"arguments": {"user_id": ""}})):
        refused = _result(run_tool(spec, ok, bad))
        assert refused["isError"] is True, bad


def test_the_dev_host_lists_the_app_tools_like_the_extension() -> None:
    from functions.openapi import indexed_functions

    tools, errors = index_mcp_tools(indexed_functions(function_app.app))
    assert errors == {}
    by_name = {tool.tool_name: tool for tool in tools}
    assert set(by_name) == set(TOOLS)
    search = by_name["search_memories"]
    assert search.use_result_schema and search.trigger_arg == "context"
    assert search.input_schema["required"] == ["user_id", "query"]
    assert search.input_schema["properties"]["limit"] == {
        "type": "integer",
        "description": "How many memories at most (1-100, default 10).",
    }


def test_input_schema_from_tool_properties() -> None:
    schema = schema_from_properties(
        [
            {"propertyName": "tags", "propertyType": "string", "description": "d", "isArray": True, "isRequired": True},
            {"PropertyName": "n", "PropertyType": "integer"},
            {"propertyName": "", "propertyType": "string"},
        ]
    )
    assert schema == {
        "type": "object",
        "properties": {
            "tags": {"type": "array", "items": {"type": "string"}, "description": "d"},
            "n": {"type": "integer", "description": ""},
        },
        "required": ["tags"],
    }


def test_return_value_binders() -> None:
    assert to_call_tool_result("plain", use_result_schema=False) == {"content": [{"type": "text", "text": "plain"}]}
    assert to_call_tool_result(None, use_result_schema=True) == {"content": []}
    text = json.dumps(
        {"type": "text", "content": json.dumps({"type": "text", "text": "hi"}), "structuredContent": "[1]"}
    )
    assert to_call_tool_result(text, use_result_schema=True) == {
        "content": [{"type": "text", "text": "hi"}],
        "structuredContent": [1],
    }
    multi = json.dumps({"type": "multi_content_result", "content": json.dumps([{"type": "text", "text": "a"}] * 2)})
    assert len(to_call_tool_result(multi, use_result_schema=True)["content"]) == 2
    with pytest.raises(ValueError):
        to_call_tool_result("not an envelope", use_result_schema=True)
