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
"""

from __future__ import annotations

import threading
from typing import Any

import pymongo
from celery import bootsteps
from pymongo import MongoClient
from pymongo.errors import PyMongoError

from config import Settings, load_settings
from workers.eventlog import log_event
from workers.store.durability import can_fail_over

FAILED_CHECKS_TO_PAUSE = 2
CHECK_TIMEOUT_SECONDS = 1.0


class PrimaryProbe(threading.Thread):
    """Pings the primary on a fixed interval and remembers whether the last checks reached it."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(name="callqueue-store-probe", daemon=True)
        self.settings = settings
        self.interval_seconds = settings.worker_store_check_seconds
        self.failures = 0
        self._stopped = threading.Event()

    @property
    def reachable(self) -> bool:
        return self.failures < FAILED_CHECKS_TO_PAUSE

    def run(self) -> None:
        timeout_ms = int(min(CHECK_TIMEOUT_SECONDS, self.settings.mongo_operation_timeout_seconds) * 1000)
        client: MongoClient = MongoClient(
            self.settings.mongo_url, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms,
            heartbeatFrequencyMS=max(500, int(self.settings.mongo_heartbeat_seconds * 1000)),
            appname="callqueue-gate")
        try:
            while not self._stopped.wait(self.interval_seconds):
                if self._ping(client, timeout_ms / 1000) or not can_fail_over(client):
                    self.failures = 0
                else:
                    self.failures += 1
        finally:
            client.close()

    @staticmethod
    def _ping(client: MongoClient, timeout_seconds: float) -> bool:
        try:
            with pymongo.timeout(timeout_seconds):
                client.admin.command("ping")  # a command selects the primary
            return True
        except PyMongoError:
            return False

    def stop(self) -> None:
        self._stopped.set()


class StoreGate(bootsteps.StartStopStep):
    """Consumer bootstep: cancel the task queues while the primary is unreachable, add them back after."""

    requires = {"celery.worker.consumer.tasks:Tasks"}

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.settings = load_settings()
        self.probe: PrimaryProbe | None = None
        self.timer_entry: Any = None
        self.paused_queues: list[str] = []

    def start(self, consumer: Any) -> None:
        if self.settings.worker_store_check_seconds <= 0:
            return
        if self.probe is None:
            self.probe = PrimaryProbe(self.settings)
            self.probe.start()
        self.timer_entry = consumer.timer.call_repeatedly(
            self.settings.worker_store_check_seconds, self.apply, (consumer,), priority=10)

    def apply(self, consumer: Any) -> None:
        """Runs in the consumer's own loop: pause or resume to match the probe."""
        if self.probe is None:
            return
        if not self.probe.reachable and not self.paused_queues:
            self._pause(consumer)
        elif self.probe.reachable and self.paused_queues:
            self._resume(consumer)

    def _pause(self, consumer: Any) -> None:
        queues = [queue.name for queue in consumer.task_consumer.queues] if consumer.task_consumer else []
        for name in queues:
            consumer.cancel_task_queue(name)
        self.paused_queues = queues
        log_event("store_unreachable", queues=queues, failed_checks=self.probe.failures if self.probe else 0)

    def _resume(self, consumer: Any) -> None:
        for name in self.paused_queues:
            consumer.add_task_queue(name)
        log_event("store_reachable", queues=self.paused_queues)
        self.paused_queues = []

    def stop(self, consumer: Any) -> None:
        if self.timer_entry is not None:
            self.timer_entry.cancel()
            self.timer_entry = None

    def shutdown(self, consumer: Any) -> None:
        self.stop(consumer)
        if self.probe is not None:
            self.probe.stop()
            self.probe = None
