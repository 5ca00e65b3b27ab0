"""The memory tools for agents, served over MCP by the Functions host (`/runtime/webhooks/mcp`).

Each tool is a function on the MCP tool trigger and the twin of one REST endpoint: the same argument
names, validated by the same model of shared/contract.py, calling the same MemoryService method with
the same scope. A tool call runs through the invocation pipeline (functions/invocation.py: request id
from the call's `x-request-id` header, span, metric, log line, error mapping); `run_tool` reads the
invocation context, checks the arguments and renders the outcome as an MCP `CallToolResult`. A tool
body only builds its arguments and calls one service method.

The arguments a tool takes are declared once, in its `Arg`s: they become the trigger's
`toolProperties` (what `tools/list` shows) and the set of names a call may send. They are written out
rather than read from the pydantic models so that indexing the app builds no model (see
functions/http.py); tests/unit/test_mcp_tool_layer.py checks that they agree with the models.

Results use the host's `call_tool_result` passthrough (`useResultSchema`), the one shape in which a
worker can set `isError`: bad input is a tool error carrying the validation message, never a failed
invocation (which the host would turn into a generic error without the message).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from functions import invocation
from functions.http import blueprint
from functions.invocation import Failure
from shared.context import new_request_id
from shared.errors import ValidationFailed
from shared.runtime import get_memory_service

if TYPE_CHECKING:
    import azure.functions as func
    from pydantic import BaseModel

    from functions.caller import Caller

bp = blueprint()

# The trigger argument's name; the host binds the invocation context (JSON) to it.
TRIGGER_ARG = "context"


@dataclass(frozen=True)
class Arg:
    """One tool argument as the host's tool properties describe it."""

    name: str
    type: str  # a JSON Schema type: string, integer, number, boolean, object
    description: str
    required: bool = False
    array: bool = False

    def property(self) -> dict[str, Any]:
        return {
            "propertyName": self.name,
            "propertyType": self.type,
            "description": self.description,
            "isRequired": self.required,
            "isArray": self.array,
        }


@dataclass(frozen=True)
class ToolCall:
    """One tool invocation as the host hands it to the worker."""

    name: str
    arguments: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)  # the HTTP request's, lower-case names
    session_id: str | None = None
    model: str | None = None  # the tool's model in shared/contract.py

    def caller(self) -> Caller:
        """Who calls, from the tenant and user headers API Management sets (functions/caller.py):
        a tool acts in exactly the scope its REST twin would."""
        from functions.caller import caller_from_headers

        return caller_from_headers(self.headers)

    def parse(self, model_name: str | None = None) -> Any:
        """The arguments validated against the tool's model of shared/contract.py, like a REST body."""
        from pydantic import ValidationError

        from functions.http import validation_details
        from shared import contract

        model: type[BaseModel] = getattr(contract, model_name or self.model or "")
        try:
            return model.model_validate(self.arguments)
        except ValidationError as error:
            raise ValidationFailed("tool arguments failed validation", details=validation_details(error)) from None


def read_invocation(raw: object) -> ToolCall:
    """The host's ToolInvocationContext (JSON: name, arguments, sessionid, transport.properties.headers)."""
    data = json.loads(raw) if isinstance(raw, str | bytes | bytearray) else raw
    if not isinstance(data, Mapping):
        raise ValidationFailed("the tool invocation context is not a JSON object")
    arguments = data.get("arguments") or {}
    if not isinstance(arguments, Mapping):
        raise ValidationFailed(
            "tool arguments must be a JSON object", details=[{"loc": [], "msg": "expected object", "type": "dict_type"}]
        )
    transport = _mapping(data.get("transport"))
    headers = _mapping(_mapping(transport.get("properties")).get("headers"))
    session = data.get("sessionid") or data.get("sessionId") or transport.get("sessionId")
    return ToolCall(
        name=str(data.get("name") or ""),
        arguments=dict(arguments),
        headers={str(k).lower(): str(v) for k, v in headers.items()},
        session_id=str(session) if session else None,
    )


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def check_arguments(call: ToolCall, args: tuple[Arg, ...]) -> None:
    """Unknown names and missing required arguments, before any model sees them.

    The host refuses a call missing a required property itself (a JSON-RPC error), but older
    extension versions passed it through, so the tool checks too.
    """
    known = {arg.name for arg in args}
    details = [
        {"loc": [name], "msg": "unknown argument", "type": "extra_forbidden"}
        for name in call.arguments
        if name not in known
    ]
    details += [
        {"loc": [arg.name], "msg": "Field required", "type": "missing"}
        for arg in args
        if arg.required and call.arguments.get(arg.name) is None
    ]
    if details:
        raise ValidationFailed("tool arguments failed validation", details=details)


