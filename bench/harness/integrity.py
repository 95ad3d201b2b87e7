"""Never handed to two assistants: the answers the bench received against the students' history.

The history is replayed by ``devstack.audit.audit_session``, the same audit
the tests and the demo use; this module adds what a benchmark knows on top:
every claim in MongoDB was answered to someone, and the holds ended as the
part expected (still held, completed once, or a whole session drained). In a
session with calling hours the audit also checks every claim against its
student's window at the claim's time.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Iterable, NamedTuple, Sequence

from pymongo.database import Database

from devstack.audit import AuditReport, Handout, audit_session

HELD = "held"
COMPLETED = "completed"
RELEASED = "released"
# What the holds of a part's claims should look like once it is done:
HOLDING = "holding"  # every claimed student still held by the assistant told of it (engine, Celery)
ENDED = "ended"  # every claimed student completed exactly once (presses that complete)
DRAINED = "drained"  # every student of the session completed exactly once


class Answer(NamedTuple):
    """One claim as its client was told of it, and how the client ended the hold (or ``refused:<code>``)."""

    session_id: str
    student_id: str
    assistant_id: str
    token: int | None
    ended: str = HELD


@dataclass(frozen=True)
class IntegrityReport:
    """Counts of every way a claim can go wrong; all must be 0.

    ``students_in_two_answers``: a claim told to two assistants; ``students_claimed_twice``: claimed while
    held, or completed twice; ``holder_mismatches``: an answer the history does not record for its
    assistant, an assistant holding two, a refused completion, attempts that disagree with the history,
    or (``HOLDING``) a claim no longer held; ``claimed_without_answer``: a claim nobody was told of;
    ``not_completed_once``: (``ENDED``, ``DRAINED``) a student not completed exactly once;
    ``claims_outside_hours``: in a session with calling hours, a claim made (by the history's time) while
    its student's window, in its own zone, was closed.
    """

    part: str
    answers: int
    students_in_two_answers: int = 0
    students_claimed_twice: int = 0
    holder_mismatches: int = 0
    claimed_without_answer: int = 0
    not_completed_once: int = 0
    claims_outside_hours: int = 0

    @property
    def handed_twice(self) -> int:
        """Students that two assistants could both believe they hold."""
        return self.students_in_two_answers + self.students_claimed_twice + self.holder_mismatches

    @property
    def ok(self) -> bool:
        return (self.handed_twice == 0 and self.claimed_without_answer == 0 and self.not_completed_once == 0
                and self.claims_outside_hours == 0)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "handed_twice": self.handed_twice, "ok": self.ok}

    def line(self) -> str:
        return (f"  [{'OK' if self.ok else 'FAIL'}] {self.part}: {self.answers} claims, {self.handed_twice} "
                f"students handed to two assistants, {self.claimed_without_answer} claimed without an answer, "
                f"{self.not_completed_once} not completed exactly once"
                + (f", {self.claims_outside_hours} claimed outside calling hours" if self.claims_outside_hours else ""))


def check(part: str, database: Database, answers: Sequence[Answer], expect: str,
          sessions: Iterable[str] = ()) -> IntegrityReport:
    """Audit every session of ``answers`` (and ``sessions``) against what the clients were told."""
    by_session: dict[str, list[Answer]] = {session_id: [] for session_id in sessions}
    for answer in answers:
        by_session.setdefault(answer.session_id, []).append(answer)
    return combine(part, [from_audit("", audit_session(
        database, session_id, [Handout(answer.student_id, answer.assistant_id, answer.token) for answer in given],
        claimed_only=expect != DRAINED), given, expect) for session_id, given in by_session.items()])


def from_audit(part: str, audit: AuditReport, answers: Sequence[Answer], expect: str) -> IntegrityReport:
    """One session's audit, with the answers its clients were told, as a report.

    A claim told twice to the same assistant is one answer resent (a client
    retrying under the same request id); told to two assistants, it is a
    student handed out twice.
    """
    told: dict[tuple[str, int | None], set[str]] = {}
    for answer in answers:
        told.setdefault((answer.student_id, answer.token), set()).add(answer.assistant_id)
    wrong = {(handout.student_id, handout.assignment_token) for handout in audit.answers_not_in_history}
    return IntegrityReport(
        part, len(answers),
        students_in_two_answers=sum(1 for assistants in told.values() if len(assistants) > 1),
        students_claimed_twice=len(audit.double_handouts) + len(audit.completed_twice),
        holder_mismatches=(len(wrong) + len(audit.assistants_holding_two) + len(audit.attempts_not_matching_history)
                           + (audit.students - audit.held if expect == HOLDING else 0)
                           + sum(1 for answer in answers if answer.ended.startswith("refused"))),
        claimed_without_answer=audit.claims - len(set(told) - wrong),
        not_completed_once=0 if expect == HOLDING else audit.students - audit.completed,
        claims_outside_hours=len(audit.claims_outside_hours))


def combine(part: str, reports: Iterable[IntegrityReport]) -> IntegrityReport:
    """Several reports as one: every count summed, none left out."""
    reports = list(reports)
    return IntegrityReport(part, sum(report.answers for report in reports),
                           sum(report.students_in_two_answers for report in reports),
                           sum(report.students_claimed_twice for report in reports),
                           sum(report.holder_mismatches for report in reports),
                           sum(report.claimed_without_answer for report in reports),
                           sum(report.not_completed_once for report in reports),
                           sum(report.claims_outside_hours for report in reports))
