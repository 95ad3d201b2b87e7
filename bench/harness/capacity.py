"""Saturated capacity of a press, in presses per second, and what stock callers leave in the result backend.

Closed-loop windows of each real kind (``bench.harness.presses``: the
two-trip and the one-trip press) take turns after a warm-up of each; each
window counts its presses, their latency and the CPU per press of every
component. Then, per kind, a window whose clients leave every answer in the
result database, as a stock Celery caller does: what those answers hold in
Redis (``MEMORY USAGE``) until ``CALLQUEUE_RESULT_EXPIRES_SECONDS``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import redis

from bench.harness.callers import WindowResult, check_window, values
from bench.harness.core import Harness
from bench.harness.cpu import CpuMeter, CpuUse, merge_uses
from bench.harness.desks import DeskPool
from bench.harness.integrity import Answer
from bench.harness.presses import ASSIGN_TASK, ONE_TRIP, PRESS, PressLoopJob
from bench.harness.targets import latency_summary, percentile, ratio

REAL_KINDS = (PRESS, ONE_TRIP)
LABELS = {PRESS: "two trips", ONE_TRIP: "one trip"}


@dataclass(frozen=True)
class CapacityConfig:
    """``desks`` x ``threads`` closed-loop callers; ``windows_per_kind`` windows of ``seconds`` per kind."""

    desks: int = 4
    threads: int = 16
    warmup_seconds: float = 2.0
    seconds: float = 4.0
    windows_per_kind: int = 2
    client_timeout_seconds: float = 10.0
    outcome: str = "no_answer"
    press_task: str = ASSIGN_TASK


@dataclass
class Capacity:
    """Closed-loop windows of each real kind, and the result backend's growth under stock callers."""

    windows: dict[str, list[tuple[int, float, CpuUse]]] = field(default_factory=lambda: {k: [] for k in REAL_KINDS})
    latencies_ms: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in REAL_KINDS})
    two_trip_answers: list[Answer] = field(default_factory=list)  # one-trip claims come from FinishJob
    # Stock callers (answers left in Redis), per kind: presses, answers left, their MEMORY USAGE, used_memory growth.
    stock: dict[str, dict[str, int]] = field(default_factory=dict)

    def per_second(self, kind: str) -> float:
        """Saturated presses per second: every window's presses over every window's seconds."""
        return ratio(sum(presses for presses, _, _ in self.windows[kind]),
                     sum(seconds for _, seconds, _ in self.windows[kind]))

    def cpu(self, kind: str) -> CpuUse | None:
        """CPU ms per press by component (worker, callers, redis, mongod), the windows weighted by presses."""
        windows = self.windows[kind]
        return merge_uses([use for _, _, use in windows], [presses for presses, _, _ in windows]) if windows else None

    def stock_bytes_per_press(self, kind: str) -> float:
        """Result-backend bytes a stock caller's press leaves in Redis until the result expiry (MEMORY USAGE)."""
        stock = self.stock.get(kind, {})
        return ratio(stock.get("memory_usage_bytes", 0), stock.get("presses", 0))

    def to_json(self) -> dict[str, Any]:
        return {**{kind: {"presses_per_second": round(self.per_second(kind), 1),
                          "windows": [{"presses": presses, "seconds": round(seconds, 3), "cpu": use.to_json()}
                                      for presses, seconds, use in self.windows[kind]],
                          "latency": latency_summary(self.latencies_ms[kind])} for kind in REAL_KINDS},
                "stock_callers": {kind: {**self.stock.get(kind, {}),
                                         "bytes_per_press": round(self.stock_bytes_per_press(kind), 1)}
                                  for kind in REAL_KINDS}}


def measure_capacity(harness: Harness, pool: DeskPool, meter: CpuMeter, environ: dict[str, str],
                     config: CapacityConfig, session_id: str) -> Capacity:
    """Closed-loop windows of each real kind in turn (after a warm-up of each), then the stock-caller window."""
    capacity = Capacity()

    def loop(kind: str, seconds: float, label: str, counted: bool = True, forget: bool = True) -> int:
        jobs = [PressLoopJob(environ, config.client_timeout_seconds, kind, session_id, f"cap-{kind}-d{desk}",
                             config.threads, seconds, config.outcome, config.press_task, forget)
                for desk in range(config.desks)]
        measured = pool.run(jobs, on_go=meter.start)
        records = [record for records, _ in measured.results for record in records]
        window = WindowResult(label, math.nan, seconds, max(end for _, end in measured.results) - measured.started,
                              records, meter.stop(len(records)))
        check_window(window)
        capacity.two_trip_answers += [record.answer for record in records if record.answer is not None]
        if counted:
            capacity.windows[kind].append((len(records), window.elapsed_seconds, window.cpu))
            capacity.latencies_ms[kind] += values(records, "total_ms")
        return len(records)

    for kind in REAL_KINDS:
        loop(kind, config.warmup_seconds, f"warm-{kind}", counted=False)
    for turn in range(config.windows_per_kind):
        for kind in (REAL_KINDS if turn % 2 == 0 else REAL_KINDS[::-1]):
            loop(kind, config.seconds, f"capacity-{kind}-{turn}")
    harness.say(f"  saturated capacity, {config.desks * config.threads} closed-loop callers: " + "; ".join(
        f"{LABELS[kind]} {capacity.per_second(kind):.1f} presses/s, p50 "
        f"{percentile(capacity.latencies_ms[kind], 0.5):.1f} ms, {capacity.cpu(kind).line('press')}"
        for kind in REAL_KINDS))
    backend = redis.Redis.from_url(harness.servers.settings.result_backend)
    try:  # stock callers: clients that leave every answer in the result database
        for kind in REAL_KINDS:
            loop(kind, config.warmup_seconds / 2, f"warm-stock-{kind}", counted=False, forget=False)
            backend.flushdb()  # their warm-up's answers: every other answer was deleted once read
            before = int(backend.info("memory")["used_memory"])
            presses = loop(kind, config.seconds, f"stock-{kind}", counted=False, forget=False)
            capacity.stock[kind] = _held_answers(backend, presses, before)
            backend.flushdb()
    finally:
        backend.close()
    harness.say("  stock callers (every answer left in Redis): " + "; ".join(
        f"{LABELS[kind]} {capacity.stock_bytes_per_press(kind):.0f} bytes per press" for kind in REAL_KINDS)
        + f", kept {harness.servers.settings.result_expires_seconds} s (CALLQUEUE_RESULT_EXPIRES_SECONDS)")
    return capacity


def _held_answers(backend: redis.Redis, presses: int, used_memory_before: int) -> dict[str, int]:
    """What ``presses`` left in the result database: answers, their MEMORY USAGE, Redis's used_memory growth."""
    keys = list(backend.scan_iter(count=1000))
    return {"presses": presses, "answers_left": len(keys),
            "memory_usage_bytes": sum(backend.memory_usage(key) or 0 for key in keys),
            "used_memory_growth_bytes": int(backend.info("memory")["used_memory"]) - used_memory_before}
