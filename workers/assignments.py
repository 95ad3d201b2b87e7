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
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterator, Mapping, TypeVar

from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument, UpdateOne
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import BulkWriteError, ConnectionFailure, DuplicateKeyError

from workers.exceptions import (
    AlreadyCompleted, NotAssigned, NotHolder, Rejected, RequestAlreadyServed, RequestConflict,
    SessionClosed, StaleToken, StoreUnavailable, UnknownSession, UnknownStudent,
)
from workers.models import (
    PENDING, Assignment, BatchItem, CallSession, ImportSummary, SessionStats, StudentState,
)

SESSIONS = "call_sessions"
STUDENTS = "call_session_students"

CLAIM_ORDER = [("priority", DESCENDING), ("position", ASCENDING)]
CLAIM_INDEX = "claim_order"
ONE_PER_ASSISTANT_INDEX = "one_student_per_assistant"
REQUEST_INDEX = "served_request_ids"
LEASE_INDEX = "lease_expiry"
CLAIM_ATTEMPTS = 3
SESSION_CHUNK = 1000

Progress = Callable[[int, int], None]

ASSIGNMENT_FIELDS = {
    "call_session_id": 1, "student": 1, "assigned_to": 1, "assignment_token": 1,
    "assigned_at": 1, "history": {"$slice": -1},
}
STATE_FIELDS = {
    "call_session_id": 1, "filter_status": 1, "assigned_to": 1, "assignment_token": 1,
    "completed_at": 1, "completed_by": 1, "lease_expires_at": 1, "history": {"$slice": -1},
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
        IndexModel([("claim_request_ids", ASCENDING)], name=REQUEST_INDEX, unique=True,
                   partialFilterExpression={"claim_request_ids": {"$exists": True}}),
        IndexModel([("lease_expires_at", ASCENDING)], name=LEASE_INDEX),
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
            {"$setOnInsert": {"name": name or session_id, "status": "open", "created_at": now or utcnow(),
                              "lease_seconds": None, "next_position": 0}},
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
        first = self._reserve_positions(session_id, len(rows))
        documents = [_student_document(session_id, row, first + index) for index, row in enumerate(rows)]
        inserted = sum(self._insert_new(chunk) for chunk in _chunks(documents, chunk_size))
        return ImportSummary(session_id, created, len(rows), inserted, len(rows) - inserted)

    @translating_driver_errors
    def _reserve_positions(self, session_id: str, count: int) -> int:
        """Atomically reserve ``count`` import positions; returns the first one."""
        before = self.sessions.find_one_and_update(
            {"_id": session_id}, {"$inc": {"next_position": count}},
            projection={"next_position": 1}, return_document=ReturnDocument.BEFORE,
        )
        return int(before.get("next_position", 0))

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

        The claim itself is one atomic ``find_one_and_update`` (see module
        doc), and on the common path it is the only operation: the claim adds
        ``request_id`` to the student's ``claim_request_ids``, whose unique
        index makes MongoDB refuse a second claim under a request id already
        served, just as ``one_student_per_assistant`` refuses a second student
        to an assistant. Only when a claim is refused, or finds nobody, does a
        read follow, to find the earlier answer.
        """
        for _attempt in range(CLAIM_ATTEMPTS):
            try:
                document = self._claim(session, assistant_id, request_id, now or utcnow())
            except DuplicateKeyError:
                answer = self._earlier_answer(session.id, assistant_id, request_id)
                if answer is not None:
                    return answer
                continue  # the held student was completed or released meanwhile: claim afresh
            if document is None:
                return self._earlier_answer(session.id, assistant_id, request_id)
            return Assignment.from_document(document)
        return self._held_by(session.id, assistant_id, request_id)

    def _earlier_answer(self, session_id: str, assistant_id: str, request_id: str) -> Assignment | None:
        """What this request or this assistant already has, read only when the claim did not hand out a new one."""
        return (self._answer_for_request(session_id, assistant_id, request_id)
                or self._held_by(session_id, assistant_id, request_id))

    def _claim(self, session: CallSession, assistant_id: str, request_id: str,
               now: datetime) -> Mapping[str, Any] | None:
        """The one atomic claim: match a pending, unassigned student and take it."""
        return self.students.find_one_and_update(
            {"call_session_id": session.id, "filter_status": PENDING, "assigned_to": None,
             "claim_request_ids": {"$ne": request_id}},  # a request never takes back a student it gave up
            _claim_update(assistant_id, request_id, now, session.lease_seconds),
            sort=CLAIM_ORDER,
            projection=ASSIGNMENT_FIELDS,
            return_document=ReturnDocument.AFTER,
            hint=CLAIM_INDEX,
        )

    def _answer_for_request(self, session_id: str, assistant_id: str, request_id: str) -> Assignment | None:
        """The answer already given to ``request_id``, if it was served before."""
        document = self.students.find_one(
            {"claim_request_ids": request_id},
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
        if document is None:
            return self._refusal("released", session_id, student_id, assistant_id, token, None)
        self._settle_if_closed(session_id, now)
        return StudentState.from_document(document)

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

    # -- leases -----------------------------------------------------------

    @translating_driver_errors
    def set_lease(self, session_id: str, lease_seconds: int | None) -> CallSession:
        """Give the session a lease length (None: assignments last until completed or released).

        Applies to claims made from now on; current holders keep their expiry.
        """
        self.require_session(session_id)
        self.sessions.update_one({"_id": session_id}, {"$set": {"lease_seconds": lease_seconds}})
        return self.require_session(session_id)

    @translating_driver_errors
    def heartbeat(self, session: CallSession, student_id: str, assistant_id: str, token: int,
                  now: datetime | None = None) -> StudentState:
        """Renew the holder's lease; anyone else, or a stale token, is refused.

        One atomic update guarded by holder and token: after a reclaim the
        token has moved on, so a late heartbeat cannot revive the old hold.
        """
        now = now or utcnow()
        expiry = None if not session.lease_seconds else now + timedelta(seconds=session.lease_seconds)
        document = self.students.find_one_and_update(
            _held_filter(session.id, student_id, assistant_id, token),
            {"$set": {"lease_expires_at": expiry}},
            projection=STATE_FIELDS,
            return_document=ReturnDocument.AFTER,
        )
        if document is None:
            return self._refusal("heartbeat", session.id, student_id, assistant_id, token, None)
        return StudentState.from_document(document)

    @translating_driver_errors
    def reclaim_expired(self, now: datetime | None = None) -> int:
        """Return every assignment whose lease ran out to the pool; the count reclaimed.

        Each student is updated atomically by a filter that still requires an
        expired lease, so a heartbeat that won the race keeps its student. The
        token is bumped, which fences the old holder's late writes.
        """
        now = now or utcnow()
        expired = {"filter_status": PENDING, "assigned_to": {"$type": "string"}, "lease_expires_at": {"$lt": now}}
        sessions = self.students.distinct("call_session_id", expired)
        reclaimed = self.students.update_many(expired, _ending_hold_update("reclaimed", None, now)).modified_count
        for session_id in sessions:
            self._settle_if_closed(session_id, now)
        return reclaimed

    @translating_driver_errors
    def release_assistant(self, session_id: str, assistant_id: str, request_id: str,
                          now: datetime | None = None) -> int:
        """Give back whatever the assistant holds in the session (logging off); the count released."""
        now = now or utcnow()
        self.require_session(session_id)
        released = self.students.update_many(
            {"call_session_id": session_id, "filter_status": PENDING, "assigned_to": assistant_id},
            _ending_hold_update("released", request_id, now, bump_token=False),
        ).modified_count
        self._settle_if_closed(session_id, now)
        return released

    # -- closing and reopening ----------------------------------------------

    @translating_driver_errors
    def close_session(self, session_id: str, outcome: str, force: bool, request_id: str,
                      progress: Progress = lambda done, total: None, now: datetime | None = None) -> dict[str, Any]:
        """Close the session and give every pending, unassigned student ``outcome``.

        From now on claims are refused with ``session_closed``. Students held
        right now are left with their assistants (who may still complete them)
        unless ``force``, which ends those holds too. Running it again changes
        nothing.
        """
        now = now or utcnow()
        self.require_session(session_id)
        self.sessions.update_one({"_id": session_id, "status": "open"},
                                 {"$set": {"status": "closed", "closed_at": now, "closed_outcome": outcome}})
        target = {"call_session_id": session_id, "filter_status": PENDING}
        if not force:
            target["assigned_to"] = None
        closed = self._close_in_chunks(target, outcome, request_id, now, progress)
        return {"call_session_id": session_id, "closed_students": closed,
                "still_held": self.students.count_documents({**target, "assigned_to": {"$type": "string"}})}

    def _close_in_chunks(self, target: dict[str, Any], outcome: str, request_id: str, now: datetime,
                         progress: Progress) -> int:
        total, done = self.students.count_documents(target), 0
        progress(done, total)
        while ids := [d["_id"] for d in self.students.find(target, {"_id": 1}, limit=SESSION_CHUNK)]:
            done += self.students.update_many({**target, "_id": {"$in": ids}},
                                              _closing_update(outcome, request_id, now)).modified_count
            progress(done, max(total, done))
        return done

    def _settle_if_closed(self, session_id: str, now: datetime) -> None:
        """In a closed session, a student back in the pool takes the close outcome at once."""
        session = self.sessions.find_one({"_id": session_id, "status": "closed"}, {"closed_outcome": 1})
        if session is not None:
            self.students.update_many(
                {"call_session_id": session_id, "filter_status": PENDING, "assigned_to": None},
                _closing_update(session.get("closed_outcome") or "session_closed", None, now))

    @translating_driver_errors
    def reopen_session(self, session_id: str, request_id: str, now: datetime | None = None) -> dict[str, Any]:
        """Open the session again; students closed with it return to the pool."""
        now = now or utcnow()
        self.require_session(session_id)
        self.sessions.update_one({"_id": session_id},
                                 {"$set": {"status": "open"}, "$unset": {"closed_at": "", "closed_outcome": ""}})
        reopened = self.students.update_many(
            {"call_session_id": session_id, "closed_with_session": True},
            {"$set": {"filter_status": PENDING, "completed_at": None},
             "$unset": {"closed_with_session": ""},
             "$push": {"history": _event("reopened", None, None, request_id, now)}},
        ).modified_count
        return {"call_session_id": session_id, "reopened_students": reopened}

    # -- batch completion ---------------------------------------------------

    @translating_driver_errors
    def complete_batch(self, items: list[BatchItem], job_id: str, progress: Progress = lambda done, total: None,
                       chunk_size: int = 1000, pause_seconds: float = 0.0,
                       now: datetime | None = None) -> list[dict[str, Any]]:
        """Complete many students with bulk writes; one result per item, in order.

        Each write is guarded like ``complete``: an item with assistant and
        token needs the current holder and token; an item without them only
        completes a student nobody holds, so a live assignment is never
        overwritten. Items already completed with the same outcome report
        ``unchanged``, so running the job again changes nothing.
        """
        now = now or utcnow()
        results: list[dict[str, Any]] = []
        progress(0, len(items))
        for chunk in _chunks(items, chunk_size):
            results.extend(self._complete_chunk(chunk, job_id, now))
            progress(len(results), len(items))
            time.sleep(pause_seconds)
        return results

    def _complete_chunk(self, chunk: list[BatchItem], job_id: str, now: datetime) -> list[dict[str, Any]]:
        writes = [UpdateOne(_batch_filter(item), _batch_update(item, job_id, now)) for item in chunk]
        self.students.bulk_write(writes, ordered=False)
        documents = {d["_id"]: d for d in self.students.find({"_id": {"$in": [item.student_id for item in chunk]}})}
        known_sessions = set(self.sessions.distinct("_id", {"_id": {"$in": list({i.call_session_id for i in chunk})}}))
        return [_batch_result(item, documents.get(item.student_id), job_id, known_sessions) for item in chunk]

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
    """The claim's update: holder, time, lease, token + 1, a history entry with that token, the request id.

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
        {"$set": {
            "history": {"$concatArrays": [
                {"$ifNull": ["$history", []]},
                [{"event": "claimed", "assistant_id": {"$literal": assistant_id}, "token": "$assignment_token",
                  "request_id": {"$literal": request_id}, "at": now}],
            ]},
            "claim_request_ids": {"$concatArrays": [{"$ifNull": ["$claim_request_ids", []]},
                                                    [{"$literal": request_id}]]},
        }},
    ]


