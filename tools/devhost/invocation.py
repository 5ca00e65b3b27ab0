"""What the worker hands a function besides its trigger: the `context` argument (invocation id, trace
and retry context, thread-local storage) and stand-ins for output bindings; and the call in a worker thread."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field


class DiscardedOut:
    """Stands in for an output binding; the worker passes a plain object with set/get too."""

    def __init__(self) -> None:
        self._value: object = None

    def set(self, val: object) -> None:
        self._value = val

    def get(self) -> object:
        return self._value


@dataclass(frozen=True)
class TraceContext:
    trace_parent: str
    trace_state: str
    attributes: dict[str, str]


@dataclass(frozen=True)
class _RetryContext:
    retry_count: int = 0
    max_retry_count: int = 0
    exception: object = None


invocation_tls = threading.local()


@dataclass(frozen=True)
class DevContext:
    """The `context` argument, with the attributes of the worker's Context."""

    invocation_id: str
    function_name: str
    function_directory: str
    trace_context: TraceContext
    retry_context: _RetryContext = field(default_factory=_RetryContext)

    @property
    def thread_local_storage(self) -> threading.local:
        return invocation_tls


def trace_context_from(headers: Mapping[str, str]) -> TraceContext:
    parent = headers.get("traceparent") or f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"
    return TraceContext(parent, headers.get("tracestate", ""), {})


def call_in_worker_thread(function: Callable[..., object], kwargs: dict[str, object], invocation_id: str) -> object:
    invocation_tls.invocation_id = invocation_id
    return function(**kwargs)
