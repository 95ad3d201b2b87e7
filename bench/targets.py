"""A target from the issues: a measured ratio, its bound, and PASS/FAIL."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Target:
    """One ratio from the issue, with its bound (``unit`` "s" for a time in seconds)."""

    name: str
    measured: float
    bound: float
    at_least: bool = True
    unit: str = "x"

    @property
    def passed(self) -> bool:
        return self.measured >= self.bound if self.at_least else self.measured <= self.bound

    def line(self) -> str:
        sign = ">=" if self.at_least else "<="
        shown = "inf" if math.isinf(self.measured) else f"{self.measured:.2f}"
        unit = self.unit if self.unit == "x" else f" {self.unit}"
        return f"  [{'PASS' if self.passed else 'FAIL'}] {self.name}: {shown}{unit} (target {sign} {self.bound:g}{unit})"

    def to_json(self) -> dict[str, Any]:
        measured = None if math.isinf(self.measured) else round(self.measured, 3)
        return {"name": self.name, "measured": measured, "bound": self.bound,
                "comparison": ">=" if self.at_least else "<=", "unit": self.unit, "passed": self.passed}
