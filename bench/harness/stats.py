"""Small numeric helpers: percentiles, medians and ratios that never invent a number.

Without data there is no figure: an empty sample, a zero denominator or a
non-finite input gives NaN, which ``Target`` reports as a FAIL with its
reason, and which JSON records as null (``json_safe``).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

NAN = math.nan


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (``fraction`` in 0..1) of ``values``; NaN when there are none."""
    if not values:
        return NAN
    ordered = sorted(values)
    return float(ordered[max(1, math.ceil(fraction * len(ordered))) - 1])


def median(values: Sequence[float]) -> float:
    """The median of ``values``; NaN when there are none or any is not finite (a round without data)."""
    if not values or not all(math.isfinite(value) for value in values):
        return NAN
    ordered = sorted(values)
    middle = len(ordered) // 2
    return float(ordered[middle]) if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator``; NaN when the denominator is zero or either side is not finite."""
    if not denominator or not (math.isfinite(numerator) and math.isfinite(denominator)):
        return NAN
    return numerator / denominator


def latency_summary(latencies_ms: Sequence[float]) -> dict[str, float]:
    """p50, p95, p99 and max of some latencies in milliseconds (NaN when there are none)."""
    return {"p50_ms": round(percentile(latencies_ms, 0.50), 3), "p95_ms": round(percentile(latencies_ms, 0.95), 3),
            "p99_ms": round(percentile(latencies_ms, 0.99), 3), "max_ms": round(max(latencies_ms, default=NAN), 3)}


def json_safe(value: Any) -> Any:
    """``value`` with every NaN or infinity replaced by None (JSON has no such numbers)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value