def _ending_hold_update(event: str, request_id: str | None, now: datetime,
                        bump_token: bool = True) -> list[dict[str, Any]]:
    """Pipeline update that ends a hold: history names the holder, then the hold is cleared."""
    token = {"$add": ["$assignment_token", 1]} if bump_token else "$assignment_token"
    return [
        {"$set": {"history": {"$concatArrays": [{"$ifNull": ["$history", []]}, [{
            "event": event, "assistant_id": "$assigned_to", "token": "$assignment_token",
            "request_id": {"$literal": request_id}, "at": now}]]}}},
        {"$set": {"assigned_to": None, "assigned_at": None, "lease_expires_at": None, "assignment_token": token}},
    ]


def _closing_update(outcome: str, request_id: str | None, now: datetime) -> list[dict[str, Any]]:
    """Pipeline update giving a pending student the session's close outcome (ending any hold)."""
    return [
        {"$set": {"history": {"$concatArrays": [{"$ifNull": ["$history", []]}, [{
            "event": "closed", "assistant_id": "$assigned_to", "token": "$assignment_token",
            "request_id": {"$literal": request_id}, "at": now, "outcome": {"$literal": outcome}}]]}}},
        {"$set": {"filter_status": {"$literal": outcome}, "completed_at": now, "closed_with_session": True,
                  "assigned_to": None, "assigned_at": None, "lease_expires_at": None}},
    ]


