"""Every read and write of call sessions and their students.

This is the only module that writes to MongoDB. Its heart is ``assign_next``:

Atomicity guarantee
-------------------
A student is handed out by exactly one ``find_one_and_update`` whose filter
matches only students that are pending and unassigned
(``{call_session_id, filter_status: '', assigned_to: null}``). MongoDB applies
the filter and the update to a document as one atomic step, so two racing
claims can never both match the same student: the loser's filter no longer
matches and the server moves it on to the next student. No read follows the
claim to "double-check" it, and nothing is ever reassigned by timeout here.

A unique partial index on ``(call_session_id, assigned_to)`` over pending,
assigned students makes MongoDB itself refuse to give one assistant a second
student: that claim fails with a duplicate-key error, changes nothing, and the
assistant gets back the student they already hold.

Every public method converts driver outages into ``StoreUnavailable`` and
returns frozen dataclasses from ``workers.models`` (or ``None``).
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterator, Mapping, TypeVar

from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import BulkWriteError, ConnectionFailure, DuplicateKeyError

from workers.exceptions import (
    AlreadyCompleted, NotAssigned, NotHolder, RequestAlreadyServed, RequestConflict,
    SessionClosed, StaleToken, StoreUnavailable, UnknownSession, UnknownStudent,
)
from workers.models import PENDING, Assignment, CallSession, ImportSummary, SessionStats, StudentState

SESSIONS = "call_sessions"
STUDENTS = "call_session_students"

CLAIM_ORDER = [("priority", DESCENDING), ("position", ASCENDING)]
CLAIM_INDEX = "claim_order"
ONE_PER_ASSISTANT_INDEX = "one_student_per_assistant"
REQUEST_INDEX = "claim_request_id"
CLAIM_ATTEMPTS = 3

ASSIGNMENT_FIELDS = {
    "call_session_id": 1, "student": 1, "assigned_to": 1, "assignment_token": 1,
    "assigned_at": 1, "history": {"$slice": -1},
}
STATE_FIELDS = {
    "call_session_id": 1, "filter_status": 1, "assigned_to": 1, "assignment_token": 1,
    "completed_at": 1, "completed_by": 1, "history": {"$slice": -1},
}

T = TypeVar("T")


def translating_driver_errors(method: Callable[..., T]) -> Callable[..., T]:
    """Turn pymongo's connection errors into ``StoreUnavailable`` (the one boundary)."""

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return method(*args, **kwargs)
        except ConnectionFailure as exc:
            raise StoreUnavailable(f"MongoDB is unreachable: {type(exc).__name__}") from exc

    return wrapper


@translating_driver_errors
def ensure_indexes(database: Database) -> None:
    """Create the indexes the claim depends on (a no-op when they exist).

    ``claim_order`` serves the claim's equality filter and its sort, so MongoDB
    walks the index in order and stops at the first match: no in-memory sort,
    and the cost does not grow with the size of the session.
    """
    database[STUDENTS].create_indexes([
        IndexModel(
            [("call_session_id", ASCENDING), ("filter_status", ASCENDING),
             ("assigned_to", ASCENDING), *CLAIM_ORDER],
            name=CLAIM_INDEX,
        ),
        IndexModel(
            [("call_session_id", ASCENDING), ("assigned_to", ASCENDING)],
            name=ONE_PER_ASSISTANT_INDEX,
            unique=True,
            partialFilterExpression={"filter_status": PENDING, "assigned_to": {"$type": "string"}},
        ),
        IndexModel([("history.request_id", ASCENDING)], name=REQUEST_INDEX, sparse=True),
    ])


@dataclass(frozen=True)
class NewStudent:
    """One validated row of an import."""

    student: dict[str, Any]
    priority: int = 0
    position: int | None = None
    key: str | None = None

    def student_key(self) -> str:
        """The caller's id, or a digest of the row so that re-importing a file adds nothing."""
        if self.key is not None:
            return self.key
        canonical = json.dumps([self.student, self.priority], sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:24]


