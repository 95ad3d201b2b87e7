"""Checking a call session for double hand-outs and lost students, from its history.

Used by the demo, the tests and the benchmark: it reads every student of a
session and replays their ``history`` to prove the promise held.

A student may be completed several times: a completion whose ``next`` is
``retry`` or ``callback`` leaves the student to be called again, and only a
``final`` one (or one without ``next``, recorded before campaigns existed)
gives the student its result. So the audit counts final completions (at most
one per student), checks that the student's ``attempts`` equals its
completions, and follows each personal callback to the claim that took it.

In a session with calling hours it also checks every claim against its
student's window at the claim's time (the server's, from the history), in
the student's own zone: a claim outside is a defect.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Iterable

from pymongo.database import Database

from callqueue.workers.hours import CallingHours, placement
from callqueue.workers.store import SESSIONS, STUDENTS
from callqueue.workers.models import PENDING

CLOSING_EVENTS = ("completed", "released", "reclaimed", "closed")
FINAL, RETRY, CALLBACK = "final", "retry", "callback"


@dataclass(frozen=True)
class Handout:
    """One answer a caller received: this student, to this assistant, under this token."""

    student_id: str
    assistant_id: str
    assignment_token: int


@dataclass(frozen=True)
class CompletionAnswer:
    """One completion a caller was told of: this student, by this assistant, under this token, this outcome."""

    student_id: str
    assistant_id: str
    assignment_token: int
    outcome: str


@dataclass
class AuditReport:
    """What the session's documents and the callers' answers show."""

    students: int = 0
    completed: int = 0
    pending: int = 0
    # Waiting for a callback or retry time, and waiting for the student's calling hours.
    scheduled: int = 0
    waiting_for_window: int = 0
    held: int = 0
    claims: int = 0
    # Completion entries in the histories (every attempt), and those whose "next" was each of these.
    completions: int = 0
    final_completions: int = 0
    retries: int = 0
    callbacks: int = 0
    # Callbacks asked for a named assistant, and how many of those the same assistant claimed next.
    personal_callbacks: int = 0
    personal_callbacks_kept: int = 0
    # The students' own attempt counters, summed.
    attempts: int = 0
    double_handouts: list[str] = field(default_factory=list)
    completed_twice: list[str] = field(default_factory=list)
    attempts_not_matching_history: list[str] = field(default_factory=list)
    assistants_holding_two: list[str] = field(default_factory=list)
    answers_not_in_history: list[Handout] = field(default_factory=list)
    tokens_given_twice: list[tuple[str, int]] = field(default_factory=list)
    # (student, claim time) of every claim made while the student's window was closed.
    claims_outside_hours: list[tuple[str, datetime]] = field(default_factory=list)
    # Completions callers were told of that no completion in the history matches.
    completions_not_in_history: list[CompletionAnswer] = field(default_factory=list)
    # Request ids under which more than one claim was made (a press must claim at most once).
    requests_claiming_twice: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        """True when nothing was doubled, every attempt is in the history, every answer matches it and
        nobody was called outside their calling hours."""
        return not (self.double_handouts or self.completed_twice or self.assistants_holding_two
                    or self.answers_not_in_history or self.tokens_given_twice
                    or self.attempts_not_matching_history or self.claims_outside_hours
                    or self.completions_not_in_history or self.requests_claiming_twice)


def audit_session(database: Database, session_id: str, answers: Iterable[Handout] = (),
                  claimed_only: bool = False, completions: Iterable[CompletionAnswer] = ()) -> AuditReport:
    """Replay each student's history and compare it with the answers (claims and completions) callers got.

    ``claimed_only`` reads only the students claimed at least once (a huge
    session the benchmark claimed a little from); the counts then cover those.
    """
    report = AuditReport()
    claims: dict[tuple[str, int], str] = {}
    holders: Counter[str] = Counter()
    requests: Counter[str] = Counter()
    recorded: set[CompletionAnswer] = set()
    session = database[SESSIONS].find_one({"_id": session_id}) or {}
    hours = CallingHours.from_document(session["calling_hours"]) if session.get("calling_hours") else None
    query = {"call_session_id": session_id, **({"history.0": {"$exists": True}} if claimed_only else {})}
    for document in database[STUDENTS].find(query):
        _count_state(report, document, holders)
        _replay_history(report, document, claims)
        for entry in document.get("history", []):
            if entry["event"] == "claimed" and entry.get("request_id") is not None:
                requests[entry["request_id"]] += 1
            elif entry["event"] == "completed" and entry.get("token") is not None:
                recorded.add(CompletionAnswer(document["_id"], entry["assistant_id"], entry["token"],
                                              entry["outcome"]))
        if hours is not None:
            report.claims_outside_hours.extend(claims_outside_hours(hours, document))
    report.assistants_holding_two = sorted(a for a, n in holders.items() if n > 1)
    report.requests_claiming_twice = sorted(request for request, n in requests.items() if n > 1)
    _check_answers(report, claims, answers)
    report.completions_not_in_history = [answer for answer in completions if answer not in recorded]
    return report


def _count_state(report: AuditReport, document: dict, holders: Counter[str]) -> None:
    report.students += 1
    report.attempts += int(document.get("attempts") or 0)
    if document.get("filter_status", PENDING) != PENDING:
        report.completed += 1
    elif document.get("assigned_to") is None and document.get("waiting_for") == "window":
        report.waiting_for_window += 1
    elif document.get("assigned_to") is None and document.get("waiting_for") in ("retry", "callback"):
        report.scheduled += 1
    elif document.get("assigned_to") is None:
        report.pending += 1
    else:
        report.held += 1
        holders[document["assigned_to"]] += 1


def _replay_history(report: AuditReport, document: dict, claims: dict[tuple[str, int], str]) -> None:
    """A claim while the student is still held, a second final completion, or attempts that do not
    match the completions recorded, is a defect."""
    held_by, completions, finals, callback_for = None, 0, 0, None
    for entry in document.get("history", []):
        if entry["event"] == "claimed":
            report.claims += 1
            if held_by is not None:
                report.double_handouts.append(document["_id"])
            held_by = entry["assistant_id"]
            claims[(document["_id"], entry["token"])] = entry["assistant_id"]
            if callback_for is not None:
                report.personal_callbacks_kept += entry["assistant_id"] == callback_for
                callback_for = None
        elif entry["event"] in CLOSING_EVENTS:
            held_by = None
            if entry["event"] == "completed":
                completions += 1
                following = entry.get("next") or FINAL
                finals += following == FINAL
                report.retries += following == RETRY
                report.callbacks += following == CALLBACK
                if following == CALLBACK and entry.get("callback_assistant"):
                    report.personal_callbacks += 1
                    callback_for = entry["callback_assistant"]
    report.completions += completions
    report.final_completions += finals
    if finals > 1:
        report.completed_twice.append(document["_id"])
    if "attempts" in document and document["attempts"] != completions:
        report.attempts_not_matching_history.append(document["_id"])


def claims_outside_hours(hours: CallingHours, document: dict) -> list[tuple[str, datetime]]:
    """The student's claims made while its window, in its own zone, was closed (by the history's times).

    A callback the session allowed outside the hours (``hours_exempt_until``
    in the completion that asked for it) is not counted.
    """
    outside, exempt_until = [], None
    for entry in document.get("history", []):
        at = entry["at"].replace(tzinfo=timezone.utc) if entry["at"].tzinfo is None else entry["at"]
        if entry["event"] == "completed":
            exempt_until = entry.get("exempt_until")
        elif entry["event"] == "claimed" and not placement(hours, document.get("zone"), at).open:
            if exempt_until is None or at > exempt_until.replace(tzinfo=timezone.utc):
                outside.append((document["_id"], at))
    return outside


def _check_answers(report: AuditReport, claims: dict[tuple[str, int], str], answers: Iterable[Handout]) -> None:
    seen: dict[tuple[str, int], str] = {}
    for answer in answers:
        key = (answer.student_id, answer.assignment_token)
        if claims.get(key) != answer.assistant_id:
            report.answers_not_in_history.append(answer)
        if seen.setdefault(key, answer.assistant_id) != answer.assistant_id:
            report.tokens_given_twice.append(key)