def error_text(error: Failure, request_id: str) -> str:
    """What an agent reads when a tool fails: the message, each detail, the request id."""
    parts = [f"{error.code}: {error.message}"]
    for detail in error.details:
        loc = ".".join(str(p) for p in detail.get("loc") or []) or "arguments"
        parts.append(f"{loc}: {detail.get('msg', '')}")
    retry = error.headers.get("Retry-After")
    if retry:
        parts.append(f"retry after {retry}s")
    return "; ".join(parts) + f" (request_id {request_id})"


def call_tool_result(data: Any, *, is_error: bool = False, text: str | None = None) -> str:
    """The worker's `call_tool_result` envelope: the host deserializes `content` as the CallToolResult."""
    result: dict[str, Any] = {
        "content": [{"type": "text", "text": text if text is not None else json.dumps(data, ensure_ascii=False)}],
        "structuredContent": data,
    }
    if is_error:
        result["isError"] = True
    return json.dumps(
        {"type": "call_tool_result", "content": json.dumps(result, ensure_ascii=False), "structuredContent": None},
        ensure_ascii=False,
    )


def _dump(data: Any) -> Any:
    from pydantic import BaseModel

    if isinstance(data, BaseModel):
        return data.model_dump(mode="json", exclude_none=True)
    return data


@dataclass(frozen=True)
class ToolSpec:
    """What one tool is: its name, what it says it does, the contract model and the arguments it takes."""

    name: str
    description: str
    model: str
    args: tuple[Arg, ...]

    def properties(self) -> str:
        return json.dumps([arg.property() for arg in self.args])


@dataclass(frozen=True)
class HeaderTrace:
    """The trace context of a tool call: the W3C headers of the HTTP request that carried it.

    The trigger's argument takes the name `context`, so the worker's own Context (and its
    `trace_context`) cannot be bound to a tool function; the request's headers are what is left.
    """

    trace_parent: str | None
    trace_state: str = ""


def run_tool(spec: ToolSpec, handler: Callable[[ToolCall], Any], raw: object) -> str:
    """One tool call through the invocation pipeline (functions/invocation.py), rendered as a CallToolResult."""
    try:
        call: ToolCall | None = replace(read_invocation(raw), model=spec.model)
        unreadable: Exception | None = None
    except Exception as error:  # answered as the tool's result, inside the pipeline
        call, unreadable = None, error
    headers = call.headers if call is not None else {}

    def work() -> str:
        if unreadable is not None:
            raise unreadable
        assert call is not None
        check_arguments(call, spec.args)
        return call_tool_result(_dump(handler(call)))

    return invocation.run(
        invocation.MCP,
        spec.name,
        new_request_id(headers.get("x-request-id")),
        HeaderTrace(headers.get("traceparent"), headers.get("tracestate", "")),
        work,
        tool_error,
        label=f"mcp {spec.name}",
    )


