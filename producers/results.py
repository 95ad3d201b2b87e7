"""Typed views of the JSON results the tasks send back."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Mapping, Union

from callqueue.workers.exceptions import Rejected, rejection_from_error


@dataclass(frozen=True)
class Assigned:
    """A student handed to an assistant (``already_held`` when they had it before)."""

    call_session_id: str
    student_id: str
    student: dict[str, Any]
    assigned_to: str
    assignment_token: int
    already_held: bool
    request_id: str
    # The id the import gave the student (``student_id`` without the session's prefix); tasks accept either.
    import_id: str | None = None

    @classmethod
    def from_result(cls, result: Mapping[str, Any], request_id: str) -> "Assigned":
        return cls(result["call_session_id"], result["student_id"], dict(result["student"]),
                   result["assigned_to"], int(result["assignment_token"]),
                   bool(result["already_held"]), request_id, result.get("import_id"))


@dataclass(frozen=True)
class Exhausted:
    """Nobody this press could take is there now: why (``reason``), and when someone could be.

    ``reason`` is ``scheduled`` (``scheduled`` students wait for a retry or
    callback time, the first at ``next_due_at``), ``held`` (other assistants
    hold ``held_by_others`` students this press could take; none waits) or
    ``none_left``.
    """

    call_session_id: str
    reason: str
    next_due_at: datetime | None = None
    scheduled: int = 0
    held_by_others: int = 0

    @classmethod
    def from_result(cls, result: Mapping[str, Any]) -> "Exhausted":
        return cls(result["call_session_id"], result.get("reason") or "none_left",
                   parse_moment(result.get("next_due_at")), int(result.get("scheduled") or 0),
                   int(result.get("held_by_others") or 0))

    @property
    def someone_may_come(self) -> bool:
        """False when nobody this press could take is left: waiting is pointless."""
        return self.reason != "none_left"


Press = Union[Assigned, Exhausted]


def press_from_result(result: Mapping[str, Any], request_id: str) -> Press:
    """The answer of a "Get Next" press: the student handed out, or ``Exhausted``."""
    return Exhausted.from_result(result) if result["status"] == "exhausted" else Assigned.from_result(result,
                                                                                                       request_id)


@dataclass(frozen=True)
class StudentUpdate:
    """The state of a student after ``complete`` or ``release``."""

    status: str
    call_session_id: str
    student_id: str
    assignment_token: int
    outcome: str | None = None
    # The id the import gave the student; tasks accept it as well as ``student_id``.
    import_id: str | None = None

    @classmethod
    def from_result(cls, result: Mapping[str, Any]) -> "StudentUpdate":
        return cls(result["status"], result["call_session_id"], result["student_id"],
                   int(result["assignment_token"]), result.get("outcome"), result.get("import_id"))


@dataclass(frozen=True)
class Completed(StudentUpdate):
    """A recorded call: the attempt it was and what follows it.

    ``next`` is ``final`` (the outcome is the student's result), ``retry``
    (the session's rule for the outcome calls the student again at
    ``next_attempt_at``) or ``callback`` (a callback was asked for at
    ``next_attempt_at``, for ``callback_assistant`` first when one was named).
    """

    completed_at: datetime | None = None
    completed_by: str | None = None
    attempt: int = 1
    final: bool = True
    next: str = "final"
    next_attempt_at: datetime | None = None
    callback_assistant: str | None = None

    @classmethod
    def from_result(cls, result: Mapping[str, Any]) -> "Completed":
        return cls(result["status"], result["call_session_id"], result["student_id"],
                   int(result["assignment_token"]), result.get("outcome"), result.get("import_id"),
                   completed_at=parse_moment(result.get("completed_at")),
                   completed_by=result.get("completed_by"),
                   attempt=int(result.get("attempt") or 1),
                   final=bool(result.get("final", True)),
                   next=result.get("next") or "final",
                   next_attempt_at=parse_moment(result.get("next_attempt_at")),
                   callback_assistant=result.get("callback_assistant"))


@dataclass(frozen=True)
class CompletedAndNext:
    """A completion and the press that followed it (``callqueue.complete_and_next``).

    ``next`` is the student handed out, ``Exhausted``, or the ``Rejected``
    error that refused the press (for example ``SessionClosed``): the
    completion stands either way.
    """

    completion: Completed
    next: Assigned | Exhausted | Rejected

    @classmethod
    def from_result(cls, result: Mapping[str, Any], request_id: str) -> "CompletedAndNext":
        following = result["next"]
        return cls(Completed.from_result(result["completion"]),
                   rejection_from_error(following.get("error") or {}) if following["status"] == "rejected"
                   else press_from_result(following, request_id))

    @property
    def student(self) -> Assigned | None:
        """The next student, or None when the press found nobody or was refused."""
        return self.next if isinstance(self.next, Assigned) else None


@dataclass(frozen=True)
class ImportResult:
    """Counts from one import call."""

    call_session_id: str
    session_created: bool
    received: int
    inserted: int
    duplicates: int
    # Rows skipped because their number or id is on a do-not-call list.
    suppressed: int = 0

    @classmethod
    def from_result(cls, result: Mapping[str, Any]) -> "ImportResult":
        return cls(result["call_session_id"], bool(result["session_created"]), int(result["received"]),
                   int(result["inserted"]), int(result["duplicates"]), int(result.get("suppressed", 0)))


@dataclass(frozen=True)
class Stats:
    """Where a session stands."""

    call_session_id: str
    session_status: str
    total: int
    pending: int
    assigned: int
    completed: int
    completed_by_outcome: dict[str, int] = field(default_factory=dict)
    holders: tuple[str, ...] = ()
    scheduled: int = 0
    scheduled_callbacks: int = 0
    scheduled_retries: int = 0
    attempts: int = 0
    # Students outside their calling hours (in ``scheduled`` too), and students on a do-not-call list.
    waiting_for_window: int = 0
    suppressed: int = 0

    @classmethod
    def from_result(cls, result: Mapping[str, Any]) -> "Stats":
        return cls(result["call_session_id"], result["session_status"], int(result["total"]),
                   int(result["pending"]), int(result["assigned"]), int(result["completed"]),
                   dict(result["completed_by_outcome"]), tuple(result["holders"]),
                   int(result.get("scheduled", 0)), int(result.get("scheduled_callbacks", 0)),
                   int(result.get("scheduled_retries", 0)), int(result.get("attempts", 0)),
                   int(result.get("waiting_for_window", 0)), int(result.get("suppressed", 0)))

    @property
    def outstanding(self) -> int:
        """Students not yet at a final outcome: pending, held, or waiting for a callback, retry or window."""
        return self.pending + self.assigned + self.scheduled

    @property
    def coming_soon(self) -> int:
        """Students a press may get before long: pending, held, or waiting for a callback or retry (not for
        their calling hours, which may open only tomorrow)."""
        return self.pending + self.assigned + self.scheduled_callbacks + self.scheduled_retries


def parse_moment(value: str | None) -> datetime | None:
    """An ISO-8601 time from an answer, or None."""
    return None if value is None else datetime.fromisoformat(value)
