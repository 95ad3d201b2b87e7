"""What every stage of the store shares: its collections, their deadlines, reading a session, and the rechecks.

Each stage (``claim``, ``sessions``, ``leases``, ``batch``) is a mixin of
``AssignmentStore`` built on ``StoreStage``.
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Any, ContextManager

import pymongo
from pymongo import ReturnDocument
from pymongo.database import Database

from callqueue.workers.exceptions import SessionClosed, UnknownSession, UnknownStudent
from callqueue.workers.models import PENDING, CallSession, StudentState
from callqueue.workers.store.documents import (
    SESSIONS, STATE_FIELDS, STUDENTS, SUPPRESSIONS, clock, closing_update, held_filter, is_repeat, why_not_held,
)
from callqueue.workers.store.durability import Collections, translating_driver_errors
from callqueue.workers.student_ids import forms_tried, id_forms


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
        """Mark the sessions as having personal callbacks, once one was scheduled.

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

    def held_write(self, action: str, session_id: str, given_id: str, assistant_id: str, token: int,
                   update: Any, outcome: str | None = None) -> tuple[dict[str, Any], bool]:
        """One guarded update of the student ``given_id`` names, held by ``assistant_id`` under ``token``.

        ``given_id`` may be the id handed out or the import's id, resolved in
        the order of ``workers.student_ids``. The update is one atomic
        ``find_one_and_update`` on the first form; a second form is written to
        only when the first names no student of the session, so the common
        path is one write. Returns ``(document, True)`` when the update landed,
        ``(earlier document, False)`` for a repeat of the same action (see
        ``refusal``), and otherwise raises the fitting rejection.
        """
        forms = id_forms(session_id, given_id)
        target = forms[0]
        named: dict[str, Any] = {}
        for _form in forms:
            document = self.students.find_one_and_update(
                held_filter(session_id, target, assistant_id, token), update,
                projection=STATE_FIELDS, return_document=ReturnDocument.AFTER)
            if document is not None:
                return document, True
            named = self.named_student(action, session_id, given_id, assistant_id, token)
            if named["_id"] == target:
                break
            target = named["_id"]
        return self.refusal(named, action, assistant_id, token, outcome), False

    def named_student(self, action: str, session_id: str, given_id: str, assistant_id: str,
                      token: int) -> dict[str, Any]:
        """The student ``given_id`` names (the first of its forms that exists), read as a recheck, with this
        holder's earlier ``action`` under ``token`` as its ``history``; ``UnknownSession``/``UnknownStudent``
        (naming the forms tried) when there is none."""
        forms = id_forms(session_id, given_id)
        earlier = {"$elemMatch": {"event": action, "assistant_id": assistant_id, "token": token}}
        found = {document["_id"]: document for document in self.students_recheck.find(
            {"_id": {"$in": list(forms)}, "call_session_id": session_id}, {**STATE_FIELDS, "history": earlier})}
        document = next((found[form] for form in forms if form in found), None)
        if document is None:
            if self.sessions.count_documents({"_id": session_id}, limit=1) == 0:
                raise UnknownSession(f"call session {session_id!r} does not exist")
            raise unknown_student(session_id, given_id)
        return document

    @staticmethod
    def refusal(document: dict[str, Any], action: str, assistant_id: str, token: int,
                outcome: str | None) -> dict[str, Any]:
        """Explain why a guarded update of ``document``'s student matched nothing, or recognise a repeat of it.

        A repeat is the same action by the same assistant under the same
        token (and with the same outcome): the student's document is returned
        with ``history`` holding just that entry. Otherwise the fitting
        rejection is raised.

        ``document`` comes from a recheck (``named_student``): the write that
        changed the student may be moments old, and the answer must reflect it
        and be durable.
        """
        entry = (document.get("history") or [{}])[-1]
        if is_repeat(entry, action, assistant_id, token, outcome):
            return document
        state = StudentState.from_document(document)
        raise why_not_held(state, assistant_id, token, document.get("last_completion"))


def unknown_student(session_id: str, given_id: str) -> UnknownStudent:
    """The rejection for an id that names no student of the session, with the forms tried."""
    return UnknownStudent(f"student {given_id!r} is not in call session {session_id!r} "
                          f"({forms_tried(session_id, given_id)})", tried=list(id_forms(session_id, given_id)))
