"""The dev host's request span: what the Functions host's request telemetry is on Azure.

With `telemetryMode: OpenTelemetry` the host starts a SERVER span per invocation (the `requests`
row in Application Insights) and hands the function its W3C trace context. The dev host does the
same with whatever tracer provider the app configured in this process (the azure-monitor distro
when APPLICATIONINSIGHTS_CONNECTION_STRING is set), so local traces have the same shape: one
request, the function's dependency spans under it, one operation id. With no SDK provider (the
zero-setup run) nothing is started and the trace context is the incoming one or a fresh id, as before.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RequestTrace:
    """The trace context handed to the function, and the span to finish with the response."""

    trace_parent: str
    trace_state: str = ""
    span: Any = field(default=None, repr=False)

    def finish(self, status: int, headers: Mapping[str, str] | None = None) -> None:
        if self.span is None:
            return
        self.span.set_attribute("http.response.status_code", status)
        request_id = (headers or {}).get("x-request-id")
        if request_id:
            self.span.set_attribute("request_id", request_id)
        if status >= 500:
            from opentelemetry.trace import Status, StatusCode

            self.span.set_status(Status(StatusCode.ERROR))


def _sdk_tracing() -> bool:
    # An app that configured tracing has imported the SDK; one that did not pays no import here.
    if "opentelemetry.sdk.trace" not in sys.modules:
        return False
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    return isinstance(trace.get_tracer_provider(), TracerProvider)


@contextmanager
def request_span(
    function_name: str, method: str, url: str, path: str, headers: Mapping[str, str]
) -> Iterator[RequestTrace]:
    """A SERVER span for one invocation (when the process exports traces); yields its trace context."""
    incoming = headers.get("traceparent")
    if not _sdk_tracing():
        yield RequestTrace(
            incoming or f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01", headers.get("tracestate", "")
        )
        return
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    propagator = TraceContextTextMapPropagator()
    parent = propagator.extract({k: v for k, v in headers.items() if k in ("traceparent", "tracestate")})
    attributes = {"http.request.method": method, "url.full": url, "url.path": path, "faas.name": function_name}
    tracer = trace.get_tracer("devhost")
    with tracer.start_as_current_span(
        function_name, context=parent, kind=trace.SpanKind.SERVER, attributes=attributes
    ) as span:
        carrier: dict[str, str] = {}
        propagator.inject(carrier)
        yield RequestTrace(carrier["traceparent"], carrier.get("tracestate", ""), span)
