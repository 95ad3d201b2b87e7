"""What the data-access layer hands back: frozen dataclasses built from documents.

These are the only shapes that leave ``workers.store``; tasks turn them
into JSON results with ``to_result()``. Every answer naming a student gives
both its ``student_id`` (as handed out) and its ``import_id`` (as imported).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Mapping

from callqueue.workers.hours import CallingHours
from callqueue.workers.student_ids import import_id_of

PENDING = ""
DO_NOT_CALL = "do_not_call"


@dataclass(frozen=True)
class RetryRule:
    """A session's rule for one outcome: call again after ``delay_seconds``, up to ``max_attempts`` calls."""

    outcome: str
    delay_seconds: int
    max_attempts: int

    def to_document(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "delay_seconds": self.delay_seconds, "max_attempts": self.max_attempts}


@dataclass(frozen=True)
class Callback:
    """A promised call back: when, and (optionally) the only assistant who may take it during the grace period."""

    at: datetime
    assistant_id: str | None = None


@dataclass(frozen=True)
class CallSession:
    """One call session (a document of ``call_sessions``)."""

    id: str
    name: str
    status: str
    created_at: datetime | None
    lease_seconds: int | None = None
    closed_outcome: str | None = None
    retry_rules: tuple[RetryRule, ...] = ()
    callback_grace_seconds: int | None = None
    personal_callbacks: bool = False
    # The outcomes a completion may record; empty: any outcome.
    allowed_outcomes: tuple[str, ...] = ()
    calling_hours: CallingHours | None = None
    # Raised by every change of the calling hours, so an import can tell that they changed while it ran.
    hours_version: int = 0

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> "CallSession":
        hours = document.get("calling_hours")
        return cls(
            id=document["_id"],
            name=document.get("name") or document["_id"],
            status=document.get("status", "open"),
            created_at=document.get("created_at"),
            lease_seconds=document.get("lease_seconds"),
            closed_outcome=document.get("closed_outcome"),
            retry_rules=tuple(RetryRule(**rule) for rule in document.get("retry_rules") or ()),
            callback_grace_seconds=document.get("callback_grace_seconds"),
            personal_callbacks=bool(document.get("personal_callbacks")),
            allowed_outcomes=tuple(document.get("allowed_outcomes") or ()),
            calling_hours=None if not hours else CallingHours.from_document(hours),
            hours_version=int(document.get("hours_version") or 0),
        )

    @property
    def is_open(self) -> bool:
        return self.status == "open"

    def retry_rule(self, outcome: str) -> RetryRule | None:
        """The rule for ``outcome``, or None when that outcome is always final."""
        return next((rule for rule in self.retry_rules if rule.outcome == outcome), None)

    def campaign_result(self, default_grace_seconds: int) -> dict[str, Any]:
        """The session's campaign settings as the JSON answer of ``set_campaign``
        (``allowed_outcomes`` only when the session has a list)."""
        result = {
            "status": "ok",
            "call_session_id": self.id,
            "retry_rules": {rule.outcome: {"delay_seconds": rule.delay_seconds, "max_attempts": rule.max_attempts}
                            for rule in self.retry_rules},
            "callback_grace_seconds": (default_grace_seconds if self.callback_grace_seconds is None
                                       else self.callback_grace_seconds),
        }
        if self.allowed_outcomes:
            result["allowed_outcomes"] = list(self.allowed_outcomes)
        return result

    def hours_result(self) -> dict[str, Any]:
        """The session's calling hours as the JSON answer of ``set_calling_hours`` (null: none)."""
        return {"status": "ok", "call_session_id": self.id,
                "calling_hours": None if self.calling_hours is None else self.calling_hours.to_document()}


@dataclass(frozen=True)
class Assignment:
    """A student held by an assistant, as returned by a claim."""

    student_id: str
    call_session_id: str
    student: dict[str, Any]
    assigned_to: str
    assignment_token: int
    assigned_at: datetime | None
    already_held: bool = False

    @classmethod
    def from_document(cls, document: Mapping[str, Any], already_held: bool = False) -> "Assignment":
        return cls(
            student_id=document["_id"],
            call_session_id=document["call_session_id"],
            student=dict(document.get("student") or {}),
            assigned_to=document["assigned_to"],
            assignment_token=int(document["assignment_token"]),
            assigned_at=document.get("assigned_at"),
            already_held=already_held,
        )

    def held_again(self) -> "Assignment":
        """The same assignment, flagged as one the assistant already had."""
        return replace(self, already_held=True)

    def to_result(self) -> dict[str, Any]:
        return {
            "status": "assigned",
            "call_session_id": self.call_session_id,
            "student_id": self.student_id,
            "import_id": import_id_of(self.call_session_id, self.student_id),
            "student": self.student,
            "assigned_to": self.assigned_to,
            "assignment_token": self.assignment_token,
            "assigned_at": _iso(self.assigned_at),
            "already_held": self.already_held,
        }


@dataclass(frozen=True)
class Exhausted:
    """A press that found nobody: why, and when this press could next find someone.

    ``reason`` is ``scheduled`` (students this press could take are waiting
    for a retry or callback time; the earliest is ``next_due_at``), ``held``
    (none is waiting, but other assistants are calling students this press
    could take, who come back if released, reclaimed or retried) or
    ``none_left`` (nobody this press could take is left). ``scheduled`` and
    ``held_by_others`` count those students.
    """

    call_session_id: str
    reason: str
    next_due_at: datetime | None = None
    scheduled: int = 0
    held_by_others: int = 0

    def to_result(self) -> dict[str, Any]:
        return {
            "status": "exhausted",
            "call_session_id": self.call_session_id,
            "reason": self.reason,
            "next_due_at": _iso(self.next_due_at),
            "scheduled": self.scheduled,
            "held_by_others": self.held_by_others,
        }