def tool_error(failure: Failure, request_id: str) -> str:
    """A failure as the tool's result (`isError`), which an agent reads; the invocation itself succeeds."""
    if not failure.expected:
        body: dict[str, Any] = {"error": {"code": failure.code, "message": "Internal error.", "details": []}}
        body["request_id"] = request_id
        text = f"internal_error: the tool failed; quote request_id {request_id} when reporting it"
        return call_tool_result(body, is_error=True, text=text)
    body = {
        "error": {"code": failure.code, "message": failure.message, "details": failure.details},
        "request_id": request_id,
    }
    return call_tool_result(body, is_error=True, text=error_text(failure, request_id))


TOOLS: dict[str, ToolSpec] = {}


def mcp_tool(
    blueprint_: func.Blueprint, name: str, description: str, model: str, *args: Arg
) -> Callable[[Callable[[ToolCall], Any]], Callable[[ToolCall], Any]]:
    """Registers `handler` as the MCP tool `name` (also the function's name) taking `args`, which
    `model` (a class of shared/contract.py) validates."""
    spec = ToolSpec(name, description, model, args)

    def register(handler: Callable[[ToolCall], Any]) -> Callable[[ToolCall], Any]:
        def run(context: str) -> str:
            return run_tool(spec, handler, context)

        run.__name__ = run.__qualname__ = name
        run.__doc__ = description
        run.__module__ = handler.__module__
        trigger = blueprint_.mcp_tool_trigger(
            arg_name=TRIGGER_ARG,
            tool_name=name,
            description=description,
            tool_properties=spec.properties(),
            use_result_schema=True,
        )
        blueprint_.function_name(name)(trigger(run))
        TOOLS[name] = spec
        return handler

    return register


# --- the arguments, once ---------------------------------------------------------------------------

USER_ID = Arg("user_id", "string", "The user whose memories are addressed; every call is scoped to it.", True)
MEMORY_ID = Arg("memory_id", "string", "The id of a memory (as returned by add_memory or search).", True)
CONTENT = Arg("content", "string", "The memory text, stored as given.", True)
METADATA = Arg(
    "metadata", "object", "Flat key/value metadata (strings, numbers, booleans); `category` feeds the stats."
)
AGENT_ID = Arg("agent_id", "string", "The agent the memories belong to (mem0's agent scope); optional.")
RUN_ID = Arg("run_id", "string", "The run or conversation the memories belong to (mem0's run scope); optional.")
EXPIRATION_DATE = Arg(
    "expiration_date", "string", "ISO date or datetime (UTC) after which the memory is never returned; optional."
)
ALLOW_DUPLICATES = Arg(
    "allow_duplicates", "boolean", "Store it even when it duplicates a current memory (default: no)."
)
INFER = Arg(
    "infer",
    "boolean",
    "true: the model extracts the facts the content states and reconciles them with the user's memories "
    "(add, supersede, invalidate or already known); default false: stored as given.",
)
PAGE_LIMIT = Arg("limit", "integer", "How many memories at most (1-1000, default LIST_PAGE_SIZE, 100).")
CURSOR = Arg("cursor", "string", "The next_cursor of the previous page: the memories older than its last one.")
QUERY = Arg("query", "string", "What to look for, in natural language.", True)
LIMIT = Arg("limit", "integer", "How many memories at most (1-100, default 10).")
THRESHOLD = Arg("threshold", "number", "Drop results scoring below this (0-1).")
AS_OF = Arg("as_of", "string", "RFC 3339 instant: what was true then; optional.")
SUPERSEDED = Arg("include_superseded", "boolean", "Also superseded and invalidated memories; optional.")
SUPERSEDES = Arg("supersedes", "string", "Ids of the user's current memories this one replaces; optional.", array=True)
FILTERS = Arg(
    "filters",
    "object",
    "Narrows the search: {metadata: {key: value}, categories: [..], created_after, created_before}.",
)


# --- the tools -------------------------------------------------------------------------------------


