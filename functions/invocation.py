"""The one pipeline every invocation runs through, whatever its trigger: HTTP, MCP tool, queue, timer.

`run(...)` does, once for all of them: the request id (the trigger's own: the `x-request-id`
header, the event or message id of a queue message, the timer's invocation id), the host's trace
context as the parent of the invocation's span (shared/observability/tracing.py `invocation_span`),
the metric (function, trigger, status, duration: functions/metrics.py), the one log line, and every
exception turned into one `Failure` (status, code, message, details, headers).

A trigger only renders the outcome: HTTP as the envelope (functions/http.py), an MCP tool as a tool
error result (functions/mcp.py); a queue or timer function has nothing to render, so its failure is
logged, counted and raised again: the host's retries and the poison queue depend on it.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from functions.metrics import metrics
from shared.context import request_id_var
from shared.errors import ServiceError
from shared.observability import tracing

logger = logging.getLogger("memory_layer.invocation")

HTTP = "http"
MCP = "mcp"
QUEUE = "queue"
TIMER = "timer"

INTERNAL_ERROR_MESSAGE = "Internal error. Quote the request id when reporting it."

R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Failure:
    """What went wrong, in the terms every trigger renders (a bug's own text never among them)."""

    status: int
    code: str
    message: str
    details: list[dict[str, Any]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)  # e.g. Retry-After of a 503
    expected: bool = True  # False: a bug, an exception no ServiceError describes


INTERNAL_FAILURE = Failure(500, "internal_error", INTERNAL_ERROR_MESSAGE, expected=False)


def failure_of(error: BaseException) -> Failure:
    """A ServiceError as it describes itself; anything else as the generic 500, which says nothing of it."""
    if isinstance(error, ServiceError):
        return Failure(error.status, error.code, error.message, error.details, error.headers)
    return INTERNAL_FAILURE


def run(
    trigger: str,
    function: str,
    request_id: str,
    trace_context: Any,
    work: Callable[[], R],
    render_failure: Callable[[Failure, str], R] | None = None,
    *,
    status_of: Callable[[R], int] | None = None,
    label: str | None = None,
) -> R:
    """`work()` as the invocation `request_id` of `function`.

    `trace_context` is the host's (anything with `trace_parent` and `trace_state`; None when there is
    none). A failure is answered by `render_failure(failure, request_id)`, or, without one, raised
    again after it is logged and counted. `status_of` reads the status of a result (an HTTP
    response's); otherwise a result is a 200. `label` starts the log line (default `trigger function`).
    """
    if trigger in (HTTP, MCP):  # a caller waits for these; queue and timer work have the host's own limits
        work = _gated(work)
    token = request_id_var.set(request_id)
    started = time.perf_counter()
    metrics.begin()
    outcome = _Outcome()
    try:
        if not tracing.is_enabled():  # no span to open: not even the context manager's cost
            return _attempt(work, render_failure, status_of, function, request_id, outcome, tracing.NO_SPAN)
        with tracing.invocation_span(function, trigger, trace_context) as span:
            return _attempt(work, render_failure, status_of, function, request_id, outcome, span)
    finally:
        elapsed = time.perf_counter() - started
        metrics.end(function, outcome.status, elapsed, trigger)
        logger.info(
            "%s -> %d in %.1f ms",
            label or f"{trigger} {function}",
            outcome.status,
            elapsed * 1000,
            extra=_fields(function, trigger, outcome.status, outcome.failure),
        )
        request_id_var.reset(token)


# --- how many invocations work at once -----------------------------------------------------------
# With the embedded engine a worker's work is held to the GIL: the binding keeps it for every engine
# call, and the search's own Python needs it too; only the embedding model runs beside it. A worker
# thread per core keeps the cores busy; more threads only take turns at the GIL, and the switching
# costs CPU (measured, 80/20 mixed load, 8 clients, 2 cores: 2 threads 186 ops/s at 7.0 ms of CPU
# per operation, the worker's default 6 threads 127 ops/s at 9.5 ms). The limit, WORKER_CONCURRENCY
# (shared/settings.py), holds the invocations a caller waits for (HTTP, MCP). Queue and timer work
# is bounded by the host's own settings (a queue's batch size): a gate shared with it let a burst of
# queued ingestion hold every turn while requests waited. Those over the limit wait for a turn token
# in a queue: `SimpleQueue.get` blocks in C without the GIL (a `threading.Semaphore` is a Python
# condition variable whose waiters take the GIL to wait and to wake: 144 instead of 155 ops/s).
_gate_lock = threading.Lock()
_gate: queue.SimpleQueue[int] | None = None
_gate_known = False
_inside = threading.local()  # an invocation run inside another on the same thread takes no second turn


def _work_gate() -> queue.SimpleQueue[int] | None:
    global _gate, _gate_known
    if not _gate_known:
        with _gate_lock:
            if not _gate_known:
                from shared.settings import get_settings

                limit = get_settings().resolved_worker_concurrency
                turns: queue.SimpleQueue[int] | None = queue.SimpleQueue() if limit else None
                for turn in range(limit or 0):
                    turns.put(turn)  # type: ignore[union-attr]
                _gate = turns
                _gate_known = True
    return _gate


def _gated(work: Callable[[], R]) -> Callable[[], R]:
    def take_a_turn() -> R:
        gate = None if getattr(_inside, "depth", 0) else _work_gate()
        if gate is None:
            return work()
        turn = gate.get()
        _inside.depth = 1
        try:
            return work()
        finally:
            _inside.depth = 0
            gate.put(turn)

    return take_a_turn


def reset_work_gate() -> None:
    """Forget the gate (tests that change the settings)."""
    global _gate, _gate_known
    with _gate_lock:
        _gate, _gate_known = None, False


class _Outcome:
    __slots__ = ("failure", "status")

    def __init__(self) -> None:
        self.status = 500  # until the work says otherwise (also when it raises past the pipeline)
        self.failure: Failure | None = None


def _attempt(
    work: Callable[[], R],
    render_failure: Callable[[Failure, str], R] | None,
    status_of: Callable[[R], int] | None,
    function: str,
    request_id: str,
    outcome: _Outcome,
    span: Any,
) -> R:
    try:
        result = work()
    except Exception as error:
        failure = outcome.failure = failure_of(error)
        outcome.status = failure.status
        if failure.status == 503:  # /health says so from now on, not only after its next check
            from shared.health import note_failure

            note_failure(failure.code, failure.message, failure.details)
        _log_failure(function, failure)
        tracing.end_invocation_span(
            span, failure.status, failure.code, None if failure.expected else type(error).__name__
        )
        if render_failure is None:
            raise
        return render_failure(failure, request_id)
    outcome.status = status_of(result) if status_of is not None else 200
    tracing.end_invocation_span(span, outcome.status, None, None)
    return result


def _fields(function: str, trigger: str, status: int, failure: Failure | None) -> dict[str, Any]:
    """The log line's custom dimensions (no None: the log exporter refuses it as an attribute)."""
    fields: dict[str, Any] = {"function": function, "trigger": trigger, "status": status}
    if failure is not None:
        fields["error_code"] = failure.code
    return fields


def _log_failure(function: str, failure: Failure) -> None:
    if not failure.expected:
        logger.exception("unhandled error in %s", function)  # the traceback is logged, never returned
    elif failure.status >= 500:
        logger.warning("%s: %s", failure.code, failure.message)
