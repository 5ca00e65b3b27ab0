"""Per-worker invocation metrics for `/metrics`, read from the same OpenTelemetry instruments that
Application Insights receives (shared/observability/meters.py): counts, errors and latency
percentiles per function, whatever its trigger (HTTP, MCP tool, queue, timer: functions/invocation.py
records every one).

They describe this worker only (workers come and go); fleet-wide figures live in Application
Insights. Latencies are exponential-histogram buckets, so memory stays flat and percentiles are
bucket estimates (shared/observability/percentiles.py `bucket_percentile`).
"""

from __future__ import annotations

import math
import time
from typing import Any

from shared.observability import meters
from shared.observability.percentiles import bucket_percentile


class RequestMetrics:
    def __init__(self) -> None:
        self.started = time.time()

    def begin(self) -> None:
        meters.instruments().active.add(1)

    def end(self, function: str, status: int, seconds: float, trigger: str = "http") -> None:
        instruments = meters.instruments()
        instruments.active.add(-1)
        instruments.requests.add(1, {"function": function, "status_code": status, "trigger": trigger})
        instruments.duration.record(seconds * 1000, {"function": function, "trigger": trigger})

    def snapshot(self) -> dict[str, Any]:
        data = meters.collect()
        functions: dict[str, dict[str, Any]] = {}
        finished = errors = 0
        for point in meters.points(data, meters.REQUESTS):
            name = str(point.attributes.get("function"))
            status = int(point.attributes.get("status_code", 0))
            stats = functions.setdefault(name, {"requests": 0, "errors": 0, "client_errors": 0})
            stats["requests"] += point.value
            finished += point.value
            if status >= 500:
                stats["errors"] += point.value
                errors += point.value
            elif status >= 400:
                stats["client_errors"] += point.value
        for point in meters.points(data, meters.REQUEST_DURATION):
            stats = functions.setdefault(str(point.attributes.get("function")), {"requests": 0})
            stats["latency_ms"] = {f"p{p}": _rounded(bucket_percentile(point, p)) for p in (50, 95, 99)}
        active = sum(point.value for point in meters.points(data, meters.ACTIVE_REQUESTS))
        queues: dict[str, dict[str, int]] = {}
        for key, name in (("backlog", meters.QUEUE_BACKLOG), ("poison", meters.QUEUE_POISON)):
            for point in meters.points(data, name):
                queues.setdefault(str(point.attributes.get("queue")), {})[key] = int(point.value)
        return {
            **({"queues": dict(sorted(queues.items()))} if queues else {}),
            "active_connections": active,
            "total_requests": finished + active,  # counted when they start, as the seed did
            "total_errors": errors,
            "uptime_seconds": round(time.time() - self.started, 3),
            "functions": dict(sorted(functions.items())),
        }


def _rounded(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 3)


metrics = RequestMetrics()
