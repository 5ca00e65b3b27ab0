"""The service's one tracer: a span around every call into a dependency, children of the request's span.

Tracing is on only when the app exports telemetry (`APPLICATIONINSIGHTS_CONNECTION_STRING`, see
`shared.observability.logs.configure_logging`). Until then every helper here is a no-op that imports
nothing, so the zero-setup run pays nothing for it.

The request's span is not ours: on Azure it is the Functions host's request telemetry
(`telemetryMode: OpenTelemetry` in host.json), in the dev host the dev host's own span. Either way it
reaches the worker as `context.trace_context` (W3C traceparent), and `invocation_span` (opened by
functions/invocation.py for every trigger) makes it the parent of everything the invocation does, so
host and worker telemetry share one operation id.

What spans may carry: operation names, store kinds, counts, model names, token counts, the request
id. Never a memory's text, a message or a query (tests/e2e/test_telemetry.py sends a canary through
every path and looks for it in every exported envelope).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from shared.context import request_id_var

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

TRACER_NAME = "memory_layer"
REQUEST_ID_ATTRIBUTE = "request_id"

_enabled = False

AttributeValue = str | bool | int | float


def enable() -> None:
    """Called once the tracer provider exports (after `configure_azure_monitor`)."""
    global _enabled
    _enabled = True


def is_enabled() -> bool:
    return _enabled


class _NoSpan:
    """What a span helper yields while tracing is off: accepts attributes and drops them."""

    def set_attribute(self, key: str, value: Any) -> None:
        return None

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        return None

    def add_event(self, name: str, attributes: Mapping[str, Any] | None = None) -> None:
        return None


NO_SPAN = _NoSpan()


@contextlib.contextmanager
def dependency_span(
    name: str, attributes: Mapping[str, AttributeValue | None] | None = None, *, remote: bool = True
) -> Iterator[Any]:
    """A span around one call into a dependency (CLIENT, or INTERNAL for an in-process engine).

    The exception a call raises is recorded on its span (type and message: messages the service
    builds never hold user text) and the span is marked failed.
    """
    if not _enabled:
        yield NO_SPAN
        return
    from opentelemetry import trace

    kind = trace.SpanKind.CLIENT if remote else trace.SpanKind.INTERNAL
    clean = {key: value for key, value in (attributes or {}).items() if value is not None}
    with trace.get_tracer(TRACER_NAME).start_as_current_span(name, kind=kind, attributes=clean) as span:
        yield span


def current_span() -> Any:
    """The span of the call under way (a no-op one while tracing is off)."""
    if not _enabled:
        return NO_SPAN
    from opentelemetry import trace

    return trace.get_current_span()


# The OpenTelemetry FaaS trigger of each trigger kind (an MCP tool call is neither of the others).
_FAAS_TRIGGER = {"http": "http", "queue": "pubsub", "timer": "timer"}


@contextlib.contextmanager
def invocation_span(function: str, trigger: str, trace_context: Any) -> Iterator[Any]:
    """The invocation's own span, a child of the host's (`trace_context`: its W3C traceparent/tracestate).

    On Azure the host starts a span for every invocation and hands its context to the worker; this
    span, under it, is where the worker's facts go (the request id, the outcome). Without a parent
    (a trigger whose host gives none) the span is the invocation's root: a SERVER span, or a
    CONSUMER one for a queue message, so Application Insights shows it as a request.
    """
    if not _enabled:
        yield NO_SPAN
        return
    from opentelemetry import context, trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    parent = getattr(trace_context, "trace_parent", None) if trace_context is not None else None
    token = None
    if parent:
        carrier = {"traceparent": parent, "tracestate": getattr(trace_context, "trace_state", "") or ""}
        token = context.attach(TraceContextTextMapPropagator().extract(carrier))
    if token is not None:
        kind = trace.SpanKind.INTERNAL
    else:
        kind = trace.SpanKind.CONSUMER if trigger == "queue" else trace.SpanKind.SERVER
    attributes = {"faas.trigger": _FAAS_TRIGGER.get(trigger, "other"), "faas.name": function}
    try:
        # Not recorded by the SDK: an exception's message may hold user text; the pipeline sets the outcome.
        with trace.get_tracer(TRACER_NAME).start_as_current_span(
            function, kind=kind, attributes=attributes, record_exception=False, set_status_on_exception=False
        ) as span:
            yield span
    finally:
        if token is not None:
            context.detach(token)


def end_invocation_span(span: Any, status: int, code: str | None, error_type: str | None) -> None:
    """The outcome on an invocation's span: its status, the error code, failed at 500 and above."""
    if not _enabled:
        return
    span.set_attribute("memory_layer.status_code", status)
    if code:
        span.set_attribute("memory_layer.error_code", code)
    if error_type:
        span.set_attribute("error.type", error_type)
    if status >= 500:
        from opentelemetry.trace import Status, StatusCode

        span.set_status(Status(StatusCode.ERROR))


def request_id_processor() -> SpanProcessor:
    """A span processor that stamps every span started during a request with the request id."""
    from opentelemetry.sdk.trace import SpanProcessor

    class RequestIdSpanProcessor(SpanProcessor):
        def on_start(self, span: Span, parent_context: Any = None) -> None:
            request_id = request_id_var.get()
            if request_id != "-":
                span.set_attribute(REQUEST_ID_ATTRIBUTE, request_id)

        def on_end(self, span: ReadableSpan) -> None:
            return None

    return RequestIdSpanProcessor()
