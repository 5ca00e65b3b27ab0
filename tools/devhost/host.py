"""The dev host assembled from an app: its HTTP routes, MCP tools, timer and queue triggers, and keys."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from functions.hostjson import DEFAULT_ROUTE_PREFIX
from tools.devhost.asgi import DevHostApp
from tools.devhost.indexing import fresh_functions, index_functions
from tools.devhost.routing import RouteOrder, Router

if TYPE_CHECKING:
    import azure.functions as func

    from tools.devhost.keys import FunctionKeys

log = logging.getLogger("devhost")


def create_asgi_app(
    app: func.FunctionApp,
    route_prefix: str = DEFAULT_ROUTE_PREFIX,
    *,
    route_order: RouteOrder = "precedence",
    max_workers: int | None = None,
    host_config: Mapping[str, Any] | None = None,
    state_dir: str | os.PathLike[str] | None = None,
    host_json: str | os.PathLike[str] | None = None,
    queue_lease: float | None = None,
    keys: FunctionKeys | None = None,
) -> DevHostApp:
    """Index `app` and return the ASGI application serving its HTTP functions under `route_prefix`,
    its MCP tools at /runtime/webhooks/mcp, running its timer triggers while it is up, and its queue
    triggers with the options of `host_json` (queues.py).

    Functions the host would put in error are left out and logged, as are routing warnings. `state_dir`
    is what the host keeps in storage (timer leases and schedule status); see `default_state_dir`.
    With `keys`,
    function keys are enforced by auth level as the host does in Azure; without, none is checked.
    """
    from datetime import UTC, datetime

    from tools.devhost.mcp import McpEndpoint, index_mcp_tools, read_mcp_options
    from tools.devhost.queues import DEFAULT_LEASE, build_queue_runner
    from tools.devhost.timers import TimerRunner, index_timers

    queues = build_queue_runner(app, host_json, lease=queue_lease or DEFAULT_LEASE)
    functions, others = index_functions(app)
    router = Router(functions, route_prefix, route_order)
    for name, error in router.errors.items():
        log.error("The '%s' function is in error: %s", name, error)
    for warning in router.warnings:
        log.warning("%s", warning)
    asgi_app = DevHostApp(router, non_http_functions=others, max_workers=max_workers, runners=[queues], keys=keys)
    indexed = fresh_functions(app)
    tools, tool_errors = index_mcp_tools(indexed)
    for name, error in tool_errors.items():
        router.errors[name] = error
        log.error("The '%s' function is in error: %s", name, error)
    if tools:
        asgi_app.extensions.append(McpEndpoint(tools, asgi_app.call_function, read_mcp_options(host_config)))
    timers, timer_errors = index_timers(indexed, datetime.now(UTC))
    for name, error in timer_errors.items():
        router.errors[name] = error
        log.error("The '%s' function is in error: %s", name, error)
    if timers:
        folder = Path(state_dir) if state_dir is not None else default_state_dir()
        asgi_app.extensions.append(TimerRunner(timers, asgi_app.call_function, folder))
    return asgi_app


def default_state_dir() -> Path:
    """DEVHOST_STATE_DIR, else .devhost/ in the working folder: dev hosts sharing it share timer leases,
    as function apps sharing a storage account do."""
    return Path(os.environ.get("DEVHOST_STATE_DIR") or Path.cwd() / ".devhost")
