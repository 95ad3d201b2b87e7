"""The atomic claim, and the two writes that end a hold: completion and release.

Atomicity guarantee
-------------------
A student is handed out by exactly one ``find_one_and_update`` whose filter
matches only students that are pending and unassigned
(``{call_session_id, filter_status: '', assigned_to: null}``). MongoDB applies
the filter and the update to a document as one atomic step, so two racing
claims can never both match the same student: the loser's filter no longer
matches and the server moves it on to the next student. No read follows the
claim to "double-check" it, and nothing is ever reassigned by timeout here.

Routing and callbacks do not change this. Each pending student sits in a
lane (its routing tag's lane of the shared pool, one assistant's personal
callback lane, or the scheduled lane of those waiting for a time), and a
claim's filter names the lanes that press may take from (``lane: {$in}``):
the same single ``find_one_and_update``, served by one index walked in claim
order per lane and merged.

A unique partial index on ``(call_session_id, assigned_to)`` over pending,
assigned students makes MongoDB itself refuse to give one assistant a second
student: that claim fails with a duplicate-key error, changes nothing, and the
assistant gets back the student they already hold.

Calling hours add nothing to read either: a student outside its window is
in the scheduled lane, and the filter also requires that the student's
window has not closed (``$$NOW`` before its ``window_closes_at``), which
keeps the rule even while nothing moves students out of the pool.

Every time the claim writes (``assigned_at``, the lease's expiry, the
history) or compares is MongoDB's own ``$$NOW``, never this process's clock.

Durability: the claim is acknowledged by a majority of the replica set before
its answer leaves the worker, and the reads that explain a refused claim are
rechecks (see ``workers.store.durability``), so no answer names a claim that
an election could roll back.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Mapping

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from callqueue.workers.exceptions import RequestAlreadyServed, RequestConflict
from callqueue.workers.models import PENDING, Assignment, CallSession, Completion, StudentState
from callqueue.workers.store.windows import WindowStage
from callqueue.workers.store.documents import (
    ASSIGNMENT_FIELDS, CLAIM_INDEX, CLAIM_ORDER, claim_filter, claim_lanes, claim_update, clock,
    ending_hold_update,
)
from callqueue.workers.store.outcomes import CompletionPlan, completion_update
from callqueue.workers.store.durability import translating_driver_errors

CLAIM_ATTEMPTS = 3


class ClaimStage(WindowStage):
    """Claiming a student, and completing or releasing the student one holds."""

    @translating_driver_errors
    def assign_next(self, session: CallSession, assistant_id: str, request_id: str,
                    now: datetime | None = None, skills: tuple[str, ...] = ()) -> Assignment | None:
        """Hand the next pending student of ``session`` to ``assistant_id``.

        Returns the claimed student, the student the assistant already holds
        (``already_held``), the student this ``request_id`` was given before
        (a retried or redelivered request), or None when nobody is left.

        The claim itself is one atomic ``find_one_and_update`` (see module
        doc), and on the common path it is the only operation: the claim adds
        ``request_id`` to the student's ``claim_request_ids``, whose unique
        index (per session) makes MongoDB refuse a second claim under a
        request id already served in the session, just as
        ``one_student_per_assistant`` refuses a second student to an
        assistant. Only when a claim is refused, or finds nobody, does a
        read follow, to find the earlier answer.

        The press takes, in order: a due personal callback of this assistant,
        then by priority and position among untagged students and students
        whose routing tag is in ``skills``.
        """
        lanes = claim_lanes(assistant_id, skills, personal=session.personal_callbacks)
        for _attempt in range(CLAIM_ATTEMPTS):
            try:
                document = self._claim(session, assistant_id, request_id, lanes, clock(now))
            except DuplicateKeyError:
                answer = self._earlier_answer(session.id, assistant_id, request_id)
                if answer is not None:
                    return answer
                continue  # the held student was completed or released meanwhile: claim afresh
            if document is None:
                return self._earlier_answer(session.id, assistant_id, request_id)
            return Assignment.from_document(document)
        return self._held_by(session.id, assistant_id, request_id)

    def _claim(self, session: CallSession, assistant_id: str, request_id: str, lanes: list[str],
               now: Any) -> Mapping[str, Any] | None:
        """The one atomic claim: match a pending, unassigned student in one of ``lanes`` and take it."""
        return self.students.find_one_and_update(
            claim_filter(session.id, lanes, request_id, now),
            claim_update(assistant_id, request_id, now, session.lease_seconds),
            sort=CLAIM_ORDER,
            projection=ASSIGNMENT_FIELDS,
            return_document=ReturnDocument.AFTER,
            hint=CLAIM_INDEX,
        )

    def _earlier_answer(self, session_id: str, assistant_id: str, request_id: str) -> Assignment | None:
        """What this request or this assistant already has, read only when the claim did not hand out a new one."""
        return (self._answer_for_request(session_id, assistant_id, request_id)
                or self._held_by(session_id, assistant_id, request_id))

    def _answer_for_request(self, session_id: str, assistant_id: str, request_id: str) -> Assignment | None:
        """The answer already given to ``request_id``, if it was served before (a recheck)."""
        document = self.students_recheck.find_one(
            {"call_session_id": session_id, "claim_request_ids": request_id},
            {**ASSIGNMENT_FIELDS, "filter_status": 1,
             "history": {"$elemMatch": {"request_id": request_id, "event": "claimed"}}},
        )
        if document is None:
            return None
        claim = document["history"][0]
        if claim["assistant_id"] != assistant_id:
            raise RequestConflict(f"request_id {request_id!r} was used for another assistant in this session")
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
        """The student the assistant holds (a recheck); flagged ``already_held`` unless this request claimed it."""
        document = self.students_recheck.find_one(
            {"call_session_id": session_id, "filter_status": PENDING, "assigned_to": assistant_id},
            ASSIGNMENT_FIELDS,
        )
        if document is None:
            return None
        assignment = Assignment.from_document(document)
        last = (document.get("history") or [{}])[-1]
        return assignment if last.get("request_id") == request_id else assignment.held_again()

    # -- what ends a hold ----------------------------------------------------

    @translating_driver_errors
    def complete(self, session_id: str, student_id: str, assistant_id: str, token: int,
                 plan: CompletionPlan, request_id: str, now: datetime | None = None) -> Completion:
        """Record a call's outcome for a student held by ``assistant_id`` under ``token``.

        ``student_id`` is the id handed out or the import's id (``workers.student_ids``).

        One atomic update whose filter requires the current holder and token,
        so a stale holder's late write can never land. The same update counts
        the attempt and decides, from that count, whether the outcome is final
        or the student is scheduled again (``workers.store.outcomes``). A
        repeat of the same completion (same assistant, token and outcome)
        returns the same answer. A callback outside the student's calling
        hours is refused with ``invalid_argument`` naming the next allowed
        time, unless the session allows it (then a read of the student's zone
        comes first; only for a callback in a session with calling hours).
        """
        plan = self.check_callback(session_id, student_id, plan)
        now_expr = clock(now)
        document, landed = self.held_write("completed", session_id, student_id, assistant_id, token,
                                           completion_update(plan, assistant_id, token, request_id, now_expr),
                                           plan.outcome)
        if landed and plan.marks_session:  # only a landed completion changes anything; presses see it in 1 s
            self.note_personal_callbacks([session_id])
        completion = Completion.from_entry(document, document["history"][-1])
        if not completion.final:
            self.settle_if_closed(session_id, now)  # the session closed meanwhile: no more attempts
        return completion

    @translating_driver_errors
    def release(self, session_id: str, student_id: str, assistant_id: str, token: int,
                request_id: str, now: datetime | None = None) -> StudentState:
        """Give a held student back to the pool (pending, unassigned); either form of ``student_id``; one on a
        do-not-call list ends final."""
        document, landed = self.held_write("released", session_id, student_id, assistant_id, token,
                                           ending_hold_update("released", request_id, clock(now), bump_token=False))
        if landed:
            self.settle_if_closed(session_id, now)
        return StudentState.from_document(document)
