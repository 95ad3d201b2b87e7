"""Call sessions: creating them with their students, closing and reopening them, and their statistics."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from pymongo import ReturnDocument
from pymongo.errors import BulkWriteError

from callqueue.workers.models import DO_NOT_CALL, PENDING, CallSession, ImportSummary, SessionStats
from callqueue.workers.store.documents import (
    IMPORT, SCHEDULED_LANE, SESSION_CHUNK, WINDOW, NewStudent, Progress, chunks, clock, closing_update,
    history_entry, student_document, student_id_of,
)
from callqueue.workers.store.durability import translating_driver_errors
from callqueue.workers.store.outcomes import CALLBACK, RETRY
from callqueue.workers.store.suppressions import SuppressionStage, matching_students

# A new student waits this long (by the server's clock) for its import to place it; if the import
# stops before, the promotion places it then.
IMPORT_PLACEMENT_SECONDS = 60


class SessionStage(SuppressionStage):
    """A session's life: created by its first import, closed, reopened; and what it holds."""

    @translating_driver_errors
    def create_session(self, session_id: str, name: str | None, now: datetime | None = None) -> bool:
        """Create the session unless it exists (created at the server's time); True when this call created it."""
        keep = {field: {"$ifNull": [f"${field}", default]} for field, default in (
            ("name", {"$literal": name or session_id}), ("status", "open"), ("created_at", clock(now)),
            ("lease_seconds", None), ("next_position", 0))}
        result = self.sessions.update_one({"_id": session_id}, [{"$set": keep}], upsert=True)
        return result.upserted_id is not None

    # -- import -----------------------------------------------------------

    def import_students(self, session_id: str, name: str | None, rows: list[NewStudent],
                        chunk_size: int = 1000) -> ImportSummary:
        """Create the session if needed and insert the students.

        Positions continue after the session's last one unless a row gives its
        own. A row whose id (given, or the digest of its content) is already in
        the session counts as a duplicate and is left as it is, so an import
        that is retried or run twice adds nothing. A row whose phone number or
        id is on a do-not-call list is not imported (``suppressed``).

        New students arrive unclaimable (scheduled lane, ``waiting_for:
        "import"``); after the insert the import checks them against the
        do-not-call lists again (an entry added meanwhile gives them
        ``do_not_call``, see ``suppressions``), then places them by the
        session's calling hours, read again: if the hours changed meanwhile,
        the whole session is placed again.
        """
        with self.bulk_deadline():
            created = self.create_session(session_id, name)
            session = self.open_session(session_id)
            listed = self.suppressed_values(session_id, [row.phone for row in rows if row.phone],
                                            [student_id_of(session_id, row) for row in rows])
            kept = [row for row in rows if row.phone not in listed and student_id_of(session_id, row) not in listed]
            first = self._reserve_positions(session_id, len(kept))
            imported_at = self.server_now()
            checked_by = imported_at + timedelta(seconds=IMPORT_PLACEMENT_SECONDS)
            documents = [student_document(session_id, row, first + index, checked_by, imported_at)
                         for index, row in enumerate(kept)]
            inserted = sum(self._insert_and_place(session, chunk) for chunk in chunks(documents, chunk_size))
            current = self.require_session(session_id)
            if current.hours_version != session.hours_version:
                self.restamp_session(current)
        return ImportSummary(session_id, created, len(rows), inserted, len(kept) - inserted, len(rows) - len(kept))

    def _insert_and_place(self, session: CallSession, documents: list[dict[str, Any]]) -> int:
        """Insert new students, recheck them against the do-not-call lists, then place them; how many were new."""
        inserted = self._insert_new(documents)
        numbers = [document["phone_e164"] for document in documents if "phone_e164" in document]
        ids = [document["_id"] for document in documents]
        if self.suppressed_values(session.id, numbers, ids):
            self._suppress_listed(session.id, numbers, ids)
        by_zone: dict[str, list[str]] = defaultdict(list)
        for document in documents:
            by_zone[document["zone"]].append(document["_id"])
        self.place_imported(session, by_zone)
        return inserted

    def _suppress_listed(self, session_id: str, numbers: list[str], ids: list[str]) -> None:
        """Mark and end the new students that a do-not-call entry added during this import names."""
        listed = self.suppressed_values(session_id, numbers, ids)
        target = {**matching_students(session_id, [n for n in numbers if n in listed], [i for i in ids if i in listed]),
                  "lane": SCHEDULED_LANE, "waiting_for": IMPORT}
        self.students.update_many(target, {"$set": {"suppressed": True}})
        self.end_suppressed(target, None)

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
        with self.bulk_deadline():
            self.require_session(session_id)
            self.sessions.update_one({"_id": session_id, "status": "open"},
                                     {"$set": {"status": "closed", "closed_outcome": outcome},
                                      "$currentDate": {"closed_at": True}})
            target = {"call_session_id": session_id, "filter_status": PENDING}
            if not force:
                target["assigned_to"] = None
            closed = self._close_in_chunks(target, outcome, request_id, now, progress)
            still_held = self.students.count_documents({**target, "assigned_to": {"$type": "string"}})
        return {"call_session_id": session_id, "closed_students": closed, "still_held": still_held}

    def _close_in_chunks(self, target: dict[str, Any], outcome: str, request_id: str, now: datetime | None,
                         progress: Progress) -> int:
        total, done = self.students.count_documents(target), 0
        progress(done, total)
        while ids := [d["_id"] for d in self.students.find(target, {"_id": 1}, limit=SESSION_CHUNK)]:
            done += self.students.update_many({**target, "_id": {"$in": ids}},
                                              closing_update(outcome, request_id, clock(now))).modified_count
            progress(done, max(total, done))
        return done

    @translating_driver_errors
    def reopen_session(self, session_id: str, request_id: str, now: datetime | None = None) -> dict[str, Any]:
        """Open the session again; students closed with it return to the pool.

        With calling hours they return to wait for their window, and are
        placed by it at once; a student put on a do-not-call list meanwhile
        takes ``do_not_call`` instead.
        """
        moment = clock(now)
        with self.bulk_deadline():
            session = self.require_session(session_id)
            self.sessions.update_one({"_id": session_id},
                                     {"$set": {"status": "open"}, "$unset": {"closed_at": "", "closed_outcome": ""}})
            suppressed = {"$eq": ["$suppressed", True]}
            back: dict[str, Any] = {}
            if session.calling_hours is not None:
                back = {"lane": SCHEDULED_LANE, "waiting_for": WINDOW, "wake_at": moment}
            reopened = self.students.update_many(
                {"call_session_id": session_id, "closed_with_session": True},
                [{"$set": {"filter_status": {"$cond": [suppressed, DO_NOT_CALL, PENDING]},
                           "completed_at": {"$cond": [suppressed, moment, None]},
                           "history": {"$concatArrays": [{"$ifNull": ["$history", []]}, [
                               history_entry("reopened", None, None, {"$literal": request_id}, moment)]]},
                           **{field: {"$cond": [{"$or": [suppressed, {"$eq": ["$lane", SCHEDULED_LANE]}]},
                                                f"${field}", value]} for field, value in back.items()}}},
                 {"$unset": "closed_with_session"}],
            ).modified_count
            if session.calling_hours is not None:
                self.restamp_session(self.require_session(session_id))
        return {"call_session_id": session_id, "reopened_students": reopened}

    # -- statistics -------------------------------------------------------

    @translating_driver_errors
    def stats(self, session: CallSession) -> SessionStats:
        """Pending, scheduled, assigned and completed counts, attempts, and who holds a student now."""
        with self.bulk_deadline():
            groups = list(self.students.aggregate([
                {"$match": {"call_session_id": session.id}},
                {"$group": {"_id": {"outcome": "$filter_status", "holder": "$assigned_to", "waiting": "$waiting_for"},
                            "n": {"$sum": 1}, "attempts": {"$sum": {"$ifNull": ["$attempts", 0]}},
                            "suppressed": {"$sum": {"$cond": [{"$eq": ["$suppressed", True]}, 1, 0]}}}},
            ]))
        counts = {"pending": 0, CALLBACK: 0, RETRY: 0, WINDOW: 0}
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
                counts[waiting if waiting in (CALLBACK, RETRY, WINDOW) else "pending"] += group["n"]
        return SessionStats(session.id, session.status, counts["pending"], len(holders), completed,
                            tuple(sorted(set(holders))), scheduled_callbacks=counts[CALLBACK],
                            scheduled_retries=counts[RETRY], attempts=sum(group["attempts"] for group in groups),
                            waiting_for_window=counts[WINDOW],
                            suppressed=sum(group["suppressed"] for group in groups))
