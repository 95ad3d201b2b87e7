"""A worker process's short memory of which sessions are open.

Every "Get Next" needs the session (is it open? how long is its lease?).
Reading it from MongoDB on every press costs as much as the claim itself, so
each process remembers an open session for ``session_cache_seconds``. This is
safe for the guarantee: closing a session marks every pending, unassigned
student with the close outcome, so a claim made on a stale "open" finds nobody
to claim; the task then reads the session afresh and answers
``session_closed``. A new lease length applies to claims within that time.
"""

from __future__ import annotations

import time

from workers.store import AssignmentStore
from workers.models import CallSession

MAX_ENTRIES = 10_000


class OpenSessionCache:
    """Sessions known to be open, each trusted for ``ttl_seconds``."""

    def __init__(self, ttl_seconds: float) -> None:
        self.ttl_seconds = ttl_seconds
        self._entries: dict[str, tuple[float, CallSession]] = {}

    def open_session(self, store: AssignmentStore, session_id: str) -> CallSession:
        """The open session, from memory if recent, else from ``store`` (which refuses closed ones)."""
        entry = self._entries.get(session_id)
        if entry is not None and entry[0] > time.monotonic():
            return entry[1]
        session = store.open_session(session_id)
        if len(self._entries) >= MAX_ENTRIES:
            self._entries.clear()
        self._entries[session_id] = (time.monotonic() + self.ttl_seconds, session)
        return session
