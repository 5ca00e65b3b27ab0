"""The telemetry pieces without a server: bucket percentiles against the exact nearest rank, `/metrics`
read from the OpenTelemetry instruments, and tracing that costs nothing while it is off."""

from __future__ import annotations

import random
import subprocess
import sys

from opentelemetry.sdk.metrics import Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation

from functions.metrics import RequestMetrics
from shared.observability import tracing
from shared.observability.percentiles import bucket_percentile, percentile


def _histogram_point(samples: list[float]):  # type: ignore[no-untyped-def]
    reader = InMemoryMetricReader(preferred_aggregation={Histogram: ExponentialBucketHistogramAggregation()})
    histogram = MeterProvider(metric_readers=[reader]).get_meter("t").create_histogram("latency")
    for sample in samples:
        histogram.record(sample)
    data = reader.get_metrics_data()
    return data.resource_metrics[0].scope_metrics[0].metrics[0].data.data_points[0]


def test_bucket_percentile_is_the_nearest_rank_within_one_bucket() -> None:
    rng = random.Random(7)
    samples = [rng.lognormvariate(3, 1.2) for _ in range(5000)]  # latencies from ~1 ms to seconds
    point = _histogram_point(samples)
    factor = 2 ** (2**-point.scale)
    for pct in (50, 95, 99):
        exact = percentile(samples, pct)
        estimate = bucket_percentile(point, pct)
        assert exact <= estimate * (1 + 1e-9) and estimate <= exact * factor * (1 + 1e-9), (pct, exact, estimate)


def test_bucket_percentile_of_one_sample_is_that_sample() -> None:
    point = _histogram_point([12.5])
    assert bucket_percentile(point, 50) == 12.5 == bucket_percentile(point, 99)


def test_metrics_snapshot_is_read_from_the_instruments() -> None:
    metrics = RequestMetrics()
    name = f"unit_fn_{random.randrange(10**9)}"
    metrics.begin()
    metrics.end(name, 200, 0.010)
    metrics.begin()
    metrics.end(name, 503, 0.030)
    metrics.begin()
    metrics.end(name, 422, 0.020)
    metrics.begin()  # still in flight
    snapshot = metrics.snapshot()
    stats = snapshot["functions"][name]
    assert (stats["requests"], stats["errors"], stats["client_errors"]) == (3, 1, 1)
    assert 10 <= stats["latency_ms"]["p50"] <= stats["latency_ms"]["p99"] <= 30
    assert snapshot["active_connections"] >= 1
    assert snapshot["total_requests"] >= 4
    metrics.end(name, 200, 0.001)


def test_tracing_off_is_a_no_op() -> None:
    assert not tracing.is_enabled()
    with tracing.dependency_span("x", {"a": 1}) as span:
        assert span is tracing.NO_SPAN
    assert tracing.current_span() is tracing.NO_SPAN


def test_the_zero_setup_app_imports_no_telemetry_library() -> None:
    code = "import sys, function_app; print(','.join(sorted(m for m in sys.modules if m.startswith('opentelemetry'))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"imported at indexing time: {out.stdout.strip()}"
