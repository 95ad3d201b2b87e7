"""CPU time per operation by component (mongod, redis-server, workers, clients), read from ``/proc``.

On 2 cores the parts are CPU-bound, so a ratio of throughputs is a ratio of
CPU costs; per component they show where the time goes, and the machine's
busy share how much other load there was.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

TICKS = os.sysconf("SC_CLK_TCK")
PidSource = Callable[[], Iterable[int]]


def process_seconds(pid: int) -> float:
    """User + system CPU seconds of one process (0.0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def machine_seconds() -> tuple[float, float]:
    """(all CPU seconds, idle CPU seconds) of the machine since boot."""
    values = [int(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return sum(values) / TICKS, (values[3] + values[4]) / TICKS


@dataclass(frozen=True)
class CpuUse:
    """CPU milliseconds per operation by component, and the machine's load during the window."""

    per_operation_ms: dict[str, float]
    machine_busy_share: float
    ours_share: float

    def to_json(self) -> dict[str, object]:
        return {"cpu_ms_per_operation": self.per_operation_ms,
                "cpu_ms_per_operation_total": round(sum(self.per_operation_ms.values()), 3),
                "machine_busy_share": round(self.machine_busy_share, 3), "ours_share": round(self.ours_share, 3)}

    def line(self, operation: str = "call") -> str:
        """One printable line: CPU ms per ``operation`` by component, and the machine's load."""
        parts = ", ".join(f"{name} {value:.2f}" for name, value in self.per_operation_ms.items())
        return (f"CPU ms per {operation}: {parts} (total {sum(self.per_operation_ms.values()):.2f}); "
                f"machine busy {self.machine_busy_share:.0%}, ours {self.ours_share:.0%}")


class CpuMeter:
    """Samples the CPU seconds of named groups of processes before and after a window.

    Each group names its processes exactly (a worker with its pool children);
    a thread desk's group is this whole process.
    """

    def __init__(self, groups: dict[str, PidSource]) -> None:
        self.groups = groups
        self._pids: dict[str, list[int]] = {}
        self._before: dict[str, float] = {}
        self._machine: tuple[float, float] = (0.0, 0.0)

    def start(self) -> None:
        """Fix the processes of each group and read their CPU time and the machine's."""
        self._pids = {name: list(source()) for name, source in self.groups.items()}
        self._before = self._sample()
        self._machine = machine_seconds()

    def stop(self, operations: int) -> CpuUse:
        """CPU used since ``start``, per operation, with the machine's busy share."""
        after = self._sample()
        total, idle = machine_seconds()
        elapsed = max(total - self._machine[0], 1e-9)
        used = {name: after[name] - self._before[name] for name in self.groups}
        per_operation = {name: round(seconds / max(operations, 1) * 1000, 3) for name, seconds in used.items()}
        return CpuUse(per_operation, 1 - (idle - self._machine[1]) / elapsed, sum(used.values()) / elapsed)

    def _sample(self) -> dict[str, float]:
        return {name: sum(process_seconds(pid) for pid in pids) for name, pids in self._pids.items()}


def merge_uses(uses: list[CpuUse], operations: list[int]) -> CpuUse:
    """Several windows as one: per-operation costs weighted by each window's operations."""
    total = max(sum(operations), 1)
    names = uses[0].per_operation_ms
    return CpuUse(
        {name: round(sum(use.per_operation_ms[name] * count for use, count in zip(uses, operations)) / total, 3)
         for name in names},
        sum(use.machine_busy_share * count for use, count in zip(uses, operations)) / total,
        sum(use.ours_share * count for use, count in zip(uses, operations)) / total,
    )
