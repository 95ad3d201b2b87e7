"""Typed views of the JSON results the tasks send back."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping


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

    @classmethod
    def from_result(cls, result: Mapping[str, Any], request_id: str) -> "Assigned":
        return cls(result["call_session_id"], result["student_id"], dict(result["student"]),
                   result["assigned_to"], int(result["assignment_token"]),
                   bool(result["already_held"]), request_id)


@dataclass(frozen=True)
class StudentUpdate:
    """The state of a student after ``complete`` or ``release``."""

    status: str
    call_session_id: str
    student_id: str
    assignment_token: int
    outcome: str | None = None

    @classmethod
    def from_result(cls, result: Mapping[str, Any]) -> "StudentUpdate":
        return cls(result["status"], result["call_session_id"], result["student_id"],
                   int(result["assignment_token"]), result.get("outcome"))


@dataclass(frozen=True)
class ImportResult:
    """Counts from one import call."""

    call_session_id: str
    session_created: bool
    received: int
    inserted: int
    duplicates: int

    @classmethod
    def from_result(cls, result: Mapping[str, Any]) -> "ImportResult":
        return cls(result["call_session_id"], bool(result["session_created"]), int(result["received"]),
                   int(result["inserted"]), int(result["duplicates"]))


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

    @classmethod
    def from_result(cls, result: Mapping[str, Any]) -> "Stats":
        return cls(result["call_session_id"], result["session_status"], int(result["total"]),
                   int(result["pending"]), int(result["assigned"]), int(result["completed"]),
                   dict(result["completed_by_outcome"]), tuple(result["holders"]))