class AssignmentStore:
    """Data access for call sessions and the students in them."""

    def __init__(self, database: Database) -> None:
        self.sessions: Collection = database[SESSIONS]
        self.students: Collection = database[STUDENTS]

    # -- sessions ---------------------------------------------------------

    @translating_driver_errors
    def get_session(self, session_id: str) -> CallSession | None:
        """The session, or None when it does not exist."""
        document = self.sessions.find_one({"_id": session_id})
        return None if document is None else CallSession.from_document(document)

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

    @translating_driver_errors
    def create_session(self, session_id: str, name: str | None, now: datetime | None = None) -> bool:
        """Create the session unless it exists; True when this call created it."""
        result = self.sessions.update_one(
            {"_id": session_id},
            {"$setOnInsert": {"name": name or session_id, "status": "open",
                              "created_at": now or utcnow(), "lease_seconds": None}},
            upsert=True,
        )
        return result.upserted_id is not None

    # -- import -----------------------------------------------------------

    def import_students(self, session_id: str, name: str | None, rows: list[NewStudent],
                        chunk_size: int = 1000) -> ImportSummary:
        """Create the session if needed and insert the students.

        Positions continue after the session's last one unless a row gives its
        own. A row whose id (given, or the digest of its content) is already in
        the session counts as a duplicate and is left as it is, so an import
        that is retried or run twice adds nothing.
        """
        created = self.create_session(session_id, name)
        self.open_session(session_id)
        first = self._next_position(session_id)
        documents = [_student_document(session_id, row, first + index) for index, row in enumerate(rows)]
        inserted = sum(self._insert_new(chunk) for chunk in _chunks(documents, chunk_size))
        return ImportSummary(session_id, created, len(rows), inserted, len(rows) - inserted)

    @translating_driver_errors
    def _next_position(self, session_id: str) -> int:
        last = self.students.find_one({"call_session_id": session_id}, {"position": 1},
                                      sort=[("position", DESCENDING)])
        return 0 if last is None else int(last.get("position", -1)) + 1

    @translating_driver_errors
    def _insert_new(self, documents: list[dict[str, Any]]) -> int:
        try:
            return len(self.students.insert_many(documents, ordered=False).inserted_ids)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(error.get("code") != 11000 for error in errors):
                raise
            return int(exc.details.get("nInserted", 0))

    # -- the claim --------------------------------------------------------

    @translating_driver_errors
    def assign_next(self, session: CallSession, assistant_id: str, request_id: str,
                    now: datetime | None = None) -> Assignment | None:
        """Hand the next pending student of ``session`` to ``assistant_id``.

        Returns the claimed student, the student the assistant already holds
        (``already_held``), the student this ``request_id`` was given before
        (a retried or redelivered request), or None when nobody is left.
        The claim itself is one atomic ``find_one_and_update`` (see module doc).
        """
        earlier = self._answer_for_request(session.id, assistant_id, request_id)
        if earlier is not None:
            return earlier
        for _attempt in range(CLAIM_ATTEMPTS):
            try:
                document = self._claim(session, assistant_id, request_id, now or utcnow())
            except DuplicateKeyError:
                held = self._held_by(session.id, assistant_id, request_id)
                if held is not None:
                    return held
                continue  # the held student was completed or released meanwhile: claim afresh
            return None if document is None else Assignment.from_document(document)
        return self._held_by(session.id, assistant_id, request_id)

    def _claim(self, session: CallSession, assistant_id: str, request_id: str,
               now: datetime) -> Mapping[str, Any] | None:
        """The one atomic claim: match a pending, unassigned student and take it."""
        return self.students.find_one_and_update(
            {"call_session_id": session.id, "filter_status": PENDING, "assigned_to": None},
            _claim_update(assistant_id, request_id, now, session.lease_seconds),
            sort=CLAIM_ORDER,
            projection=ASSIGNMENT_FIELDS,
            return_document=ReturnDocument.AFTER,
            hint=CLAIM_INDEX,
        )

    def _answer_for_request(self, session_id: str, assistant_id: str, request_id: str) -> Assignment | None:
        """The answer already given to ``request_id``, if it was served before."""
        document = self.students.find_one(
            {"history": {"$elemMatch": {"request_id": request_id, "event": "claimed"}}},
            {**ASSIGNMENT_FIELDS, "filter_status": 1,
             "history": {"$elemMatch": {"request_id": request_id, "event": "claimed"}}},
        )
        if document is None:
            return None
        claim = document["history"][0]
        if document["call_session_id"] != session_id or claim["assistant_id"] != assistant_id:
            raise RequestConflict(f"request_id {request_id!r} was used for another session or assistant")
        still_held = (document.get("filter_status") == PENDING and document.get("assigned_to") == assistant_id
                      and document.get("assignment_token") == claim["token"])
        if not still_held:
            raise RequestAlreadyServed(
                f"request_id {request_id!r} was already served with student {document['_id']!r}, "
                "who has since been completed or released; send a new request_id",
                student_id=document["_id"],
            )
        return Assignment.from_document(document)

    def _held_by(self, session_id: str, assistant_id: str, request_id: str) -> Assignment | None:
        """The student the assistant holds; flagged ``already_held`` unless this request claimed it."""
        document = self.students.find_one(
            {"call_session_id": session_id, "filter_status": PENDING, "assigned_to": assistant_id},
            ASSIGNMENT_FIELDS,
        )
        if document is None:
            return None
        assignment = Assignment.from_document(document)
        last = (document.get("history") or [{}])[-1]
        return assignment if last.get("request_id") == request_id else assignment.held_again()

    # -- completion and release --------------------------------------------

    @translating_driver_errors
    def complete(self, session_id: str, student_id: str, assistant_id: str, token: int,
                 outcome: str, request_id: str, now: datetime | None = None) -> StudentState:
        """Record ``outcome`` for a student held by ``assistant_id`` under ``token``.

        One atomic update whose filter requires the current holder and token,
        so a stale holder's late write can never land. A repeat of the same
        completion (same assistant, token and outcome) returns the same state.
        """
        now = now or utcnow()
        document = self.students.find_one_and_update(
            _held_filter(session_id, student_id, assistant_id, token),
            {"$set": {"filter_status": outcome, "completed_at": now, "completed_by": assistant_id,
                      "assigned_to": None, "lease_expires_at": None},
             "$push": {"history": _event("completed", assistant_id, token, request_id, now, outcome=outcome)}},
            projection=STATE_FIELDS,
            return_document=ReturnDocument.AFTER,
        )
        if document is not None:
            return StudentState.from_document(document)
        return self._refusal("completed", session_id, student_id, assistant_id, token, outcome)

    @translating_driver_errors
    def release(self, session_id: str, student_id: str, assistant_id: str, token: int,
                request_id: str, now: datetime | None = None) -> StudentState:
        """Give a held student back to the pool (pending, unassigned)."""
        now = now or utcnow()
        document = self.students.find_one_and_update(
            _held_filter(session_id, student_id, assistant_id, token),
            {"$set": {"assigned_to": None, "assigned_at": None, "lease_expires_at": None},
             "$push": {"history": _event("released", assistant_id, token, request_id, now)}},
            projection=STATE_FIELDS,
            return_document=ReturnDocument.AFTER,
        )
        if document is not None:
            return StudentState.from_document(document)
        return self._refusal("released", session_id, student_id, assistant_id, token, None)

    def _refusal(self, action: str, session_id: str, student_id: str, assistant_id: str,
                 token: int, outcome: str | None) -> StudentState:
        """Explain why a guarded update matched nothing, or recognise a repeat of it."""
        document = self.students.find_one({"_id": student_id, "call_session_id": session_id}, STATE_FIELDS)
        if document is None:
            if self.sessions.count_documents({"_id": session_id}, limit=1) == 0:
                raise UnknownSession(f"call session {session_id!r} does not exist")
            raise UnknownStudent(f"student {student_id!r} is not in call session {session_id!r}")
        state = StudentState.from_document(document)
        last = (document.get("history") or [{}])[-1]
        if _is_repeat(last, action, assistant_id, token, outcome):
            return state
        raise _why_not_held(state, assistant_id, token)

    # -- statistics -------------------------------------------------------

    @translating_driver_errors
    def stats(self, session: CallSession) -> SessionStats:
        """Pending, assigned and completed counts, and who holds a student now."""
        groups = self.students.aggregate([
            {"$match": {"call_session_id": session.id}},
            {"$group": {"_id": {"outcome": "$filter_status", "holder": "$assigned_to"}, "n": {"$sum": 1}}},
        ])
        pending, holders, completed = 0, [], {}
        for group in groups:
            outcome, holder = group["_id"].get("outcome", PENDING), group["_id"].get("holder")
            if outcome != PENDING:
                completed[outcome] = completed.get(outcome, 0) + group["n"]
            elif holder is None:
                pending += group["n"]
            else:
                holders.extend([holder] * group["n"])
        return SessionStats(session.id, session.status, pending, len(holders), completed,
                            tuple(sorted(set(holders))))


