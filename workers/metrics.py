"""Domain counters in Redis: claims, completions, releases, reclaims, rejections by code.

Flower counts tasks; it cannot know that a task claimed a student or was
refused as ``stale_token``. Workers therefore add every event they log to one
Redis hash, which ``python -m producers metrics`` exports for Prometheus and
``python -m producers stats --watch`` turns into claims per second.
Counting never fails a task: if Redis cannot be reached the count is skipped
with a warning.
"""

from __future__ import annotations

import logging
import os
import threading

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

METRICS_KEY = "callqueue:metrics"
EVENT_PREFIX = "events:"
REJECTION_PREFIX = "rejections:"

logger = logging.getLogger("callqueue.metrics")
_clients: dict[tuple[int, str], redis.Redis] = {}
_lock = threading.Lock()


def redis_client(url: str) -> redis.Redis:
    """This process's client for ``url`` (made on first use, never shared across a fork)."""
    key = (os.getpid(), url)
    client = _clients.get(key)
    if client is None:
        with _lock:
            client = _clients.setdefault(key, redis.Redis.from_url(
                url, socket_timeout=1.0, socket_connect_timeout=1.0,
                retry=Retry(NoBackoff(), 0)))  # a lost count beats a slow task
    return client


def count_event(client: redis.Redis, event: str, amount: int = 1, code: str | None = None) -> None:
    """Add ``amount`` to the event's counter (and to the rejection code's, for rejections)."""
    try:
        with client.pipeline(transaction=False) as pipe:
            pipe.hincrby(METRICS_KEY, f"{EVENT_PREFIX}{event}", amount)
            if code is not None:
                pipe.hincrby(METRICS_KEY, f"{REJECTION_PREFIX}{code}", amount)
            pipe.execute()
    except redis.RedisError as exc:
        logger.warning("metrics not counted (%s): Redis unreachable", type(exc).__name__)


def read_counters(client: redis.Redis) -> tuple[dict[str, int], dict[str, int]]:
    """All counters: (events by name, rejections by code)."""
    raw = {key.decode(): int(value) for key, value in client.hgetall(METRICS_KEY).items()}
    events = {k.removeprefix(EVENT_PREFIX): v for k, v in raw.items() if k.startswith(EVENT_PREFIX)}
    rejections = {k.removeprefix(REJECTION_PREFIX): v for k, v in raw.items() if k.startswith(REJECTION_PREFIX)}
    return events, rejections
