"""A target: a measured figure, its bound, and a PASS that has to be earned."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Target:
    """One figure against its bound (``unit`` "x" for a ratio, "s" for seconds).

    ``samples`` is how many measurements the figure rests on (rounds, claims,
    presses; None when the part does not say), and ``problem`` a reason the
    figure cannot be trusted whatever its value (say, no press fell inside a
    fault window). A target with a problem, no samples, or a figure that is
    not a finite number fails, and its line says why.
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
