"""The ASGI application: routes requests to the user functions like the Functions host, runs them like
the Python worker (async ones on the event loop, sync ones in its thread pool), and starts and stops the
host's other triggers and extensions with the server."""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from tools.devhost.invocation import (
    DevContext,
    DiscardedOut,
    TraceContext,
    call_in_worker_thread,
    invocation_tls,
    trace_context_from,
)
from tools.devhost.keys import FunctionKeys, request_key
from tools.devhost.messages import (
    Receive,
    Scope,
    Send,
    build_http_request,
    decode_request_path,
    request_headers,
    request_query,
    scope_raw_path,
    to_asgi_response,
)
from tools.devhost.routing import Router
from tools.devhost.tracing import RequestTrace, request_span

if TYPE_CHECKING:
    import azure.functions as func

    from tools.devhost.indexing import HttpFunction

log = logging.getLogger("devhost")

# The host answers an unhandled exception with an empty 500; a fixed small JSON body reads better in test
# failures and, like the host's, says nothing about the exception itself.
_INTERNAL_ERROR_BODY = json.dumps(
    {"error": "internal_server_error", "message": "The function failed with an unhandled exception (see the log)."}
).encode()


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.request":
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                return b"".join(chunks)
        elif message["type"] == "http.disconnect":
            return None


