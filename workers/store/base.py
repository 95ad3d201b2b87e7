"""What every stage of the store shares: its collections, their deadlines, reading a session, and the rechecks.

Each stage (``claim``, ``sessions``, ``leases``, ``batch``) is a mixin of
``AssignmentStore`` built on ``StoreStage``.
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Any, ContextManager

import pymongo
from pymongo.database import Database

from workers.exceptions import SessionClosed, UnknownSession, UnknownStudent
from workers.models import PENDING, CallSession, StudentState
from workers.store.documents import (
    SESSIONS, STATE_FIELDS, STUDENTS, SUPPRESSIONS, clock, closing_update, is_repeat, why_not_held,
)
from workers.store.durability import Collections, translating_driver_errors


class StoreStage:
    """The collections (bound to their concerns, see ``durability``) and the deadline of bulk work.

    ``window_lead_seconds``: how long before a window's last-call time its
    students leave the pool (``workers.store.windows``); twice the promotion
    interval in the workers.
    """

    def __init__(self, database: Database, bulk_timeout_seconds: float | None = None,
                 window_lead_seconds: float = 0.0) -> None:
        collections = Collections.of(database, SESSIONS, STUDENTS, SUPPRESSIONS)
        self.client = collections.client
        self.sessions = collections.sessions
        self.students = collections.students
        self.students_recheck = collections.students_recheck
        self.suppressions = collections.suppressions
        self.bulk_timeout_seconds = bulk_timeout_seconds
        self.window_lead_seconds = window_lead_seconds

    def bulk_deadline(self) -> ContextManager[object]:
        """The deadline of import, batch, close and reopen work, longer than a claim's (``pymongo.timeout``)."""
        if self.bulk_timeout_seconds is None:
            return contextlib.nullcontext()
        return pymongo.timeout(self.bulk_timeout_seconds)

    @translating_driver_errors
    def get_session(self, session_id: str) -> CallSession | None:
        """The session, or None when it does not exist."""
        document = self.sessions.find_one({"_id": session_id})
        return None if document is None else CallSession.from_document(document)

    @translating_driver_errors
    def open_sessions(self, limit: int) -> list[CallSession]:
        """Up to ``limit`` open sessions, in one read (served by the ``session_status`` index)."""
        return [CallSession.from_document(document)
                for document in self.sessions.find({"status": "open"}).limit(limit)]

    def note_personal_callbacks(self, session_ids: list[str]) -> None:
        """Mark the sessions as having personal callbacks, before one is scheduled.

        From then on their presses also name their assistant's personal lane
        (``CallSession.personal_callbacks``); workers see the mark within
        their session cache time. The mark is never removed.
        """
        self.sessions.update_many({"_id": {"$in": session_ids}, "personal_callbacks": {"$ne": True}},
                                  {"$set": {"personal_callbacks": True}})

    def require_session(self, session_id: str) -> CallSession:
        """The session; ``UnknownSession`` when it does not exist."""
        session = self.get_session(session_id)
        if session is None:
            raise UnknownSession(f"call session {session_id!r} does not exist", call_session_id=session_id)
        return session

    def open_session(self, session_id: str) -> CallSession:
        """The session if it exists and is open; otherwise a rejection."""
        session = self.require_session(session_id)
        if not session.is_open:
            raise SessionClosed(f"call session {session_id!r} is closed", call_session_id=session_id)
        return session

    def settle_if_closed(self, session_id: str, now: datetime | None = None) -> None:
        """In a closed session, a student back in the pool takes the close outcome at once."""
        session = self.sessions.find_one({"_id": session_id, "status": "closed"}, {"closed_outcome": 1})
        if session is not None:
            self.students.update_many(
                {"call_session_id": session_id, "filter_status": PENDING, "assigned_to": None},
                closing_update(session.get("closed_outcome") or "session_closed", None, clock(now)))

    def refusal(self, action: str, session_id: str, student_id: str, assistant_id: str,
                token: int, outcome: str | None) -> dict[str, Any]:
        """Explain why a guarded update matched nothing, or recognise a repeat of it.

        A repeat is the same action by the same assistant under the same
        token (and with the same outcome): its history entry is found and the
        student's document is returned with ``history`` holding just that
        entry. Otherwise the fitting rejection is raised.

        A recheck (``students_recheck``): the write that changed the student
        may be moments old, and the answer must reflect it and be durable.
        """
        earlier = {"$elemMatch": {"event": action, "assistant_id": assistant_id, "token": token}}
        document = self.students_recheck.find_one({"_id": student_id, "call_session_id": session_id},
                                                  {**STATE_FIELDS, "history": earlier})
        if document is None:
            if self.sessions.count_documents({"_id": session_id}, limit=1) == 0:
                raise UnknownSession(f"call session {session_id!r} does not exist")
            raise UnknownStudent(f"student {student_id!r} is not in call session {session_id!r}")
        entry = (document.get("history") or [{}])[-1]
        if is_repeat(entry, action, assistant_id, token, outcome):
            return document
        state = StudentState.from_document(document)
        raise why_not_held(state, assistant_id, token, document.get("last_completion"))
