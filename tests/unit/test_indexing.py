"""The app indexes like the Functions host indexes it: unique names, every contracted route."""

from __future__ import annotations

import subprocess
import sys

import function_app
from functions.openapi import indexed_functions

# Every route and method of API.md sections 1-3, plus our additions.
CONTRACT = {
    ("POST", "api/chat/message"),
    ("POST", "api/chat/search-memories"),
    ("GET", "api/chat/memories/{user_id}"),
    ("DELETE", "api/chat/memory/{memory_id}"),
    ("DELETE", "api/chat/memories/{user_id}"),
    ("POST", "api/memory/add"),
    ("POST", "api/memory/batch-add"),
    ("POST", "api/memory/search"),
    ("GET", "api/memory/user/{user_id}"),
    ("PUT", "api/memory/update"),
    ("DELETE", "api/memory/memory/{memory_id}"),
    ("DELETE", "api/memory/user/{user_id}"),
    ("GET", "api/memory/stats/{user_id}"),
    ("GET", "health"),
    ("GET", "metrics"),
    ("GET", "{root:maxlength(0)?}"),
    ("GET", "docs"),
    ("GET", "openapi.json"),
}
ADDITIONS = {
    ("GET", "api/memory/memory/{memory_id}"),
    ("GET", "api/memory/memory/{memory_id}/history"),
    ("GET", "api/memory/export/{user_id}"),
    ("GET", "api/memory/events/{event_id}"),
}
# Functions of other triggers, by trigger type and what it listens to.
NON_HTTP = {("queueTrigger", "memory-ingest")}
ANONYMOUS = {"health", "{root:maxlength(0)?}", "docs", "openapi.json", "docs/assets/{name}"}


def _http_functions() -> list[object]:
    return [fn for fn in indexed_functions(function_app.app) if fn.get_trigger().get_binding_name() == "httpTrigger"]


def _routes() -> dict[tuple[str, str], object]:
    table = {}
    for fn in _http_functions():
        trigger = fn.get_trigger()
        for method in trigger.methods:
            table[(str(method.value), trigger.route)] = fn
    return table


def test_get_functions_validates_and_names_are_unique() -> None:
    functions = indexed_functions(function_app.app)
    names = [fn.get_function_name() for fn in functions]
    assert len(names) == len(set(names))
    assert all(name and name.isidentifier() for name in names)


def test_every_contracted_route_and_method_is_served() -> None:
    served = set(_routes())
    assert served >= CONTRACT | ADDITIONS, sorted((CONTRACT | ADDITIONS) - served)


def test_the_queue_trigger_is_the_ingestion_queue() -> None:
    others = {
        (fn.get_trigger().get_binding_name(), fn.get_trigger().queue_name)
        for fn in indexed_functions(function_app.app)
        if fn.get_trigger().get_binding_name() == "queueTrigger"
    }
    assert others == NON_HTTP


def test_the_expiry_purge_is_a_timer_that_does_not_run_on_startup() -> None:
    timers = [fn for fn in indexed_functions(function_app.app) if fn.get_trigger().get_binding_name() == "timerTrigger"]
    assert [fn.get_function_name() for fn in timers] == ["memory_purge_expired"]
    trigger = timers[0].get_trigger()
    assert trigger.schedule == "0 0 * * * *" and not trigger.run_on_startup


def test_one_method_per_function_and_auth_levels() -> None:
    for fn in _http_functions():
        trigger = fn.get_trigger()
        assert len(trigger.methods) == 1, fn.get_function_name()
        level = str(trigger.auth_level.value).upper()
        expected = "ANONYMOUS" if trigger.route in ANONYMOUS else "FUNCTION"
        assert level == expected, (fn.get_function_name(), level)


def test_the_mcp_tools_are_indexed() -> None:
    kinds = {fn.get_function_name(): fn.get_trigger().get_binding_name() for fn in indexed_functions(function_app.app)}
    tools = {name for name, kind in kinds.items() if kind == "mcpToolTrigger"}
    assert tools == {"add_memory", "search_memories", "list_memories", "get_memory", "update_memory", "delete_memory"}


def test_import_does_no_io_and_loads_no_model() -> None:
    heavy = (
        "mem0",
        "fastembed",
        "onnxruntime",
        "qdrant_client",
        "chromadb",
        "openai",
        "neo4j",
        "pydantic",
        "shared.contract",
    )
    code = f"import sys, function_app; print(','.join(m for m in {heavy!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"imported at indexing time: {out.stdout.strip()}"
