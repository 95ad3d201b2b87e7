"""The dashboard's one reader of MongoDB: a shared poll whose cost does not grow with the browsers watching.

Pages and live streams never query MongoDB per browser. They ask the ``Hub``
for a *view* (a page of the open sessions list, or one session's page); the
hub keeps each view's latest figures, and one background loop per process
refreshes the views that somebody is watching (an open live stream), then
wakes every stream, which sends its browser the new figures from memory.

What one refresh reads is bounded by the data shown, not by the browsers:
the open sessions are listed once (one query), each session's summary is read
once however many views show it, and each watched session page once. After a
refresh that took ``d`` seconds the loop pauses for at least
``poll_seconds`` and at least ``d * (1 - BUSY_SHARE) / BUSY_SHARE``, so it
keeps one MongoDB connection busy at most ``BUSY_SHARE`` of the time, however
large the sessions and however many browsers watch.

A view nobody watches is read when a page asks for it (at most once per
``poll_seconds``; concurrent requests share that read) and forgotten later.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, AsyncIterator, Callable, Hashable

import anyio.to_thread

from callqueue.config import Settings
from callqueue.workers.figures import SessionDetail, SessionSummary, start_of_day
from callqueue.workers.models import CallSession
from callqueue.workers.store import AssignmentStore, utcnow

BUSY_SHARE = 0.25
OPEN, CLOSED = "open", "closed"
MAX_OPEN_SESSIONS = 10_000
LATEST_EVENTS = 30
FORGET_AFTER_SECONDS = 300.0


@dataclass(frozen=True)
class ListKey:
    """A page of the sessions list: status, search text, page number (from 1)."""

    status: str
    search: str
    page: int


@dataclass(frozen=True)
class SessionKey:
    """One session's page."""

    session_id: str


@dataclass(frozen=True)
class SessionsView:
    """A page of the sessions list with the summary of each session on it."""

    key: ListKey
    rows: tuple[SessionSummary, ...]
    total: int
    pages: int


