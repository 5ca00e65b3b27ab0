"""The dev host's MCP server: `/runtime/webhooks/mcp` built from the app's MCP tool trigger functions.

What the Functions MCP extension does (Azure/azure-functions-mcp-extension, "extension" below), so
`func start`, Azure and the dev host answer an MCP client alike. It knows no tool by name: the tools
are the indexed functions whose trigger is `mcpToolTrigger`, described by their binding (toolName,
description, toolProperties or a worker inputSchema, useResultSchema, metadata).

Copied from the extension (sources next to each rule):
- Streamable HTTP, stateless: POST only (405 otherwise; Http/StreamableHttpRequestHandler.cs); the
  client must accept both application/json and text/event-stream (406 with a JSON-RPC error); a body
  that is not one JSON-RPC message is 400. `initialize` hands out an `Mcp-Session-Id`; a later request
  may carry it or not, nothing is kept between requests. Responses are one SSE `message` event;
  notifications and client responses get 202 with no body.
- Capabilities tools, resources and prompts, server name and version from host.json
  `extensions.mcp.serverName`/`serverVersion` (default "Azure Functions MCP server" / "1.0.0") and
  `instructions` (Configuration/FunctionsMcpServerOptionsSetup.cs, McpOptions.cs).
- The input schema from the tool properties exactly as PropertyBasedToolInputSchema.cs writes it;
  a call missing a required property is refused before the function runs with InvalidParams and the
  extension's message (ToolInputSchema.cs); an unknown tool is InvalidParams too.
- The function gets the ToolInvocationContext as JSON (name, arguments, sessionid, transport with the
  request headers; Trigger/McpToolTriggerBinding.cs). Its return value goes through the library's
  converter, then through ToolReturnValueBinder (useResultSchema: `call_tool_result` passthrough or a
  content block) or SimpleToolReturnValueBinder (the text as one text block).
- A function that fails is a tool error with a generic message (the MCP C# SDK's handling of a tool
  exception), never a transport failure.

Not copied: function keys. In Azure the endpoint takes the `mcp_extension` system key (header
`x-functions-key` or `?code=`); the dev host, like Core Tools locally, checks no key.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import azure.functions as func

log = logging.getLogger("devhost.mcp")

WEBHOOK_PATH = "/runtime/webhooks/mcp"
SESSION_HEADER = "mcp-session-id"
PROTOCOL_VERSIONS = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS, INTERNAL_ERROR = -32700, -32600, -32601, -32602, -32603

Scope = Any
Receive = Callable[[], Awaitable[Any]]
Send = Callable[[Any], Awaitable[None]]
# (function name, user function, keyword arguments, is_async) -> the function's return value
Invoker = Callable[[str, Callable[..., Any], dict[str, Any], bool], Awaitable[object]]


class McpProtocolError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class McpTool:
    """One MCP tool trigger function of the app, as the extension registers it."""

    function_name: str
    tool_name: str
    description: str
    input_schema: dict[str, Any]
    required: tuple[str, ...]
    use_result_schema: bool
    trigger_arg: str
    user_function: Callable[..., Any] = field(repr=False)
    is_async: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)

    def listing(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"name": self.tool_name, "inputSchema": self.input_schema}
        if self.description:
            entry["description"] = self.description
        if self.metadata:
            entry["_meta"] = self.metadata
        return entry


def schema_from_properties(properties: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The input schema the extension writes for tool properties (PropertyBasedToolInputSchema)."""
    props: dict[str, Any] = {}
    required: list[str] = []
    for prop in properties:
        name = str(_ci(prop, "propertyName") or "").strip()
        if not name:
            continue
        typed: dict[str, Any] = {"type": str(_ci(prop, "propertyType") or "string")}
        enum = _ci(prop, "enumValues")
        if enum:
            typed["enum"] = [str(v) for v in enum]
        entry = {"type": "array", "items": typed} if _ci(prop, "isArray") else dict(typed)
        entry["description"] = str(_ci(prop, "description") or "")
        props[name] = entry
        if _ci(prop, "isRequired") and name not in required:
            required.append(name)
    return {"type": "object", "properties": props, "required": required}