def _batch_filter(item: BatchItem) -> dict[str, Any]:
    if item.assistant_id is not None and item.assignment_token is not None:
        return _held_filter(item.call_session_id, item.student_id, item.assistant_id, item.assignment_token)
    return {"_id": item.student_id, "call_session_id": item.call_session_id,
            "filter_status": PENDING, "assigned_to": None}


def _batch_update(item: BatchItem, job_id: str, now: datetime) -> dict[str, Any]:
    return {"$set": {"filter_status": item.outcome, "completed_at": now, "completed_by": item.assistant_id,
                     "assigned_to": None, "lease_expires_at": None},
            "$push": {"history": _event("completed", item.assistant_id, item.assignment_token,
                                        item.request_id(job_id), now, outcome=item.outcome)}}


def _batch_result(item: BatchItem, document: Mapping[str, Any] | None, job_id: str,
                  known_sessions: set[str]) -> dict[str, Any]:
    """Whether this item's write landed, had landed before, or why it could not."""
    result: dict[str, Any] = {"index": item.index, "student_id": item.student_id}
    if document is None or document["call_session_id"] != item.call_session_id:
        error = (UnknownStudent(f"student {item.student_id!r} is not in call session {item.call_session_id!r}")
                 if item.call_session_id in known_sessions
                 else UnknownSession(f"call session {item.call_session_id!r} does not exist"))
        return {**result, "status": "rejected", "error": error.to_error()}
    if any(entry.get("request_id") == item.request_id(job_id) for entry in document.get("history", [])):
        return {**result, "status": "completed", "unchanged": False}
    if document.get("filter_status") == item.outcome:
        return {**result, "status": "completed", "unchanged": True}
    return {**result, "status": "rejected", "error": _why_batch_refused(item, document).to_error()}


