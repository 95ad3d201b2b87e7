"""Call sessions: creating them with their students, closing and reopening them, and their statistics."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import ReturnDocument
from pymongo.errors import BulkWriteError

from workers.models import PENDING, CallSession, ImportSummary, SessionStats
from workers.store.base import StoreStage
from workers.store.documents import (
    SESSION_CHUNK, NewStudent, Progress, chunks, closing_update, history_entry, student_document, utcnow,
)
from workers.store.durability import translating_driver_errors
from workers.store.outcomes import CALLBACK, RETRY


class SessionStage(StoreStage):
    """A session's life: created by its first import, closed, reopened; and what it holds."""

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
        with self.bulk_deadline():
            created = self.create_session(session_id, name)
            self.open_session(session_id)
            first = self._reserve_positions(session_id, len(rows))
            now = utcnow()
            documents = [student_document(session_id, row, first + index, now) for index, row in enumerate(rows)]
            inserted = sum(self._insert_new(chunk) for chunk in chunks(documents, chunk_size))
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
            if exc.details.get("writeConcernErrors") or any(error.get("code") != 11000 for error in errors):
                raise
            return int(exc.details.get("nInserted", 0))

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
        with self.bulk_deadline():
            self.require_session(session_id)
            self.sessions.update_one({"_id": session_id, "status": "open"},
                                     {"$set": {"status": "closed", "closed_at": now, "closed_outcome": outcome}})
            target = {"call_session_id": session_id, "filter_status": PENDING}
            if not force:
                target["assigned_to"] = None
            closed = self._close_in_chunks(target, outcome, request_id, now, progress)
            still_held = self.students.count_documents({**target, "assigned_to": {"$type": "string"}})
        return {"call_session_id": session_id, "closed_students": closed, "still_held": still_held}

    def _close_in_chunks(self, target: dict[str, Any], outcome: str, request_id: str, now: datetime,
                         progress: Progress) -> int:
        total, done = self.students.count_documents(target), 0
        progress(done, total)
        while ids := [d["_id"] for d in self.students.find(target, {"_id": 1}, limit=SESSION_CHUNK)]:
            done += self.students.update_many({**target, "_id": {"$in": ids}},
                                              closing_update(outcome, request_id, now)).modified_count
            progress(done, max(total, done))
        return done

    @translating_driver_errors
    def reopen_session(self, session_id: str, request_id: str, now: datetime | None = None) -> dict[str, Any]:
        """Open the session again; students closed with it return to the pool."""
        now = now or utcnow()
        with self.bulk_deadline():
            self.require_session(session_id)
            self.sessions.update_one({"_id": session_id},
                                     {"$set": {"status": "open"}, "$unset": {"closed_at": "", "closed_outcome": ""}})
            reopened = self.students.update_many(
                {"call_session_id": session_id, "closed_with_session": True},
                {"$set": {"filter_status": PENDING, "completed_at": None},
                 "$unset": {"closed_with_session": ""},
                 "$push": {"history": history_entry("reopened", None, None, request_id, now)}},
            ).modified_count
        return {"call_session_id": session_id, "reopened_students": reopened}

    # -- statistics -------------------------------------------------------

    @translating_driver_errors
    def stats(self, session: CallSession) -> SessionStats:
        """Pending, scheduled, assigned and completed counts, attempts, and who holds a student now."""
        with self.bulk_deadline():
            groups = list(self.students.aggregate([
                {"$match": {"call_session_id": session.id}},
                {"$group": {"_id": {"outcome": "$filter_status", "holder": "$assigned_to", "waiting": "$waiting_for"},
                            "n": {"$sum": 1}, "attempts": {"$sum": {"$ifNull": ["$attempts", 0]}}}},
            ]))
        counts = {"pending": 0, CALLBACK: 0, RETRY: 0}
        holders: list[str] = []
        completed: dict[str, int] = {}
        for group in groups:
            key = group["_id"]
            outcome, holder, waiting = key.get("outcome", PENDING), key.get("holder"), key.get("waiting")
            if outcome != PENDING:
                completed[outcome] = completed.get(outcome, 0) + group["n"]
            elif holder is not None:
                holders.extend([holder] * group["n"])
            else:
                counts[waiting if waiting in (CALLBACK, RETRY) else "pending"] += group["n"]
        return SessionStats(session.id, session.status, counts["pending"], len(holders), completed,
                            tuple(sorted(set(holders))), scheduled_callbacks=counts[CALLBACK],
                            scheduled_retries=counts[RETRY], attempts=sum(group["attempts"] for group in groups))
