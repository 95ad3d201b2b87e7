"""Figures and the PASS/FAIL they earn: percentiles, medians and ratios that never invent a number, and targets.

Without data there is no figure: an empty sample, a zero denominator or a
non-finite input gives NaN, which a ``Target`` reports as a FAIL with its
reason, and JSON records as null (``json_safe``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Target:
    """One figure against its bound (``unit`` "x" for a ratio, "s" for seconds).

    ``samples``: how many measurements the figure rests on (None: not said); ``problem``: why it cannot be
    trusted whatever its value. With either, or a figure that is not a finite number, it fails and says why.
    """

    name: str
    measured: float
    bound: float
    at_least: bool = True
    unit: str = "x"
    samples: int | None = None
    problem: str | None = None

    @property
    def reason(self) -> str | None:
        """Why this measurement cannot pass, or None when its value decides."""
        if self.problem:
            return self.problem
        if self.samples == 0:
            return "no samples"
        if math.isnan(self.measured):
            return "no figure (nothing measured, or a zero denominator)"
        if math.isinf(self.measured):
            return "infinite (a zero denominator)"
        return None

    @property
    def passed(self) -> bool:
        if self.reason is not None:
            return False
        return self.measured >= self.bound if self.at_least else self.measured <= self.bound

    def line(self) -> str:
        sign = ">=" if self.at_least else "<="
        unit = self.unit if self.unit == "x" else f" {self.unit}"
        why = "" if self.reason is None else f" - not measured: {self.reason}"
        return (f"  [{'PASS' if self.passed else 'FAIL'}] {self.name}: {self.measured:.2f}{unit} "
                f"(target {sign} {self.bound:g}{unit}){why}")

    def to_json(self) -> dict[str, Any]:
        measured = round(self.measured, 3) if math.isfinite(self.measured) else None
        return {"name": self.name, "measured": measured, "bound": self.bound, "comparison": ">=" if self.at_least
                else "<=", "unit": self.unit, "samples": self.samples, "reason": self.reason, "passed": self.passed}
