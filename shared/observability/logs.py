"""Logging for the service: every record carries the request id; Application Insights export (logs,
the spans of shared/observability/tracing.py, the metrics of meters.py) is switched on only when a
connection string is configured (the exporter raises without one)."""

from __future__ import annotations

import atexit
import logging
import os

from shared.context import RequestIdLogFilter, request_id_var

_configured = False


class RequestIdFormatter(logging.Formatter):
    """The console's own format, with ` [request_id=…]` ending the first line of a request's records.

    The 500 message asks to quote the request id, so every line a request logs must show it; the
    host's (or the dev host's) format is kept as it is around it.
    """

    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        text = self.inner.format(record)
        request_id = getattr(record, "request_id", None) or request_id_var.get()
        if not request_id or request_id == "-" or "request_id=" in text:
            return text
        first, newline, rest = text.partition("\n")
        return f"{first} [request_id={request_id}]{newline}{rest}"


def configure_logging() -> None:
    global _configured
    if _configured:
        return
    _configured = True
    level = os.environ.get("LOG_LEVEL", "INFO").upper()
    service_logger = logging.getLogger("memory_layer")
    for name in ("memory_layer", "shared", "functions"):
        logging.getLogger(name).setLevel(level)
    request_filter = RequestIdLogFilter()
    root = logging.getLogger()
    if not any(isinstance(f, RequestIdLogFilter) for f in root.filters):
        root.addFilter(request_filter)
    for handler in root.handlers:
        handler.addFilter(request_filter)
        if not isinstance(handler.formatter, RequestIdFormatter):
            handler.setFormatter(RequestIdFormatter(handler.formatter))
    service_logger.addFilter(request_filter)
    if os.environ.get("APPLICATIONINSIGHTS_CONNECTION_STRING"):
        try:
            from azure.monitor.opentelemetry import configure_azure_monitor
        except ImportError:
            service_logger.warning(
                "APPLICATIONINSIGHTS_CONNECTION_STRING is set but azure-monitor-opentelemetry "
                "is not installed; telemetry export is off"
            )
            return
        # Application Insights runs with local auth disabled: export with the app's managed identity.
        credential = None
        if os.environ.get("AZURE_CLIENT_ID"):
            from azure.identity import ManagedIdentityCredential

            credential = ManagedIdentityCredential(client_id=os.environ["AZURE_CLIENT_ID"])
        from shared.observability import meters, tracing

        # One tracer provider and one meter provider for the process: the request-id processor
        # stamps every span, and the local reader makes `/metrics` read the exported instruments.
        configure_azure_monitor(
            logger_name="memory_layer",
            credential=credential,
            span_processors=[tracing.request_id_processor()],
            metric_readers=[meters.local_reader()],
        )
        tracing.enable()
        meters.exporting()
        # Registered after the SDK's own exit hooks, so it runs first: what the batch processors and
        # the metric reader hold (up to 5 s of spans, 60 s of metrics) is sent before the worker exits.
        atexit.register(flush_exporters)
        # Logger filters do not run for records of child loggers (`memory_layer.invocation`): the
        # exporter's handler stamps the request id itself, so exported log lines carry it.
        for handler in service_logger.handlers:
            handler.addFilter(request_filter)
    # mem0 and qdrant are chatty about optional features we deliberately do without.
    logging.getLogger("mem0").setLevel(logging.ERROR)


def flush_exporters(timeout_millis: int = 5000) -> None:
    """Sends what the trace, metric and log exporters still hold (at a worker's exit)."""
    from opentelemetry import metrics, trace
    from opentelemetry._logs import get_logger_provider

    for provider in (trace.get_tracer_provider(), metrics.get_meter_provider(), get_logger_provider()):
        flush = getattr(provider, "force_flush", None)
        if flush is None:
            continue
        try:
            flush(timeout_millis=timeout_millis)
        except Exception:  # an exporter that cannot send at exit must not turn the exit into an error
            name = type(provider).__name__
            logging.getLogger("memory_layer").debug("flushing %s at exit failed", name, exc_info=True)
