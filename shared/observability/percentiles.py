"""The one percentile definition of the service's `/metrics` and of every benchmark, so their figures
compare: nearest rank (the smallest sample with at least `pct` % of the samples at or below it)."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(samples: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of `samples` (NaN when there are none)."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]
