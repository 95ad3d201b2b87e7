"""A database the size the dashboard must stay fast on: one session of 1,000,000 students among 200 open ones.

Everything is written through ``AssignmentStore`` (import, claim, complete),
so the documents and indexes are exactly those of a real deployment. The huge
session also gets a working day: ``calls`` claims and completions spread over
``assistants`` assistants (about one in ten scheduled for a retry, one in
twenty-five for a personal callback), then every assistant holds a student.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Callable

from pymongo.database import Database

from callqueue.workers.models import Callback, RetryRule
from callqueue.workers.models import CallSession
from callqueue.workers.store import SESSIONS, STUDENTS, AssignmentStore, CompletionPlan, NewStudent, plan_for, utcnow

HUGE_SESSION = "probe-huge"
OUTCOMES = ("reached", "voicemail", "wrong_number")
IMPORT_ROWS = 10_000
Say = Callable[[str], None]


@dataclass(frozen=True)
class ProbeData:
    """How big the probe's database is."""

    huge_students: int = 1_000_000
    open_sessions: int = 200
    small_students: int = 1_000
    calls: int = 20_000
    assistants: int = 200
    desks: int = 8


def seeded(database: Database, data: ProbeData) -> bool:
    """Whether ``database`` already holds the probe's sessions and holds (a second run reuses them)."""
    holds = database[STUDENTS].count_documents(
        {"call_session_id": HUGE_SESSION, "filter_status": "", "assigned_to": {"$type": "string"}})
    return database[SESSIONS].count_documents({"status": "open"}) >= data.open_sessions and holds >= data.assistants


def seed(database: Database, data: ProbeData, say: Say = print) -> None:
    """Import the sessions, then give the huge one its day of calls and holds."""
    store = AssignmentStore(database)
    rows = [NewStudent({"name": f"Student {n:07d}", "phone": f"+1555{n:07d}"}, key=f"s{n:07d}")
            for n in range(data.huge_students)]
    for start in range(0, len(rows), IMPORT_ROWS):
        store.import_students(HUGE_SESSION, "The huge session", rows[start:start + IMPORT_ROWS], IMPORT_ROWS)
        if start % 200_000 == 0:
            say(f"imported {start + IMPORT_ROWS:,} students into {HUGE_SESSION}")
    small = rows[:data.small_students]
    for number in range(1, data.open_sessions):
        store.import_students(f"probe-{number:03d}", f"Evening calls {number:03d}", small, IMPORT_ROWS)
    say(f"imported {data.open_sessions - 1} sessions of {data.small_students:,} students")
    store.set_campaign(HUGE_SESSION, (RetryRule("no_answer", 3600, 3),), None)
    _work(database, data)
    say(f"{data.calls:,} calls made in {HUGE_SESSION} by {data.assistants} assistants, each holding one now")


def _work(database: Database, data: ProbeData) -> None:
    """``calls`` claims and completions over ``desks`` threads, then one hold per assistant."""
    per_desk = data.calls // data.desks
    assistants_each = max(1, data.assistants // data.desks)
    errors: list[BaseException] = []

    def desk(number: int) -> None:
        try:
            store = AssignmentStore(database)
            session = store.require_session(HUGE_SESSION)
            for call in range(per_desk):
                assistant = f"assistant-{number + data.desks * (call % assistants_each):03d}"  # its own
                held = store.assign_next(session, assistant, uuid.uuid4().hex)
                assert held is not None
                store.complete(HUGE_SESSION, held.student_id, assistant, held.assignment_token,
                               _plan(session, call, assistant), uuid.uuid4().hex)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=desk, args=(number,)) for number in range(data.desks)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    store = AssignmentStore(database)
    session = store.require_session(HUGE_SESSION)
    for number in range(data.assistants):
        store.assign_next(session, f"assistant-{number:03d}", uuid.uuid4().hex)


def _plan(session: CallSession, call: int, assistant: str) -> CompletionPlan:
    """About one call in 27 asks for a personal callback within two hours, one in 10 goes unanswered."""
    if call % 27 == 0:
        return plan_for(session, "call_back_later", Callback(utcnow() + timedelta(minutes=call % 120), assistant),
                        900)
    return plan_for(session, "no_answer" if call % 10 == 3 else OUTCOMES[call % len(OUTCOMES)], None, 900)