def _ci(mapping: Mapping[str, Any], key: str) -> Any:
    # The extension reads binding JSON case-insensitively (PropertyNameCaseInsensitive).
    for k, v in mapping.items():
        if k.lower() == key.lower():
            return v
    return None


def _tool_from_binding(fn: func.Function, binding: Mapping[str, Any]) -> McpTool:
    import inspect

    name = fn.get_function_name() or fn.get_user_function().__name__
    if _ci(binding, "useWorkerInputSchema"):
        schema = json.loads(str(_ci(binding, "inputSchema") or "null"))
        if not isinstance(schema, dict) or schema.get("type") != "object":
            raise ValueError("InputSchema is null or invalid: it must be a JSON schema object of type 'object'")
        required = tuple(str(r) for r in schema.get("required") or ())
    else:
        raw = _ci(binding, "toolProperties")
        properties = json.loads(raw) if isinstance(raw, str) and raw.strip() else []
        if not isinstance(properties, list):
            raise ValueError("toolProperties must be a JSON list")
        schema = schema_from_properties(properties)
        required = tuple(schema["required"])
    metadata_raw = _ci(binding, "metadata")
    metadata = json.loads(metadata_raw) if isinstance(metadata_raw, str) and metadata_raw.strip() else {}
    user_function = fn.get_user_function()
    return McpTool(
        function_name=name,
        tool_name=str(_ci(binding, "toolName") or name),
        description=str(_ci(binding, "description") or ""),
        input_schema=schema,
        required=required,
        use_result_schema=bool(_ci(binding, "useResultSchema")),
        trigger_arg=str(binding.get("name") or "context"),
        user_function=user_function,
        is_async=inspect.iscoroutinefunction(user_function),
        metadata=metadata if isinstance(metadata, dict) else {},
    )


def index_mcp_tools(functions: Sequence[func.Function]) -> tuple[list[McpTool], dict[str, str]]:
    """The MCP tool trigger functions among `functions` and the errors of those the host would refuse."""
    tools: list[McpTool] = []
    errors: dict[str, str] = {}
    seen: dict[str, str] = {}
    for fn in functions:
        bindings = json.loads(fn.get_function_json()).get("bindings", [])
        trigger = next((b for b in bindings if str(b.get("type", "")).lower() == "mcptooltrigger"), None)
        if trigger is None:
            continue
        name = fn.get_function_name() or fn.get_user_function().__name__
        try:
            tool = _tool_from_binding(fn, trigger)
        except (ValueError, json.JSONDecodeError) as exc:
            errors[name] = str(exc)
            continue
        if tool.tool_name in seen:
            errors[name] = f"the tool name '{tool.tool_name}' is already used by function '{seen[tool.tool_name]}'"
            continue
        seen[tool.tool_name] = name
        tools.append(tool)
    return tools, errors


def read_mcp_options(host_config: Mapping[str, Any] | None) -> dict[str, Any]:
    extensions = _ci(host_config or {}, "extensions") or {}
    options = _ci(extensions, "mcp") if isinstance(extensions, Mapping) else None
    return dict(options) if isinstance(options, Mapping) else {}


def _encode_return(result: object) -> object:
    """The value the host receives: what the library's mcpToolTrigger converter makes of the return value."""
    from azure.functions.mcp import _MCPToolTriggerConverter

    datum = _MCPToolTriggerConverter.encode(result, expected_type=None)
    value = datum.value
    return value.decode("utf-8", "replace") if isinstance(value, bytes | bytearray) else value