def utcnow() -> datetime:
    """Now, in UTC, at MongoDB's millisecond precision."""
    now = datetime.now(timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def _claim_update(assistant_id: str, request_id: str, now: datetime,
                  lease_seconds: int | None) -> list[dict[str, Any]]:
    """The claim's update: holder, time, lease, token + 1, and a history entry with that token.

    A pipeline update, so the history entry can carry the token the same
    operation produces. Caller values are wrapped in ``$literal`` so that no
    string is ever read as a field path or operator.
    """
    lease = None if not lease_seconds else now + timedelta(seconds=lease_seconds)
    return [
        {"$set": {
            "assigned_to": {"$literal": assistant_id},
            "assigned_at": now,
            "lease_expires_at": lease,
            "assignment_token": {"$add": [{"$ifNull": ["$assignment_token", 0]}, 1]},
        }},
        {"$set": {"history": {"$concatArrays": [
            {"$ifNull": ["$history", []]},
            [{"event": "claimed", "assistant_id": {"$literal": assistant_id}, "token": "$assignment_token",
              "request_id": {"$literal": request_id}, "at": now}],
        ]}}},
    ]


def _held_filter(session_id: str, student_id: str, assistant_id: str, token: int) -> dict[str, Any]:
    return {"_id": student_id, "call_session_id": session_id, "filter_status": PENDING,
            "assigned_to": assistant_id, "assignment_token": token}


def _event(event: str, assistant_id: str | None, token: int, request_id: str | None,
           now: datetime, **extra: Any) -> dict[str, Any]:
    return {"event": event, "assistant_id": assistant_id, "token": token,
            "request_id": request_id, "at": now, **extra}


def _is_repeat(last: Mapping[str, Any], action: str, assistant_id: str, token: int, outcome: str | None) -> bool:
    return (last.get("event") == action and last.get("assistant_id") == assistant_id
            and last.get("token") == token and last.get("outcome") == outcome)


def _why_not_held(state: StudentState, assistant_id: str, token: int) -> Exception:
    if state.filter_status != PENDING:
        return AlreadyCompleted(f"student {state.student_id!r} was already completed "
                                f"with outcome {state.filter_status!r}")
    if token != state.assignment_token:
        return StaleToken(f"assignment_token {token} is stale; the current one is {state.assignment_token}",
                          current_token=state.assignment_token)
    if state.assigned_to is None:
        return NotAssigned(f"student {state.student_id!r} is not assigned to anyone")
    return NotHolder(f"student {state.student_id!r} is held by another assistant, not {assistant_id!r}")


def _student_document(session_id: str, row: NewStudent, default_position: int) -> dict[str, Any]:
    return {
        "_id": f"{session_id}:{row.student_key()}",
        "call_session_id": session_id,
        "student": row.student,
        "priority": row.priority,
        "position": default_position if row.position is None else row.position,
        "filter_status": PENDING,
        "assigned_to": None,
        "assigned_at": None,
        "lease_expires_at": None,
        "assignment_token": 0,
        "completed_at": None,
        "completed_by": None,
        "history": [],
    }


def _chunks(items: list[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), max(1, size)):
        yield items[start:start + size]

