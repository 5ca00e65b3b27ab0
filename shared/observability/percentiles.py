"""The one percentile definition of the service's `/metrics` and of every benchmark, so their figures
compare: nearest rank (the smallest sample with at least `pct` % of the samples at or below it)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def percentile(samples: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of `samples` (NaN when there are none)."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def bucket_percentile(point: Any, pct: float) -> float:
    """Nearest-rank percentile of an exponential-histogram data point (OpenTelemetry's), NaN when empty.

    The sample of that rank is known only to lie in its bucket, so the bucket's upper bound is
    given, kept within the observed min and max: never below the true value, above it by at most
    one bucket's width (a factor 2**(2**-scale); about 4 % at the scale latencies settle on).
    """
    count = int(point.count)
    if count == 0:
        return math.nan
    rank = max(1, math.ceil(pct / 100 * count))
    seen = int(point.zero_count)
    if rank <= seen:
        return 0.0
    base = 2.0 ** (2.0 ** -int(point.scale))
    value = float(point.max)
    for index, bucket in enumerate(point.positive.bucket_counts):
        seen += int(bucket)
        if rank <= seen:
            value = base ** (point.positive.offset + index + 1)
            break
    return min(max(value, float(point.min)), float(point.max))
