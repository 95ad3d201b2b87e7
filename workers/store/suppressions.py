"""Do-not-call lists: phone numbers (E.164) and student ids that are never called, per session or everywhere.

Entries live in ``call_suppressions``, one document each: ``scope`` (a
session id, or ``*`` for every session), ``kind`` (``number`` or
``student``) and ``value``. ``suppress`` is race-free against claims running
at the same time, in three steps:

1. the entries are written (so an import that starts now skips them, and an
   import running now finds them when it rechecks, see ``sessions``);
2. every matching student is **marked** ``suppressed`` in one
   ``update_many``, whatever its state;
3. every marked student that is pending and unheld (in the pool or waiting
   for a time) takes the final outcome ``do_not_call`` at once.

A claim is one atomic update, so a student is either claimed before step 2
reached it (then it is held and marked), or it is still unheld at step 3 and
ends final. A marked student that is held stays with its assistant; what ends
that hold ends the student: a completion is final whatever the retry rules or
a callback say (``outcomes``), a release, reclaim or log-off gives it
``do_not_call`` (``documents.ending_hold_update``), and reopening a session
does not bring it back. So from the moment ``suppress`` answers, no suppressed
student can be handed out. Running it again changes nothing.

Removing an entry (``unsuppress``) stops later imports from skipping the
number or id; students already given ``do_not_call`` keep it (a final outcome
is final), and a student marked while held stays marked.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterable

from pymongo import UpdateOne

from callqueue.workers.models import DO_NOT_CALL, PENDING
from callqueue.workers.store.documents import closing_update
from callqueue.workers.store.durability import translating_driver_errors
from callqueue.workers.store.windows import WindowStage

ALL_SESSIONS = "*"
NUMBER, STUDENT = "number", "student"


@dataclass(frozen=True)
class SuppressionSummary:
    """What one ``suppress`` or ``unsuppress`` did."""

    scope: str
    added: int = 0
    removed: int = 0
    students_marked: int = 0
    do_not_call: int = 0
    still_held: int = 0

    def to_result(self, status: str) -> dict[str, Any]:
        result: dict[str, Any] = {"status": status,
                                  "call_session_id": None if self.scope == ALL_SESSIONS else self.scope}
        if status == "suppressed":
            result.update(added=self.added, students_marked=self.students_marked, do_not_call=self.do_not_call,
                          still_held=self.still_held)
        else:
            result["removed"] = self.removed
        return result


def entry_id(scope: str, kind: str, value: str) -> str:
    """One entry's ``_id``: unambiguous for any scope and value."""
    return json.dumps([scope, kind, value], separators=(",", ":"))


def scope_of(session_id: str | None) -> str:
    return ALL_SESSIONS if session_id is None else session_id


class SuppressionStage(WindowStage):
    """Adding, listing and removing do-not-call entries, and what they do to students."""

    @translating_driver_errors
    def suppress(self, session_id: str | None, numbers: Iterable[str], student_ids: Iterable[str],
                 request_id: str) -> SuppressionSummary:
        """Put the numbers (E.164) and student ids on the list of ``session_id`` (None: every session).

        See the module doc for the three steps and why no suppressed student
        can be handed out once this returns.
        """
        scope = scope_of(session_id)
        entries = [(NUMBER, number) for number in numbers] + [(STUDENT, student) for student in student_ids]
        with self.bulk_deadline():
            writes = [UpdateOne({"_id": entry_id(scope, kind, value)},
                                [{"$set": {"scope": scope, "kind": kind, "value": {"$literal": value},
                                           "added_at": {"$ifNull": ["$added_at", "$$NOW"]}}}], upsert=True)
                      for kind, value in entries]
            added = self.suppressions.bulk_write(writes, ordered=False).upserted_count if writes else 0
            target = matching_students(scope, [v for k, v in entries if k == NUMBER],
                                       [v for k, v in entries if k == STUDENT])
            marked = self.students.update_many({**target, "suppressed": {"$ne": True}},
                                               {"$set": {"suppressed": True}}).modified_count
            final = self.end_suppressed(target, request_id)
            held = self.students.count_documents({**target, "filter_status": PENDING,
                                                  "assigned_to": {"$type": "string"}})
        return SuppressionSummary(scope, added=added, students_marked=marked, do_not_call=final, still_held=held)

    def end_suppressed(self, target: dict[str, Any], request_id: str | None) -> int:
        """Give every marked, pending, unheld student among ``target`` the final outcome ``do_not_call``."""
        return self.students.update_many(
            {**target, "suppressed": True, "filter_status": PENDING, "assigned_to": None},
            closing_update(DO_NOT_CALL, request_id, "$$NOW", event="suppressed", with_session=False),
        ).modified_count

    @translating_driver_errors
    def unsuppress(self, session_id: str | None, numbers: Iterable[str], student_ids: Iterable[str]
                   ) -> SuppressionSummary:
        """Remove entries from the list of ``session_id`` (None: the list for every session)."""
        scope = scope_of(session_id)
        ids = [entry_id(scope, NUMBER, number) for number in numbers]
        ids += [entry_id(scope, STUDENT, student) for student in student_ids]
        removed = self.suppressions.delete_many({"_id": {"$in": ids}}).deleted_count if ids else 0
        return SuppressionSummary(scope, removed=removed)

    @translating_driver_errors
    def list_suppressed(self, session_id: str | None, after: str | None, limit: int) -> dict[str, Any]:
        """Up to ``limit`` entries of one list, numbers before student ids, in order, after the entry ``after``
        (the ``next`` of the previous page); ``next`` is None on the last page."""
        scope = scope_of(session_id)
        query: dict[str, Any] = {"scope": scope}
        if after is not None:
            kind, _, value = after.partition(":")
            query["$or"] = [{"kind": kind, "value": {"$gt": value}}, {"kind": {"$gt": kind}}]
        found = list(self.suppressions.find(query, {"kind": 1, "value": 1, "added_at": 1})
                     .sort([("scope", 1), ("kind", 1), ("value", 1)]).limit(limit + 1))
        page = found[:limit]
        entries = [{"kind": entry["kind"], "value": entry["value"],
                    "added_at": entry["added_at"].isoformat()} for entry in page]
        more = len(found) > limit
        return {"status": "ok", "call_session_id": session_id, "entries": entries,
                "next": f"{page[-1]['kind']}:{page[-1]['value']}" if more else None}

    def suppressed_values(self, session_id: str, numbers: Iterable[str], student_ids: Iterable[str]) -> set[str]:
        """Which of these numbers and student ids are on the session's list or the list for every session."""
        numbers, student_ids = sorted(set(numbers)), sorted(set(student_ids))
        if not numbers and not student_ids:
            return set()
        return {entry["value"] for entry in self.suppressions.find(
            {"scope": {"$in": [session_id, ALL_SESSIONS]},
             "$or": [{"kind": NUMBER, "value": {"$in": numbers}}, {"kind": STUDENT, "value": {"$in": student_ids}}]},
            {"value": 1})}


def matching_students(scope: str, numbers: list[str], student_ids: list[str]) -> dict[str, Any]:
    """Query part: the students an entry list names (by phone number or id), in ``scope``."""
    either: list[dict[str, Any]] = []
    if numbers:
        either.append({"phone_e164": {"$in": numbers}})
    if student_ids:
        either.append({"_id": {"$in": student_ids}})
    query: dict[str, Any] = {"$or": either or [{"_id": {"$in": []}}]}
    if scope != ALL_SESSIONS:
        query["call_session_id"] = scope
    return query
