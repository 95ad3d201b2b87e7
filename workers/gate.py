"""The store gate: a worker that cannot reach a MongoDB primary stops taking messages until it can.

Workers on several hosts share one queue. When one host loses its way to the
primary (a partition, a broken route) while others keep theirs, every message
that host takes would wait out the operation timeout and be retried: callers
behind it would wait for nothing. The gate is a consumer bootstep in the
worker's main process. A probe thread pings the primary every
``CALLQUEUE_WORKER_STORE_CHECK_SECONDS``; after ``FAILED_CHECKS_TO_PAUSE``
failures in a row the worker cancels its queue consumers (messages stay in
Redis for the workers that can serve them), and at the first success it
consumes again. Each change is logged as ``store_unreachable`` /
``store_reachable``.

Only a worker whose MongoDB is a replica set (or mongos) pauses: there an
election or a partition may leave other workers able to serve. A worker on a
standalone that is down keeps taking messages, which retry with backoff and
then fail visibly, as they would with no gate.

An election pauses every worker for its length, which costs nothing: no
worker could claim then anyway, and the messages wait in Redis.

The same check reads the primary's clock (``workers.clock``): a worker whose
clock differs from the database's by more than
``CALLQUEUE_MAX_CLOCK_SKEW_SECONDS`` in ``FAILED_CHECKS_TO_PAUSE`` checks in a
row stops taking messages the same way (``clock_skewed``), and takes them
again at the first check within the bound (``clock_in_step``). The first check
runs before the worker consumes anything, so a worker that starts with a
wrong clock takes no message: Celery would judge their ``expires`` on that
clock and discard good presses (ahead) or run stale ones (behind). Each check
is published in Redis for ``health`` and the exporter.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timezone
from typing import Any, Callable

import pymongo
import redis
from celery import bootsteps
from pymongo import MongoClient
from pymongo.errors import PyMongoError

from callqueue.config import Settings, load_settings
from callqueue.workers.clock import SKEWED, UNREACHABLE, ClockReading, WorkerClock, publish, read_offset
from callqueue.workers.eventlog import log_event
from callqueue.workers.metrics import redis_client
from callqueue.workers.store.durability import can_fail_over

FAILED_CHECKS_TO_PAUSE = 2
CHECK_TIMEOUT_SECONDS = 1.0
# A worker's clock record outlives this many checks, so a stopped worker's record soon disappears.
RECORD_LIFETIME_CHECKS = 20

logger = logging.getLogger("callqueue.gate")


class PrimaryProbe(threading.Thread):
    """Checks the primary on a fixed interval: whether the last checks reached it, and its clock against ours."""

    def __init__(self, settings: Settings, worker: str = "", paused: Callable[[], str | None] = lambda: None
                 ) -> None:
        super().__init__(name="callqueue-store-probe", daemon=True)
        self.settings = settings
        self.interval_seconds = settings.worker_store_check_seconds
        self.worker = worker
        self.paused = paused
        self.failures = 0
        self.skewed_checks = 0
        self.reading: ClockReading | None = None
        self._stopped = threading.Event()
        self._timeout_seconds = min(CHECK_TIMEOUT_SECONDS, settings.mongo_operation_timeout_seconds)
        self._client: MongoClient | None = None

    @property
    def reachable(self) -> bool:
        return self.failures < FAILED_CHECKS_TO_PAUSE

    @property
    def skewed(self) -> bool:
        return self.skewed_checks >= FAILED_CHECKS_TO_PAUSE

    def client(self) -> MongoClient:
        if self._client is None:
            timeout_ms = int(self._timeout_seconds * 1000)
            self._client = MongoClient(
                self.settings.mongo_url, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms,
                heartbeatFrequencyMS=max(500, int(self.settings.mongo_heartbeat_seconds * 1000)),
                appname="callqueue-gate", tz_aware=True)
        return self._client

    def check(self, first: bool = False) -> None:
        """One check: reach the primary and read its clock; the first check alone may find the clock skewed."""
        client = self.client()
        reading = self._read(client)
        if reading is not None or not can_fail_over(client):
            self.failures = 0
        else:
            self.failures += 1
        if reading is not None:
            self.reading = reading
            over = reading.beyond(self.settings.max_clock_skew_seconds)
            self.skewed_checks = (FAILED_CHECKS_TO_PAUSE if first else self.skewed_checks + 1) if over else 0
        self._publish()

    def run(self) -> None:
        try:
            while not self._stopped.wait(self.interval_seconds):
                self.check()
        finally:
            if self._client is not None:
                self._client.close()

    def _read(self, client: MongoClient) -> ClockReading | None:
        try:
            with pymongo.timeout(self._timeout_seconds):
                return read_offset(client)  # a command selects the primary
        except PyMongoError:
            return None

    def _publish(self) -> None:
        """Tell ``health`` and the exporter what this check found (a Redis outage only skips the record)."""
        if not self.worker or self.reading is None:
            return
        reason = self.paused()
        record = WorkerClock(self.worker, round(self.reading.offset_seconds, 4),
                             round(self.reading.uncertainty_seconds, 4), self.settings.max_clock_skew_seconds,
                             reason is not None, reason, datetime.now(timezone.utc).isoformat())
        try:
            publish(redis_client(self.settings.broker_url, self.settings.redis_sentinel_master), record,
                    int(RECORD_LIFETIME_CHECKS * self.interval_seconds) + 1)
        except redis.RedisError as exc:
            logger.debug("clock record not published (%s)", type(exc).__name__)

    def stop(self) -> None:
        self._stopped.set()


class StoreGate(bootsteps.StartStopStep):
    """Consumer bootstep: cancel the task queues while the primary is unreachable or the clock is off,
    add them back after."""

    requires = {"celery.worker.consumer.tasks:Tasks"}

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.settings = load_settings()
        self.probe: PrimaryProbe | None = None
        self.timer_entry: Any = None
        self.paused_queues: list[str] = []
        self.reason: str | None = None

    def start(self, consumer: Any) -> None:
        if self.settings.worker_store_check_seconds <= 0:
            return
        if self.probe is None:
            self.probe = PrimaryProbe(self.settings, consumer.hostname, lambda: self.reason)
            self.probe.check(first=True)  # before the event loop takes any message
            self.apply(consumer)
            self.probe.start()
        self.timer_entry = consumer.timer.call_repeatedly(
            self.settings.worker_store_check_seconds, self.apply, (consumer,), priority=10)

    def apply(self, consumer: Any) -> None:
        """Runs in the consumer's own loop: pause or resume to match the probe."""
        if self.probe is None:
            return
        reason = UNREACHABLE if not self.probe.reachable else SKEWED if self.probe.skewed else None
        if reason is not None and not self.paused_queues:
            self._pause(consumer, reason)
        elif reason is None and self.paused_queues:
            self._resume(consumer)
        elif reason is not None and reason != self.reason:
            self.reason = reason  # still paused, for another reason now

    def _pause(self, consumer: Any, reason: str) -> None:
        queues = [queue.name for queue in consumer.task_consumer.queues] if consumer.task_consumer else []
        for name in queues:
            consumer.cancel_task_queue(name)
        self.paused_queues, self.reason = queues, reason
        assert self.probe is not None
        if reason == SKEWED and self.probe.reading is not None:
            log_event("clock_skewed", queues=queues, offset_seconds=round(self.probe.reading.offset_seconds, 3),
                      bound_seconds=self.settings.max_clock_skew_seconds)
        else:
            log_event("store_unreachable", queues=queues, failed_checks=self.probe.failures)

    def _resume(self, consumer: Any) -> None:
        for name in self.paused_queues:
            consumer.add_task_queue(name)
        reading = self.probe.reading if self.probe else None
        if self.reason == SKEWED:
            log_event("clock_in_step", queues=self.paused_queues,
                      offset_seconds=None if reading is None else round(reading.offset_seconds, 3))
        else:
            log_event("store_reachable", queues=self.paused_queues)
        self.paused_queues, self.reason = [], None

    def stop(self, consumer: Any) -> None:
        if self.timer_entry is not None:
            self.timer_entry.cancel()
            self.timer_entry = None

    def shutdown(self, consumer: Any) -> None:
        self.stop(consumer)
        if self.probe is not None:
            self.probe.stop()
            self.probe = None