async def _send_response(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    if status < 200 or status in (204, 304):
        body = b""
    else:
        headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _default_max_workers() -> int | None:
    # The worker sizes its sync thread pool from PYTHON_THREADPOOL_THREAD_COUNT, else leaves it to
    # ThreadPoolExecutor (min(32, cpus + 4)) on Python >= 3.9.
    value = os.environ.get("PYTHON_THREADPOOL_THREAD_COUNT", "")
    try:
        count = int(value)
    except ValueError:
        return None
    return count if count >= 1 else None


class DevHostApp:
    """The ASGI application: routes requests to the user functions like the Functions host."""

    def __init__(
        self,
        router: Router,
        *,
        non_http_functions: Sequence[tuple[str, str]] = (),
        max_workers: int | None = None,
        function_directory: str | None = None,
        runners: Sequence[Any] = (),
        keys: FunctionKeys | None = None,
    ) -> None:
        self.router = router
        # None: keys are not checked (Core Tools locally); else every non-anonymous function needs one.
        self.keys = keys
        self.non_http_functions = list(non_http_functions)
        # Listeners of other triggers (queues.py): started and stopped with the server.
        self.runners = list(runners)
        self._executor = ThreadPoolExecutor(
            max_workers=max_workers if max_workers is not None else _default_max_workers(),
            thread_name_prefix="devhost-worker",
        )
        self._function_directory = function_directory or os.getcwd()
        self._warned_unframed_body = False
        # What the host's extensions add (mcp.py, timers.py): a webhook served at
        # `webhook_path`, and/or background work started and stopped with the host.
        self.extensions: list[Any] = []

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._handle_http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.close", "code": 1000})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                for extension in self.extensions:
                    if hasattr(extension, "start"):
                        await extension.start()
                for runner in self.runners:
                    runner.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                for runner in self.runners:
                    await asyncio.get_running_loop().run_in_executor(None, runner.stop)
                for extension in self.extensions:
                    if hasattr(extension, "stop"):
                        await extension.stop()
                self.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _handle_http(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = str(scope["method"]).upper()
        raw_path = scope_raw_path(scope)
        path = decode_request_path(raw_path)
        for extension in self.extensions:
            if getattr(extension, "webhook_path", None) and path.lower() == extension.webhook_path:
                await extension(scope, receive, send)
                return
        found = self.router.match(method, path[1:] if path.startswith("/") else path)
        if found is None:
            log.debug("no function matches %s %s", method, raw_path)
            await _send_response(send, 404, [], b"")
            return
        fn = found.route.function
        if self.keys is not None and not self.keys.grants(
            fn.name, fn.auth_level, request_key(request_headers(scope), request_query(scope.get("query_string", b"")))
        ):
            # The host answers a missing or wrong key with an empty 401 before the function runs.
            log.info("Unauthorized: '%s' is %s level and the request has no key that opens it", fn.name, fn.auth_level)
            await _send_response(send, 401, [], b"")
            return
        body = await _read_body(receive)
        if body is None:
            return  # the client went away before sending its body
        if (
            body
            and not self._warned_unframed_body
            and not any(k.lower() == b"content-length" for k, _ in scope.get("headers", []))
        ):
            self._warned_unframed_body = True
            log.warning(
                "a request body arrived without Content-Length (chunked); the Functions host forwards a body only "
                "when Content-Length > 0 (GrpcMessageConversionExtensions.ToRpcHttp), so it may arrive empty in Azure"
            )
        request = build_http_request(scope, body, found.params, raw_path)
        invocation_id = str(uuid.uuid4())
        log.info(
            "Executing 'Functions.%s' (Reason='This function was programmatically called via the host APIs.', Id=%s)",
            fn.name,
            invocation_id,
        )
        started = time.perf_counter()
        with request_span(fn.name, method, request.url, path, request.headers) as trace:
            try:
                result = await self._invoke(fn, request, invocation_id, trace)
                status, headers, payload = to_asgi_response(result)
            except asyncio.CancelledError:
                raise
            except BaseException:  # a failing function, even one raising SystemExit, must not take the host down
                log.exception(
                    "Executed 'Functions.%s' (Failed, Id=%s, Duration=%dms)",
                    fn.name,
                    invocation_id,
                    (time.perf_counter() - started) * 1000,
                )
                trace.finish(500)
                await _send_response(send, 500, [(b"content-type", b"application/json")], _INTERNAL_ERROR_BODY)
                return
            trace.finish(status, {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in headers})
        log.info(
            "Executed 'Functions.%s' (Succeeded, Id=%s, Duration=%dms)",
            fn.name,
            invocation_id,
            (time.perf_counter() - started) * 1000,
        )
        await _send_response(send, status, headers, payload)

    async def _invoke(
        self, fn: HttpFunction, request: func.HttpRequest, invocation_id: str, trace: RequestTrace | None = None
    ) -> object:
        kwargs: dict[str, object] = {fn.trigger_arg: request}
        if fn.takes_context:
            trace_context = (
                TraceContext(trace.trace_parent, trace.trace_state, {})
                if trace
                else trace_context_from(request.headers)
            )
            kwargs["context"] = DevContext(invocation_id, fn.name, self._function_directory, trace_context)
        for name in fn.output_bindings:
            kwargs[name] = DiscardedOut()
        if fn.is_async:
            # The worker awaits async functions on its event loop, not in the thread pool.
            invocation_tls.invocation_id = invocation_id
            result: object = await fn.user_function(**kwargs)
            return result
        call = functools.partial(call_in_worker_thread, fn.user_function, kwargs, invocation_id)
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    async def call_function(
        self,
        name: str,
        user_function: Callable[..., Any],
        kwargs: dict[str, Any],
        is_async: bool,
        reason: str = "This function was programmatically called via the host APIs.",
    ) -> object:
        """Run a non-HTTP function like the worker (sync ones in its thread pool), with the host's log lines."""
        invocation_id = str(uuid.uuid4())
        log.info("Executing 'Functions.%s' (Reason='%s', Id=%s)", name, reason, invocation_id)
        if "context" not in kwargs and "context" in inspect.signature(user_function).parameters:
            kwargs["context"] = DevContext(invocation_id, name, self._function_directory, trace_context_from({}))
        started = time.perf_counter()
        try:
            if is_async:
                invocation_tls.invocation_id = invocation_id
                result: object = await user_function(**kwargs)
            else:
                call = functools.partial(call_in_worker_thread, user_function, kwargs, invocation_id)
                result = await asyncio.get_running_loop().run_in_executor(self._executor, call)
        except BaseException:
            log.exception(
                "Executed 'Functions.%s' (Failed, Id=%s, Duration=%dms)",
                name,
                invocation_id,
                (time.perf_counter() - started) * 1000,
            )
            raise
        log.info(
            "Executed 'Functions.%s' (Succeeded, Id=%s, Duration=%dms)",
            name,
            invocation_id,
            (time.perf_counter() - started) * 1000,
        )
        return result
