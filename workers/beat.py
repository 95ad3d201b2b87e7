"""Beat's scheduler: the periodic jobs' expiry on the database's clock.

Beat sends ``reclaim_expired`` and ``promote_due`` with an ``expires`` of
one interval, so that a backlog of them never piles up while workers are
away. Celery turns that into an absolute time on the *sending* host's clock,
and workers judge it on theirs: a beat host an hour behind would send jobs
that every worker discards as expired (nothing would ever be reclaimed or
promoted), one an hour ahead jobs that never expire. This scheduler stamps
the absolute expiry itself, from the database's clock (``workers.clock``:
the offset is read again every ``OFFSET_REFRESH_SECONDS``), which is the
clock the workers' own is held to (``workers.gate``). The schedule itself
only counts intervals, so the host's clock does not matter there.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

from celery.beat import PersistentScheduler
from pymongo import MongoClient
from pymongo.errors import PyMongoError

from callqueue.config import load_settings
from callqueue.workers.clock import read_offset
from callqueue.workers.eventlog import log_event

OFFSET_REFRESH_SECONDS = 10.0
CHECK_TIMEOUT_MS = 2000

logger = logging.getLogger("callqueue.beat")


class DatabaseClockScheduler(PersistentScheduler):
    """``PersistentScheduler`` whose jobs expire by the database's clock."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._offset_seconds = 0.0
        self._offset_read_at = float("-inf")
        self._mongo: MongoClient | None = None
        self._bound_seconds = load_settings().max_clock_skew_seconds
        super().__init__(*args, **kwargs)

    def apply_async(self, entry: Any, producer: Any = None, advance: bool = True, **kwargs: Any) -> Any:
        entry = self.reserve(entry) if advance else entry
        expires = entry.options.get("expires")
        if isinstance(expires, (int, float)) and not isinstance(expires, bool):
            entry = SimpleNamespace(name=entry.name, task=entry.task, args=entry.args, kwargs=entry.kwargs,
                                    options={**entry.options, "expires": self.database_now() + timedelta(
                                        seconds=expires)})
        return super().apply_async(entry, producer, advance=False, **kwargs)

    def database_now(self) -> datetime:
        """Now by the database's clock (the last offset read; this host's clock if none could be read)."""
        if time.monotonic() - self._offset_read_at >= OFFSET_REFRESH_SECONDS:
            self._refresh_offset()
        return datetime.fromtimestamp(time.time() + self._offset_seconds, timezone.utc)

    def _refresh_offset(self) -> None:
        self._offset_read_at = time.monotonic()
        try:
            if self._mongo is None:
                settings = load_settings()
                self._mongo = MongoClient(settings.mongo_url, serverSelectionTimeoutMS=CHECK_TIMEOUT_MS,
                                          connectTimeoutMS=CHECK_TIMEOUT_MS, timeoutMS=CHECK_TIMEOUT_MS,
                                          appname="callqueue-beat", tz_aware=True)
            reading = read_offset(self._mongo)
        except PyMongoError as exc:
            logger.warning("beat could not read the database's clock (%s); keeping the last offset",
                           type(exc).__name__)
            return
        if abs(reading.offset_seconds) > self._bound_seconds and abs(self._offset_seconds) <= self._bound_seconds:
            log_event("beat_clock_offset", offset_seconds=round(reading.offset_seconds, 3))
        self._offset_seconds = reading.offset_seconds

    def close(self) -> None:
        super().close()
        if self._mongo is not None:
            self._mongo.close()
            self._mongo = None
