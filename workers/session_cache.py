"""A worker process's short memory of which sessions are open.

Every "Get Next" needs the session (is it open? how long is its lease?).
Reading it from MongoDB on every press costs as much as the claim itself, so
each process keeps the open sessions for ``session_cache_seconds`` and then
reloads all of them in one read (up to ``MAX_ENTRIES``). A call centre with
many sessions thus pays one read per process per interval, not one per press;
a session opened since the last reload is read on its own once.

This is safe for the guarantee: closing a session marks every pending,
unassigned student with the close outcome, so a claim made on a stale "open"
finds nobody to claim; the task then reads the session afresh and answers
``session_closed``. A new lease length applies to claims within that time.
"""

from __future__ import annotations

import time

from callqueue.workers.store import AssignmentStore
from callqueue.workers.models import CallSession

MAX_ENTRIES = 10_000


class OpenSessionCache:
    """The open sessions as of the last reload, trusted for ``ttl_seconds``."""

    def __init__(self, ttl_seconds: float) -> None:
        self.ttl_seconds = ttl_seconds
        self._sessions: dict[str, CallSession] = {}
        self._fresh_until = 0.0

    def open_session(self, store: AssignmentStore, session_id: str) -> CallSession:
        """The open session, from memory if recent, else from ``store`` (which refuses closed ones)."""
        if time.monotonic() >= self._fresh_until:
            self._reload(store)
        session = self._sessions.get(session_id)
        if session is None:
            session = store.open_session(session_id)
            if len(self._sessions) < MAX_ENTRIES:
                self._sessions[session_id] = session
        return session

    def known_session(self, store: AssignmentStore, session_id: str) -> CallSession | None:
        """The session from memory when it is open, else as read now (closed ones too; None if unknown).

        Completions use it for the session's retry rules, which therefore
        apply within ``ttl_seconds`` of a change.
        """
        if time.monotonic() >= self._fresh_until:
            self._reload(store)
        return self._sessions.get(session_id) or store.get_session(session_id)

    def _reload(self, store: AssignmentStore) -> None:
        """Replace the memory with the open sessions, read at once."""
        sessions = store.open_sessions(MAX_ENTRIES)
        self._sessions = {session.id: session for session in sessions}
        self._fresh_until = time.monotonic() + self.ttl_seconds