@mcp_tool(
    bp,
    "add_memory",
    "Store one memory for a user, as given (POST /api/memory/add).",
    "MemoryAddRequest",
    USER_ID,
    CONTENT,
    METADATA,
    AGENT_ID,
    RUN_ID,
    EXPIRATION_DATE,
    SUPERSEDES,
    ALLOW_DUPLICATES,
    INFER,
)
def add_memory(call: ToolCall) -> Any:
    from functions.memory import added_memory

    who = call.caller()
    body = call.parse()
    if body.infer:
        from functions.memory import inferred_add

        return inferred_add(who.scope(body.user_id), body)
    record = get_memory_service().add_memory(
        who.scope(body.user_id),
        body.content,
        body.metadata,
        agent_id=body.agent_id,
        run_id=body.run_id,
        expiration_date=body.expiration_date,
        supersedes=body.supersedes,
        allow_duplicates=body.allow_duplicates,
    )
    return added_memory(record, body.user_id, body.content)


@mcp_tool(
    bp,
    "search_memories",
    "Search a user's memories by meaning and keywords, best first (POST /api/memory/search).",
    "MemorySearchRequest",
    USER_ID,
    QUERY,
    LIMIT,
    THRESHOLD,
    FILTERS,
    AGENT_ID,
    RUN_ID,
    AS_OF,
    SUPERSEDED,
)
def search_memories(call: ToolCall) -> Any:
    who = call.caller()
    body = call.parse()
    return get_memory_service().search_with_relations(
        who.scope(body.user_id),
        body.query,
        body.limit,
        body.filters,
        body.threshold,
        agent_id=body.agent_id,
        run_id=body.run_id,
        validity=body.validity(),
    )


@mcp_tool(
    bp,
    "list_memories",
    "List a user's memories, newest first, a page at a time: pass the answer's next_cursor as cursor for the "
    "next page (GET /api/memory/user/{user_id}).",
    "MemoryListRequest",
    USER_ID,
    AGENT_ID,
    RUN_ID,
    PAGE_LIMIT,
    CURSOR,
    AS_OF,
    SUPERSEDED,
)
def list_memories(call: ToolCall) -> Any:
    from shared.contract import MemoryList

    who = call.caller()
    args = call.parse()
    service = get_memory_service()
    scope = who.scope(args.user_id)
    page = service.list_page(
        scope, args.agent_id, args.run_id, limit=args.limit, cursor=args.cursor, validity=args.validity()
    )
    return MemoryList(results=page.items, total=len(page.items), next_cursor=page.next_cursor)


@mcp_tool(
    bp,
    "get_memory",
    "Get one of the user's memories by id (GET /api/memory/memory/{memory_id}?user_id=).",
    "MemoryRef",
    MEMORY_ID,
    USER_ID,
)
def get_memory(call: ToolCall) -> Any:
    who = call.caller()
    ref = call.parse()
    return get_memory_service().get_memory(ref.memory_id, who.scope(ref.user_id))


@mcp_tool(
    bp,
    "update_memory",
    "Replace the text of one of the user's memories and merge metadata into it (PUT /api/memory/update).",
    "MemoryUpdateRequest",
    MEMORY_ID,
    CONTENT,
    METADATA,
    USER_ID,
)
def update_memory(call: ToolCall) -> Any:
    from shared.contract import UpdatedMemory

    who = call.caller()
    body = call.parse()
    record = get_memory_service().update_memory(body.memory_id, body.content, body.metadata, who.scope(body.user_id))
    return UpdatedMemory(memory_id=record.id, content=record.memory)


@mcp_tool(
    bp,
    "delete_memory",
    "Delete one of the user's memories, from every store (DELETE /api/memory/memory/{memory_id}?user_id=).",
    "MemoryRef",
    MEMORY_ID,
    USER_ID,
)
def delete_memory(call: ToolCall) -> Any:
    from shared.contract import DeletedMemory

    who = call.caller()
    ref = call.parse()
    return DeletedMemory(memory_id=get_memory_service().delete_memory(ref.memory_id, who.scope(ref.user_id)))
