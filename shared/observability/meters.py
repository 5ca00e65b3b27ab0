"""The service's own metrics as OpenTelemetry instruments: one source for Application Insights and `/metrics`.

Every figure is recorded once, on an instrument of the `memory_layer` meter. Two readers see it:
the Azure Monitor exporter's (when a connection string is set, through `configure_azure_monitor`'s
`metric_readers`) and `local_reader()`, which `/metrics` collects on demand (this worker's figures,
cumulative since it started). Latency histograms aggregate with exponential buckets in the local
reader, so `/metrics` can give percentiles without keeping samples.

Dimensions are function names, status codes, model names and operation kinds; never a user id.

Queues (built elsewhere) report through `observe_queue(name, backlog, poison)`: the two gauges below
read whatever callbacks are registered there, so the queue code needs no other change here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from shared.lazy import Lazy

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, Meter, Observation
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricsData

    from shared.breaker import CircuitBreaker

logger = logging.getLogger(__name__)

METER_NAME = "memory_layer"

REQUESTS = "memory_layer.requests"
REQUEST_DURATION = "memory_layer.request.duration"
ACTIVE_REQUESTS = "memory_layer.requests.active"
MEMORIES_ADDED = "memory_layer.memories.added"
BATCH_SIZE = "memory_layer.batch.size"
LLM_TOKENS = "memory_layer.llm.tokens"
LLM_THROTTLES = "memory_layer.llm.throttles"
BREAKER_OPEN = "memory_layer.breaker.open"
QUEUE_BACKLOG = "memory_layer.queue.backlog"
QUEUE_POISON = "memory_layer.queue.poison"
LEARNING_FALLBACKS = "memory_layer.learning.fallbacks"
LEARNING_DECISIONS = "memory_layer.learning.decisions"

_exporting = False
_breakers: dict[str, CircuitBreaker] = {}
_queues: dict[str, tuple[Callable[[], int], Callable[[], int]]] = {}


def _build_reader() -> InMemoryMetricReader:
    from opentelemetry.sdk.metrics import Histogram
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation

    return InMemoryMetricReader(preferred_aggregation={Histogram: ExponentialBucketHistogramAggregation()})


_reader: Lazy[InMemoryMetricReader] = Lazy(_build_reader)


def local_reader() -> InMemoryMetricReader:
    """The in-process reader `/metrics` collects (made once per worker)."""
    return _reader.get()


def exporting() -> None:
    """The global meter provider now holds `local_reader()` and the exporter's reader: record there."""
    global _exporting
    _exporting = True


def _meter() -> Meter:
    if _exporting:
        from opentelemetry.metrics import get_meter_provider

        return get_meter_provider().get_meter(METER_NAME)
    # No exporter: a provider of our own with the local reader only, left out of the global API so
    # that nothing else in the process starts recording because of it.
    from opentelemetry.sdk.metrics import MeterProvider

    return MeterProvider(metric_readers=[local_reader()]).get_meter(METER_NAME)


class _Instruments:
    def __init__(self, meter: Meter) -> None:
        self.requests = meter.create_counter(REQUESTS, unit="{request}", description="Finished invocations")
        self.duration = meter.create_histogram(REQUEST_DURATION, unit="ms", description="Invocation latency")
        self.active = meter.create_up_down_counter(ACTIVE_REQUESTS, unit="{request}", description="In flight")
        self.memories_added = meter.create_counter(MEMORIES_ADDED, unit="{memory}", description="Memories written")
        self.batch_size = meter.create_histogram(BATCH_SIZE, unit="{item}", description="Items per batch call")
        self.llm_tokens = meter.create_counter(LLM_TOKENS, unit="{token}", description="LLM tokens (usage)")
        self.llm_throttles = meter.create_counter(LLM_THROTTLES, unit="{response}", description="LLM 429 answers")
        self.learning_fallbacks = meter.create_counter(
            LEARNING_FALLBACKS, unit="{event}", description="Learning answers not used (malformed, failed)"
        )
        self.learning_decisions = meter.create_counter(
            LEARNING_DECISIONS, unit="{fact}", description="Learned facts by decision"
        )
        meter.create_observable_gauge(
            BREAKER_OPEN, callbacks=[_breaker_states], unit="1", description="1 while a backend's breaker is open"
        )
        meter.create_observable_gauge(QUEUE_BACKLOG, callbacks=[_queue_backlog], unit="{message}")
        meter.create_observable_gauge(QUEUE_POISON, callbacks=[_queue_poison], unit="{message}")