def to_call_tool_result(value: object, use_result_schema: bool) -> dict[str, Any]:
    """ToolReturnValueBinder / SimpleToolReturnValueBinder (and the listener's empty result for null)."""
    if value is None:
        return {"content": []}
    if not use_result_schema:
        return {"content": [{"type": "text", "text": str(value)}]}
    if not isinstance(value, str):
        raise ValueError("Expected JSON string.")
    envelope = json.loads(value)
    if not isinstance(envelope, dict) or not isinstance(_ci(envelope, "type"), str):
        raise ValueError("The function return value could not be deserialized to a valid McpToolResult.")
    kind = str(_ci(envelope, "type"))
    content = _ci(envelope, "content")
    if kind.lower() == "call_tool_result":
        result = json.loads(content) if isinstance(content, str) else None
        if not isinstance(result, dict):
            raise ValueError("Failed to deserialize CallToolResult.")
        result.setdefault("content", [])
        return result
    blocks = json.loads(content) if isinstance(content, str) else None
    if kind.lower() == "multi_content_result":
        if not isinstance(blocks, list):
            raise ValueError("Failed to deserialize multi-content result.")
    else:
        if not isinstance(blocks, dict):
            raise ValueError(f"Failed to deserialize content block type '{kind}'.")
        blocks = [blocks]
    if not blocks:
        raise ValueError("No content items were produced from the McpToolResult.")
    out: dict[str, Any] = {"content": blocks}
    structured = _ci(envelope, "structuredContent")
    if isinstance(structured, str) and structured:
        out["structuredContent"] = json.loads(structured)
    return out


