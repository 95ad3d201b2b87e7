"""Domain counters in Redis: claims, completions, releases, reclaims, rejections by code.

Flower counts tasks; it cannot know that a task claimed a student or was
refused as ``stale_token``. Workers therefore add every event they log to one
Redis hash, which ``python -m producers metrics`` exports for Prometheus and
``python -m producers stats --watch`` turns into claims per second.

A task never waits on Redis for a count: each process adds its counts in
memory (``CounterBuffer``) and one daemon thread writes them to the hash every
``FLUSH_INTERVAL_SECONDS``. So a counter lags by at most that interval, and a
worker process that dies (SIGKILL, OOM) loses at most the counts of its last
interval; a process that shuts down normally writes what it holds first.
Counting never fails a task: if Redis cannot be reached the counts are kept
and written at the next successful flush (they are a handful of fields: one
per event name and rejection code).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from collections import Counter

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from callqueue.workers.transport import redis_connection

METRICS_KEY = "callqueue:metrics"
EVENT_PREFIX = "events:"
REJECTION_PREFIX = "rejections:"
FLUSH_INTERVAL_SECONDS = 1.0

logger = logging.getLogger("callqueue.metrics")
_clients: dict[tuple[int, str, str | None], redis.Redis] = {}
_buffers: dict[tuple[int, str, str | None], "CounterBuffer"] = {}
_lock = threading.Lock()


def redis_client(url: str, master_name: str | None = None) -> redis.Redis:
    """This process's client for ``url`` (made on first use, never shared across a fork).

    For a ``sentinel://`` URL, ``master_name`` names the master; the client
    asks the sentinels for it on each new connection, so counts follow a failover.
    """
    key = (os.getpid(), url, master_name)
    client = _clients.get(key)
    if client is None:
        with _lock:
            client = _clients.setdefault(key, redis_connection(
                url, master_name, socket_timeout=1.0, socket_connect_timeout=1.0,
                retry=Retry(NoBackoff(), 0)))  # a late count beats a slow flush
    return client


def write_counts(client: redis.Redis, counts: Counter[str]) -> bool:
    """One pipelined HINCRBY per field; False (with a warning) when Redis cannot be reached."""
    try:
        with client.pipeline(transaction=False) as pipe:
            for field, amount in counts.items():
                pipe.hincrby(METRICS_KEY, field, amount)
            pipe.execute()
        return True
    except redis.RedisError as exc:
        logger.warning("metrics not counted yet (%s): Redis unreachable", type(exc).__name__)
        return False


def read_counters(client: redis.Redis) -> tuple[dict[str, int], dict[str, int]]:
    """All counters: (events by name, rejections by code)."""
    raw = {key.decode(): int(value) for key, value in client.hgetall(METRICS_KEY).items()}
    events = {k.removeprefix(EVENT_PREFIX): v for k, v in raw.items() if k.startswith(EVENT_PREFIX)}
    rejections = {k.removeprefix(REJECTION_PREFIX): v for k, v in raw.items() if k.startswith(REJECTION_PREFIX)}
    return events, rejections


class CounterBuffer:
    """Counts kept in memory and written to Redis by one background thread.

    ``add`` only touches a ``Counter`` under a lock, so counting costs a task
    no network round trip. The thread starts on the first ``add`` (in the
    process that counts, after any fork) and flushes every
    ``interval_seconds``; a failed flush puts its counts back for the next one.
    """

    def __init__(self, client: redis.Redis, interval_seconds: float = FLUSH_INTERVAL_SECONDS) -> None:
        self.client = client
        self.interval_seconds = interval_seconds
        self._pending: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._flushing = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()

    def add(self, event: str, amount: int = 1, code: str | None = None) -> None:
        """Count the event; it reaches Redis within ``interval_seconds``."""
        with self._lock:
            self._pending.update(_fields(event, amount, code))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="callqueue-metrics", daemon=True)
                self._thread.start()

    def flush(self) -> bool:
        """Write what is pending now; True when nothing is left unwritten."""
        with self._flushing:
            with self._lock:
                counts, self._pending = self._pending, Counter()
            if not counts or write_counts(self.client, counts):
                return True
            with self._lock:
                self._pending.update(counts)
            return False

    def close(self) -> None:
        """Stop the thread and write what is left (process shutdown)."""
        self._stopped.set()
        self.flush()

    def _run(self) -> None:
        while not self._stopped.wait(self.interval_seconds):
            self.flush()


def counter_buffer(url: str, master_name: str | None = None) -> CounterBuffer:
    """This process's buffer for the Redis at ``url`` (one per process; flushed at normal exit)."""
    key = (os.getpid(), url, master_name)
    buffer = _buffers.get(key)
    if buffer is None:
        client = redis_client(url, master_name)
        with _lock:
            buffer = _buffers.setdefault(key, CounterBuffer(client))
    return buffer


def flush_all() -> None:
    """Write every buffer of this process (worker child shutdown, interpreter exit)."""
    for (pid, _, _), buffer in list(_buffers.items()):
        if pid == os.getpid():
            buffer.close()


def _fields(event: str, amount: int, code: str | None) -> Counter[str]:
    fields = Counter({f"{EVENT_PREFIX}{event}": amount})
    if code is not None:
        fields[f"{REJECTION_PREFIX}{code}"] += amount
    return fields


atexit.register(flush_all)