@dataclass(frozen=True)
class StudentState:
    """Where one student stands after a completion or a release."""

    student_id: str
    call_session_id: str
    filter_status: str
    assigned_to: str | None
    assignment_token: int
    completed_at: datetime | None = None
    completed_by: str | None = None
    lease_expires_at: datetime | None = None

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> "StudentState":
        return cls(
            student_id=document["_id"],
            call_session_id=document["call_session_id"],
            filter_status=document.get("filter_status", PENDING),
            assigned_to=document.get("assigned_to"),
            assignment_token=int(document.get("assignment_token") or 0),
            completed_at=document.get("completed_at"),
            completed_by=document.get("completed_by"),
            lease_expires_at=document.get("lease_expires_at"),
        )

    def to_result(self, status: str, **extra: Any) -> dict[str, Any]:
        result = {
            "status": status,
            "call_session_id": self.call_session_id,
            "student_id": self.student_id,
            "import_id": import_id_of(self.call_session_id, self.student_id),
            "assignment_token": self.assignment_token,
        }
        if self.assigned_to is not None:
            result["lease_expires_at"] = _iso(self.lease_expires_at)
        if self.filter_status != PENDING:
            result["outcome"] = self.filter_status
            result["completed_at"] = _iso(self.completed_at)
            result["completed_by"] = self.completed_by
        result.update(extra)
        return result


@dataclass(frozen=True)
class Completion:
    """One recorded call: its outcome, the attempt it was, and what follows (final, retry or callback).

    Built from the completion's own history entry, so sending the same
    completion again gets exactly the same answer, even after the student
    has moved on.
    """

    student_id: str
    call_session_id: str
    assignment_token: int
    outcome: str
    completed_at: datetime | None
    completed_by: str | None
    attempt: int
    next: str
    next_attempt_at: datetime | None = None
    callback_assistant: str | None = None

    @classmethod
    def from_entry(cls, document: Mapping[str, Any], entry: Mapping[str, Any]) -> "Completion":
        return cls(
            student_id=document["_id"],
            call_session_id=document["call_session_id"],
            assignment_token=int(entry.get("token") or 0),
            outcome=entry["outcome"],
            completed_at=entry.get("at"),
            completed_by=entry.get("assistant_id"),
            attempt=int(entry.get("attempt") or 1),
            next=entry.get("next") or "final",
            next_attempt_at=entry.get("due_at"),
            callback_assistant=entry.get("callback_assistant"),
        )

    @property
    def final(self) -> bool:
        return self.next == "final"

    def to_result(self) -> dict[str, Any]:
        return {
            "status": "completed",
            "call_session_id": self.call_session_id,
            "student_id": self.student_id,
            "import_id": import_id_of(self.call_session_id, self.student_id),
            "assignment_token": self.assignment_token,
            "outcome": self.outcome,
            "completed_at": _iso(self.completed_at),
            "completed_by": self.completed_by,
            "attempt": self.attempt,
            "final": self.final,
            "next": self.next,
            "next_attempt_at": _iso(self.next_attempt_at),
            "callback_assistant": self.callback_assistant,
        }


@dataclass(frozen=True)
class BatchItem:
    """One validated item of a ``complete_batch`` job."""

    index: int
    call_session_id: str
    student_id: str
    outcome: str
    assistant_id: str | None = None
    assignment_token: int | None = None
    callback: Callback | None = None

    def request_id(self, job_id: str) -> str:
        """The id this item's write carries in the student's history."""
        return f"{job_id}:{self.index}"


@dataclass(frozen=True)
class ImportSummary:
    """Counts from one ``import_students`` call."""

    call_session_id: str
    session_created: bool
    received: int
    inserted: int
    duplicates: int
    # Rows not imported because their phone number or student id is on a do-not-call list.
    suppressed: int = 0

    def to_result(self) -> dict[str, Any]:
        return {
            "status": "imported",
            "call_session_id": self.call_session_id,
            "session_created": self.session_created,
            "received": self.received,
            "inserted": self.inserted,
            "duplicates": self.duplicates,
            "suppressed": self.suppressed,
        }


@dataclass(frozen=True)
class SessionStats:
    """Counts for one call session.

    ``pending`` counts students anyone could be handed now or once due
    (``scheduled_*`` are waiting for a time and not counted there, nor are
    students ``waiting_for_window``: outside their calling hours);
    ``attempts`` is the number of calls recorded, retries included;
    ``suppressed`` counts students on a do-not-call list (final with
    ``do_not_call``, or held now and final at their completion).
    """

    call_session_id: str
    status: str
    pending: int
    assigned: int
    completed: dict[str, int] = field(default_factory=dict)
    holders: tuple[str, ...] = ()
    scheduled_callbacks: int = 0
    scheduled_retries: int = 0
    attempts: int = 0
    waiting_for_window: int = 0
    suppressed: int = 0

    @property
    def total(self) -> int:
        return (self.pending + self.assigned + sum(self.completed.values())
                + self.scheduled_callbacks + self.scheduled_retries + self.waiting_for_window)

    def to_result(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "call_session_id": self.call_session_id,
            "session_status": self.status,
            "total": self.total,
            "pending": self.pending,
            "assigned": self.assigned,
            "scheduled": self.scheduled_callbacks + self.scheduled_retries + self.waiting_for_window,
            "scheduled_callbacks": self.scheduled_callbacks,
            "scheduled_retries": self.scheduled_retries,
            "waiting_for_window": self.waiting_for_window,
            "suppressed": self.suppressed,
            "completed": sum(self.completed.values()),
            "completed_by_outcome": dict(self.completed),
            "attempts": self.attempts,
            "assistants_holding": len(self.holders),
            "holders": list(self.holders),
        }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()