def _why_batch_refused(item: BatchItem, document: Mapping[str, Any]) -> Rejected:
    state = StudentState.from_document(document)
    if item.assistant_id is not None and item.assignment_token is not None:
        return _why_not_held(state, item.assistant_id, item.assignment_token)
    if state.filter_status != PENDING:
        return AlreadyCompleted(f"student {state.student_id!r} was already completed "
                                f"with outcome {state.filter_status!r}")
    return NotHolder(f"student {item.student_id!r} is held by an assistant right now; "
                     "give assistant_id and assignment_token to complete it")


def _held_filter(session_id: str, student_id: str, assistant_id: str, token: int) -> dict[str, Any]:
    return {"_id": student_id, "call_session_id": session_id, "filter_status": PENDING,
            "assigned_to": assistant_id, "assignment_token": token}


def _event(event: str, assistant_id: str | None, token: int | None, request_id: str | None,
           now: datetime, **extra: Any) -> dict[str, Any]:
    return {"event": event, "assistant_id": assistant_id, "token": token,
            "request_id": request_id, "at": now, **extra}


def _is_repeat(last: Mapping[str, Any], action: str, assistant_id: str, token: int, outcome: str | None) -> bool:
    return (last.get("event") == action and last.get("assistant_id") == assistant_id
            and last.get("token") == token and last.get("outcome") == outcome)


def _why_not_held(state: StudentState, assistant_id: str, token: int) -> Rejected:
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
        "_id": f"{_escape_separator(session_id)}:{row.student_key()}",
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


def _escape_separator(session_id: str) -> str:
    """The session part of a student ``_id``: ``\\`` and ``:`` escaped, so "a" + "b:c" never equals "a:b" + "c"."""
    return session_id.replace("\\", "\\\\").replace(":", "\\:")


def _chunks(items: list[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), max(1, size)):
        yield items[start:start + size]