@dataclass
class _Entry:
    value: Any = None
    read_at: float = float("-inf")
    watchers: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class Reader:
    """The views, read through the store (synchronous; the hub runs it in a worker thread)."""

    def __init__(self, store: AssignmentStore, settings: Settings) -> None:
        self.store = store
        self.settings = settings

    def open_sessions(self) -> list[CallSession]:
        """Every open session, newest first (one query)."""
        return self.store.list_sessions(OPEN, "", 0, MAX_OPEN_SESSIONS)[0]

    def sessions_view(self, key: ListKey, open_sessions: list[CallSession] | None,
                      summary: Callable[[CallSession], SessionSummary]) -> SessionsView:
        """A page of the list; the open list is filtered in memory, the closed one read from MongoDB."""
        size = self.settings.dashboard_page_size
        skip = (key.page - 1) * size
        if key.status == OPEN and open_sessions is not None:
            needle = key.search.casefold()
            matching = [s for s in open_sessions if needle in s.id.casefold() or needle in s.name.casefold()]
            sessions, total = matching[skip:skip + size], len(matching)
        else:
            sessions, total = self.store.list_sessions(key.status, key.search, skip, size)
        return SessionsView(key, tuple(summary(session) for session in sessions), total,
                            max(1, -(-total // size)))

    def detail(self, key: SessionKey, summary: Callable[[CallSession], SessionSummary]) -> SessionDetail | None:
        """Everything the session page shows, or None when the session does not exist."""
        session = self.store.get_session(key.session_id)
        if session is None:
            return None
        now = utcnow()
        return SessionDetail(
            summary=summary(session),
            day=self.store.day_activity(session.id, start_of_day(now, self.settings.stats_time_zone), now),
            callbacks_due=tuple(self.store.callbacks_due(session.id, now + timedelta(hours=1))),
            next_retry_at=self.store.next_retry_at(session.id),
            latest_events=tuple(self.store.latest_events(session.id, LATEST_EVENTS)),
        )

    def read(self, keys: list[Hashable]) -> dict[Hashable, Any]:
        """One refresh: every view in ``keys``, each session's summary read once (within the store's deadline)."""
        with self.store.bulk_deadline():
            return self._read(keys)

    def _read(self, keys: list[Hashable]) -> dict[Hashable, Any]:
        summaries: dict[str, SessionSummary] = {}

        def summary(session: CallSession) -> SessionSummary:
            if session.id not in summaries:
                summaries[session.id] = self.store.summary(session)
            return summaries[session.id]

        open_sessions = self.open_sessions() if any(isinstance(k, ListKey) and k.status == OPEN for k in keys) \
            else None
        views: dict[Hashable, Any] = {}
        for key in keys:
            if isinstance(key, ListKey):
                views[key] = self.sessions_view(key, open_sessions, summary)
            elif isinstance(key, SessionKey):
                views[key] = self.detail(key, summary)
        return views


class Hub:
    """The shared poll (see module doc): views, their watchers, and the loop that refreshes them."""

    def __init__(self, reader: Reader, poll_seconds: float) -> None:
        self.reader = reader
        self.poll_seconds = poll_seconds
        self.version = 0
        self.last_refresh_seconds = 0.0
        self.refreshes = 0
        self._entries: dict[Hashable, _Entry] = {}
        self._changed = asyncio.Condition()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="dashboard-poll")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def refresh_soon(self) -> None:
        """Cut the pause short (after a supervisor's action)."""
        self._wake.set()

    async def get(self, key: Hashable) -> Any:
        """The view's figures, read now unless a read is at most ``poll_seconds`` old."""
        entry = self._entries.setdefault(key, _Entry())
        async with entry.lock:
            if time.monotonic() - entry.read_at > self.poll_seconds:
                views = await anyio.to_thread.run_sync(self.reader.read, [key])
                entry.value, entry.read_at = views[key], time.monotonic()
        return entry.value

    @contextlib.asynccontextmanager
    async def watching(self, key: Hashable) -> AsyncIterator["Watch"]:
        """Keep ``key`` refreshed by the loop while the block runs (one live stream)."""
        entry = self._entries.setdefault(key, _Entry())
        entry.watchers += 1
        self._wake.set()
        try:
            yield Watch(self, key)
        finally:
            entry.watchers -= 1

    async def _loop(self) -> None:
        while True:
            started = time.monotonic()
            watched = [key for key, entry in self._entries.items() if entry.watchers > 0]
            if watched:
                try:
                    views = await anyio.to_thread.run_sync(self.reader.read, watched)
                except Exception:  # noqa: BLE001 - MongoDB away: keep the last figures, try again next round
                    views = {}
                read_at = time.monotonic()
                for key, value in views.items():
                    self._entries[key].value, self._entries[key].read_at = value, read_at
                self.refreshes += 1
            self.last_refresh_seconds = time.monotonic() - started
            self._forget(started)
            async with self._changed:
                self.version += 1
                self._changed.notify_all()
            pause = max(self.poll_seconds, self.last_refresh_seconds * (1 - BUSY_SHARE) / BUSY_SHARE)
            self._wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), pause)

    def _forget(self, now: float) -> None:
        for key in [key for key, entry in self._entries.items()
                    if entry.watchers == 0 and now - entry.read_at > FORGET_AFTER_SECONDS and not entry.lock.locked()]:
            del self._entries[key]

    async def _next_version(self, after: int, timeout_seconds: float) -> int:
        async with self._changed:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait_for(lambda: self.version > after), timeout_seconds)
            return self.version


@dataclass
class Watch:
    """One live stream's view of the hub."""

    hub: Hub
    key: Hashable

    async def next(self, after: int, timeout_seconds: float) -> tuple[int, Any]:
        """Wait for a refresh newer than ``after`` (or the timeout): the version and the view's figures."""
        version = await self.hub._next_version(after, timeout_seconds)
        return version, self.hub._entries[self.key].value
