"""Small numeric helpers shared by the benchmark parts."""

from __future__ import annotations

import math
from typing import Sequence


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (``fraction`` in 0..1) of ``values``; 0.0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return float(ordered[rank - 1])


def latency_summary(latencies_ms: Sequence[float]) -> dict[str, float]:
    """p50, p95, p99 and max of a list of latencies, in milliseconds."""
    return {
        "p50_ms": round(percentile(latencies_ms, 0.50), 3),
        "p95_ms": round(percentile(latencies_ms, 0.95), 3),
        "p99_ms": round(percentile(latencies_ms, 0.99), 3),
        "max_ms": round(max(latencies_ms, default=0.0), 3),
    }


def median(values: Sequence[float]) -> float:
    """The median of ``values`` (0.0 when empty)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    middle = len(ordered) // 2
    return float(ordered[middle]) if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator``, infinite when the denominator is zero."""
    return numerator / denominator if denominator else math.inf
