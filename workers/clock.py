"""One clock for every time decision: MongoDB's. How far a process's own clock is from it, and who knows.

The store writes and compares only the database's time (``$$NOW``, or the
primary's ``localTime`` read once), so a host whose clock is off cannot
reclaim a lease early, bring a callback back early or call outside the
calling hours. Two things still read a process's own clock, and so need it to
be close to the database's:

* Celery judges a message's ``expires`` on the clock of the worker that took
  it: a worker running ahead discards messages as expired (every press of the
  producer client, every beat job), one running behind runs messages that
  should have expired. So each worker measures its offset on every store
  check (``workers.gate``), stops taking messages while it exceeds
  ``CALLQUEUE_MAX_CLOCK_SKEW_SECONDS`` and takes them again when it is back;
* beat stamps its jobs' ``expires`` from the database's clock (``workers.beat``),
  so a beat host whose clock is off still sends jobs that live as long as
  they should.

The offset is the database's time minus the midpoint of the ``hello`` round
trip on this process's clock; half the round trip is its uncertainty.
Workers publish their last reading in Redis (``callqueue:clock:<worker>``,
expiring), where ``python -m producers health`` and the exporter read it.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

import redis
from pymongo import MongoClient

CLOCK_KEY_PREFIX = "callqueue:clock:"
SKEWED, UNREACHABLE = "clock_skew", "store_unreachable"


@dataclass(frozen=True)
class ClockReading:
    """The database's clock minus this process's, and how sure that is (half the round trip)."""

    offset_seconds: float
    uncertainty_seconds: float

    def beyond(self, bound_seconds: float) -> bool:
        """True when the clocks certainly differ by more than ``bound_seconds``."""
        return abs(self.offset_seconds) - self.uncertainty_seconds > bound_seconds


def read_offset(client: MongoClient) -> ClockReading:
    """One ``hello`` to the primary: its ``localTime`` against this process's clock."""
    before = time.time()
    hello = client.admin.command("hello")
    after = time.time()
    server: datetime = hello["localTime"]
    server = server.replace(tzinfo=timezone.utc) if server.tzinfo is None else server
    return ClockReading(server.timestamp() - (before + after) / 2, (after - before) / 2)


@dataclass(frozen=True)
class WorkerClock:
    """What a worker last said about its clock: the offset, the bound, and whether it has stopped taking messages."""

    worker: str
    offset_seconds: float
    uncertainty_seconds: float
    bound_seconds: float
    paused: bool
    reason: str | None
    checked_at: str

    @property
    def skewed(self) -> bool:
        return self.paused and self.reason == SKEWED

    def describe(self) -> str:
        """``worker: +0.003 s`` or ``worker: 3600.2 s ahead of the database, not taking messages``."""
        direction = "behind" if self.offset_seconds > 0 else "ahead of"
        if self.skewed:
            return (f"{self.worker}: clock {abs(self.offset_seconds):.1f} s {direction} the database "
                    f"(bound {self.bound_seconds:g} s), not taking messages")
        state = f", paused: {self.reason}" if self.paused else ""
        return f"{self.worker}: {-self.offset_seconds:+.3f} s{state}"


def publish(client: redis.Redis, record: WorkerClock, ttl_seconds: int) -> None:
    """Store ``record`` under the worker's key, expiring after ``ttl_seconds`` (a stopped worker disappears)."""
    client.set(f"{CLOCK_KEY_PREFIX}{record.worker}", json.dumps(asdict(record)), ex=max(1, ttl_seconds))


def worker_clocks(client: redis.Redis) -> list[WorkerClock]:
    """Every live worker's last record, by worker name."""
    records: list[WorkerClock] = []
    for key in sorted(client.scan_iter(match=f"{CLOCK_KEY_PREFIX}*", count=100)):
        raw: Any = client.get(key)
        if raw:
            try:
                records.append(WorkerClock(**json.loads(raw)))
            except (TypeError, ValueError):
                continue
    return sorted(records, key=lambda record: record.worker)
