"""The "never handed to two assistants" check, run after every measurement.

Two independent views must agree: the answers the clients received (no
student may appear in two answers) and what MongoDB recorded (no student may
carry two ``claimed`` entries in its ``history``, and each answered student
must be held by exactly the assistant that received it).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Sequence

from pymongo.database import Database

from workers.store import STUDENTS

Answer = tuple[str, str]


@dataclass(frozen=True)
class IntegrityReport:
    """Counts of every way a student could have been handed out twice (all must be 0)."""

    part: str
    answers: int
    students_in_two_answers: int
    students_claimed_twice: int
    holder_mismatches: int
    claimed_without_answer: int

    @property
    def handed_twice(self) -> int:
        """Students that two assistants could both believe they hold."""
        return self.students_in_two_answers + self.students_claimed_twice + self.holder_mismatches

    @property
    def ok(self) -> bool:
        return self.handed_twice == 0 and self.claimed_without_answer == 0

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "handed_twice": self.handed_twice, "ok": self.ok}

    def line(self) -> str:
        """One printable line for the console."""
        verdict = "OK" if self.ok else "FAIL"
        return (f"  [{verdict}] {self.part}: {self.answers} claims, {self.handed_twice} students handed "
                f"to two assistants, {self.claimed_without_answer} claimed without an answer")


def check(part: str, database: Database, session_ids: Sequence[str],
          answers: Sequence[Answer]) -> IntegrityReport:
    """Compare ``answers`` (student id, assistant id) with the stored students of ``session_ids``."""
    stored = _claimed_students(database, session_ids)
    answered = Counter(student for student, _assistant in answers)
    mismatches = sum(1 for student, assistant in answers if not _holds(stored.get(student), assistant))
    return IntegrityReport(
        part=part,
        answers=len(answers),
        students_in_two_answers=sum(1 for count in answered.values() if count > 1),
        students_claimed_twice=sum(1 for document in stored.values() if len(_claimants(document)) > 1),
        holder_mismatches=mismatches,
        claimed_without_answer=sum(1 for student in stored if student not in answered),
    )


def _claimed_students(database: Database, session_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Every student of the sessions that has been claimed at least once."""
    cursor = database[STUDENTS].find(
        {"call_session_id": {"$in": list(session_ids)}, "history.0": {"$exists": True}},
        {"assigned_to": 1, "history.event": 1, "history.assistant_id": 1},
    )
    return {document["_id"]: document for document in cursor}


def _claimants(document: dict[str, Any]) -> list[str]:
    return [entry.get("assistant_id") for entry in document.get("history") or []
            if entry.get("event") == "claimed"]


def _holds(document: dict[str, Any] | None, assistant: str) -> bool:
    """True when the stored student is held by ``assistant`` and was only ever claimed by them."""
    return document is not None and document.get("assigned_to") == assistant \
        and _claimants(document) == [assistant]


def combine(part: str, reports: Iterable[IntegrityReport]) -> IntegrityReport:
    """Sum several reports into one for the summary."""
    reports = list(reports)
    return IntegrityReport(
        part=part,
        answers=sum(r.answers for r in reports),
        students_in_two_answers=sum(r.students_in_two_answers for r in reports),
        students_claimed_twice=sum(r.students_claimed_twice for r in reports),
        holder_mismatches=sum(r.holder_mismatches for r in reports),
        claimed_without_answer=sum(r.claimed_without_answer for r in reports),
    )