_instruments: Lazy[_Instruments] = Lazy(lambda: _Instruments(_meter()))


def instruments() -> _Instruments:
    """The worker's instruments (built on first use: the SDK is imported by the first request)."""
    return _instruments.get()


def collect() -> MetricsData | None:
    """What the local reader holds now (None before anything was recorded)."""
    if _instruments.peek() is None:
        return None
    return local_reader().get_metrics_data()


# --- what the core records ------------------------------------------------------------------------


def memories_added(count: int, operation: str) -> None:
    if count > 0:
        instruments().memories_added.add(count, {"operation": operation})


def batch_size(size: int, operation: str) -> None:
    instruments().batch_size.record(size, {"operation": operation})


def llm_usage(model: str, operation: str, prompt_tokens: int | None, completion_tokens: int | None) -> None:
    tokens = instruments().llm_tokens
    if prompt_tokens:
        tokens.add(prompt_tokens, {"model": model, "operation": operation, "kind": "prompt"})
    if completion_tokens:
        tokens.add(completion_tokens, {"model": model, "operation": operation, "kind": "completion"})


def llm_throttled(model: str, operation: str) -> None:
    instruments().llm_throttles.add(1, {"model": model, "operation": operation})


def learning_fallback(stage: str, reason: str) -> None:
    """A learning event's model answer not used: `stage` extraction|decision, `reason` malformed|failed."""
    instruments().learning_fallbacks.add(1, {"stage": stage, "reason": reason})


def learning_decision(action: str) -> None:
    instruments().learning_decisions.add(1, {"action": action})


def watch_breaker(backend: str, breaker: CircuitBreaker) -> None:
    """Report `breaker`'s state as the `memory_layer.breaker.open` gauge, dimension `backend`."""
    _breakers[backend] = breaker


def observe_queue(queue: str, backlog: Callable[[], int], poison: Callable[[], int]) -> None:
    """The hook for queue triggers: how many messages wait in `queue` and in its poison queue.

    The callbacks run at each collection (the exporter's interval, and each `/metrics` call), so
    they should be cheap (e.g. `QueueClient.get_queue_properties().approximate_message_count`).
    """
    _queues[queue] = (backlog, poison)


def _breaker_states(options: CallbackOptions) -> Iterable[Observation]:
    from opentelemetry.metrics import Observation

    return [Observation(1 if b.is_open else 0, {"backend": name}) for name, b in list(_breakers.items())]


def _queue_values(index: int) -> list[Observation]:
    from opentelemetry.metrics import Observation

    values = []
    for name, callbacks in list(_queues.items()):
        try:
            values.append(Observation(int(callbacks[index]()), {"queue": name}))
        except Exception:  # a queue that cannot be read is reported by its own trigger, not here
            logger.debug("queue %s could not be read for its gauge", name, exc_info=True)
    return values


def _queue_backlog(options: CallbackOptions) -> Iterable[Observation]:
    return _queue_values(0)


def _queue_poison(options: CallbackOptions) -> Iterable[Observation]:
    return _queue_values(1)


def points(data: MetricsData | None, name: str) -> list[Any]:
    """The data points of the metric `name` in collected `data` (any scope of our meter)."""
    found: list[Any] = []
    if data is None:
        return found
    for resource_metrics in data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            if scope_metrics.scope.name != METER_NAME:
                continue
            for metric in scope_metrics.metrics:
                if metric.name == name:
                    found.extend(metric.data.data_points)
    return found