class McpEndpoint:
    """The `/runtime/webhooks/mcp` handler over the indexed tools; `invoke` runs a function like the worker."""

    webhook_path = WEBHOOK_PATH

    def __init__(self, tools: Sequence[McpTool], invoke: Invoker, options: Mapping[str, Any] | None = None) -> None:
        self.tools = {tool.tool_name: tool for tool in tools}
        self.invoke = invoke
        opts = dict(options or {})
        self.server_info = {
            "name": str(_ci(opts, "serverName") or "Azure Functions MCP server"),
            "version": str(_ci(opts, "serverVersion") or "1.0.0"),
        }
        self.instructions = _ci(opts, "instructions")
        self.instance_id = uuid.uuid4().hex

    def serves(self, function_name: str) -> bool:
        return any(tool.function_name == function_name for tool in self.tools.values())

    def describe(self, base_url: str) -> list[str]:
        lines = [f"        MCP server endpoint: {base_url}{WEBHOOK_PATH}  (streamable HTTP)"]
        for tool in self.tools.values():
            lines.append(f"        {tool.function_name}: mcpToolTrigger (tool '{tool.tool_name}')")
        return lines

    # --- HTTP ---

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if str(scope["method"]).upper() != "POST":
            await _respond(send, 405, [], b"")
            return
        headers = _headers(scope)
        accept = headers.get("accept", "").lower()
        if "application/json" not in accept or "text/event-stream" not in accept:
            await _json_error(
                send, 406, "Not Acceptable: Client must accept both application/json and text/event-stream"
            )
            return
        body = await _read(receive)
        if body is None:
            return
        try:
            message = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            message = None
        if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
            await _json_error(send, 400, "Bad Request: The POST body did not contain a valid JSON-RPC message.")
            return
        session = headers.get(SESSION_HEADER)
        if session is not None and not self._valid_session(session):
            await _json_error(send, 400, "Invalid client state.")
            return
        if "method" not in message or "id" not in message:
            await _respond(send, 202, [], b"")  # a notification, or the client's response to a server request
            return
        extra: list[tuple[bytes, bytes]] = []
        if message["method"] == "initialize":
            session = f"{uuid.uuid4().hex}.{self.instance_id}"
            extra.append((b"mcp-session-id", session.encode("ascii")))
        reply = await self.handle_request(message, headers, session)
        event = f"event: message\ndata: {json.dumps(reply, ensure_ascii=False)}\n\n".encode()
        sse = [
            (b"content-type", b"text/event-stream"),
            (b"cache-control", b"no-cache,no-store"),
            (b"content-encoding", b"identity"),
        ]
        await _respond(send, 200, sse + extra, event)

    @staticmethod
    def _valid_session(session: str) -> bool:
        # The extension protects its client state; here a session id only has to look like one it handed out.
        client, _, instance = session.partition(".")
        return len(client) == 32 and bool(instance) and all(c in "0123456789abcdef" for c in client)

    # --- JSON-RPC ---

    async def handle_request(
        self, message: Mapping[str, Any], headers: Mapping[str, str], session: str | None
    ) -> dict[str, Any]:
        request_id = message.get("id")
        raw_params = message.get("params")
        params: Mapping[str, Any] = raw_params if isinstance(raw_params, dict) else {}
        try:
            result = await self._dispatch(str(message.get("method")), params, headers, session)
        except McpProtocolError as error:
            return {"jsonrpc": "2.0", "id": request_id, "error": {"code": error.code, "message": error.message}}
        return {"jsonrpc": "2.0", "id": request_id, "result": result}

    async def _dispatch(
        self, method: str, params: Mapping[str, Any], headers: Mapping[str, str], session: str | None
    ) -> dict[str, Any]:
        if method == "initialize":
            asked = params.get("protocolVersion")
            version = asked if asked in PROTOCOL_VERSIONS else PROTOCOL_VERSIONS[-1]
            result: dict[str, Any] = {
                "protocolVersion": version,
                "capabilities": {"tools": {}, "resources": {}, "prompts": {}},
                "serverInfo": dict(self.server_info),
            }
            if self.instructions:
                result["instructions"] = str(self.instructions)
            return result
        if method == "ping":
            return {}
        if method == "tools/list":
            return {"tools": [tool.listing() for tool in self.tools.values()]}
        if method == "tools/call":
            return await self._call_tool(params, headers, session)
        if method == "resources/list":
            return {"resources": []}
        if method == "resources/templates/list":
            return {"resourceTemplates": []}
        if method == "prompts/list":
            return {"prompts": []}
        raise McpProtocolError(METHOD_NOT_FOUND, f"Method '{method}' is not available.")

    async def _call_tool(
        self, params: Mapping[str, Any], headers: Mapping[str, str], session: str | None
    ) -> dict[str, Any]:
        name = params.get("name")
        tool = self.tools.get(name) if isinstance(name, str) else None
        if tool is None:
            raise McpProtocolError(INVALID_PARAMS, f"Unknown tool: '{name}'")
        arguments = params.get("arguments")
        if arguments is not None and not isinstance(arguments, dict):
            raise McpProtocolError(INVALID_PARAMS, "The tool arguments must be a JSON object.")
        args = arguments or {}
        missing = [p for p in tool.required if args.get(p) is None]
        if missing:
            raise McpProtocolError(
                INVALID_PARAMS,
                f"One or more required tool properties are missing values. Please provide: {', '.join(missing)}",
            )
        client, _, _ = (session or "").partition(".")
        context: dict[str, Any] = {"name": tool.tool_name, "arguments": args}
        if client:
            context["sessionid"] = client
        transport: dict[str, Any] = {"name": "http-streamable", "properties": {"headers": dict(headers)}}
        if session:
            transport["sessionId"] = session
        context["transport"] = transport
        try:
            value = await self.invoke(
                tool.function_name, tool.user_function, {tool.trigger_arg: json.dumps(context)}, tool.is_async
            )
            return to_call_tool_result(_encode_return(value), tool.use_result_schema)
        except Exception:
            log.exception("the MCP tool '%s' (function '%s') failed", tool.tool_name, tool.function_name)
            return {
                "content": [{"type": "text", "text": f"An error occurred invoking '{tool.tool_name}'."}],
                "isError": True,
            }


async def _read(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.request":
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                return b"".join(chunks)
        elif message["type"] == "http.disconnect":
            return None


def _headers(scope: Scope) -> dict[str, str]:
    # As the host hands headers on: lower-case names, repeated values joined with ','.
    headers: dict[str, str] = {}
    for key, value in scope.get("headers", []):
        name, text = key.decode("latin-1").lower(), value.decode("latin-1")
        headers[name] = f"{headers[name]},{text}" if name in headers else text
    return headers


async def _respond(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    if status >= 200 and status not in (204, 304):
        headers = [*headers, (b"content-length", str(len(body)).encode())]
    else:
        body = b""
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _json_error(send: Send, status: int, message: str, code: int = -32000) -> None:
    body = json.dumps({"jsonrpc": "2.0", "error": {"code": code, "message": message}}).encode()
    await _respond(send, status, [(b"content-type", b"application/json")], body)
