"""Per-worker request metrics for `/metrics`: counts, errors and latency percentiles per function.

They describe this worker only (workers come and go); fleet-wide figures live in Application
Insights. Latencies are kept in a bounded ring per function so memory stays flat.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

from shared.observability.percentiles import percentile

_WINDOW = 2048


class _FunctionStats:
    __slots__ = ("client_errors", "errors", "latencies", "requests")

    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0
        self.client_errors = 0
        self.latencies: deque[float] = deque(maxlen=_WINDOW)


class RequestMetrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._functions: dict[str, _FunctionStats] = {}
        self.active = 0
        self.total = 0
        self.started = time.time()

    def begin(self) -> None:
        with self._lock:
            self.active += 1
            self.total += 1

    def end(self, function: str, status: int, seconds: float) -> None:
        with self._lock:
            self.active -= 1
            stats = self._functions.setdefault(function, _FunctionStats())
            stats.requests += 1
            if status >= 500:
                stats.errors += 1
            elif status >= 400:
                stats.client_errors += 1
            stats.latencies.append(seconds * 1000)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            functions = {}
            errors = 0
            for name, stats in sorted(self._functions.items()):
                errors += stats.errors
                ordered = sorted(stats.latencies)
                functions[name] = {
                    "requests": stats.requests,
                    "errors": stats.errors,
                    "client_errors": stats.client_errors,
                    "latency_ms": {
                        "p50": _percentile(ordered, 50),
                        "p95": _percentile(ordered, 95),
                        "p99": _percentile(ordered, 99),
                    },
                }
            return {
                "active_connections": self.active,
                "total_requests": self.total,
                "total_errors": errors,
                "uptime_seconds": round(time.time() - self.started, 3),
                "functions": functions,
            }


def _percentile(ordered: list[float], pct: float) -> float | None:
    return round(percentile(ordered, pct), 3) if ordered else None


metrics = RequestMetrics()
