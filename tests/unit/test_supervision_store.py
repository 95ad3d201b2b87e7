"""The supervision stage against a real mongod: counts, activity, per-assistant figures, callbacks, events, lists."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest
from pymongo.database import Database
from pymongo.errors import OperationFailure

from callqueue.workers.figures import start_of_day
from callqueue.workers.models import Callback, RetryRule
from callqueue.workers.store import STUDENTS, AssignmentStore, NewStudent, plan_for, utcnow
from callqueue.workers.store.documents import SUPERVISION_INDEXES

HOSTILE = "<img src=x onerror=alert(1)>"


def rid() -> str:
    return uuid.uuid4().hex


def import_session(store: AssignmentStore, session_id: str, count: int, name: str = "Evening") -> None:
    store.import_students(session_id, name, [NewStudent({"name": f"Student {n}"}, key=f"k{n}") for n in range(count)])


def call(store: AssignmentStore, session_id: str, assistant: str, outcome: str, claimed: datetime,
         seconds: float, callback: Callback | None = None) -> str:
    """Claim at ``claimed`` and complete ``seconds`` later; the student's id."""
    session = store.require_session(session_id)
    held = store.assign_next(session, assistant, rid(), now=claimed)
    assert held is not None
    store.complete(session_id, held.student_id, assistant, held.assignment_token,
                   plan_for(session, outcome, callback, 900), rid(), now=claimed + timedelta(seconds=seconds))
    return held.student_id


def test_summary_counts_every_part_of_the_progress_bar(store: AssignmentStore) -> None:
    import_session(store, "s1", 10)
    store.set_campaign("s1", (RetryRule("no_answer", 3600, 3),), None)
    now = utcnow()
    call(store, "s1", "ann", "reached", now - timedelta(seconds=20), 5)
    call(store, "s1", "ann", "no_answer", now - timedelta(seconds=10), 5)
    call(store, "s1", "bob", "call_later", now - timedelta(seconds=10), 5, Callback(now + timedelta(minutes=30), "bob"))
    session = store.require_session("s1")
    store.assign_next(session, "cy", rid())
    store.assign_next(session, "dan", rid())

    summary = store.summary(session)

    assert (summary.counts.pending, summary.counts.held) == (5, 2)
    assert (summary.counts.scheduled_retries, summary.counts.scheduled_callbacks) == (1, 1)
    assert summary.counts.completed == {"reached": 1}
    assert summary.counts.total == 10
    assert summary.holders == {"cy", "dan"}
    assert (summary.last_minute.claims, summary.last_minute.completions) == (5, 3)
    assert summary.assistants_active == {"ann", "bob", "cy", "dan"}
    assert summary.next_callback_at is not None and abs(summary.next_callback_at - (now + timedelta(minutes=30))) \
        < timedelta(seconds=1)
    assert summary.next_callback_assistant == "bob"
    first = store.students.find_one({"_id": "s1:k9"})
    assert summary.oldest_pending_since == first["imported_at"]


def test_the_oldest_pending_student_is_the_first_imported_that_nobody_holds(store: AssignmentStore) -> None:
    import_session(store, "s1", 2)
    later = utcnow() + timedelta(minutes=5)
    store.students.update_one({"_id": "s1:k1"}, {"$set": {"imported_at": later}})
    session = store.require_session("s1")
    held = store.assign_next(session, "ann", rid())
    assert held.student_id == "s1:k0"
    assert store.summary(session).oldest_pending_since == later  # k0, imported first, is held: not waiting


def test_day_activity_counts_each_assistants_calls_today_and_in_the_last_hour(store: AssignmentStore) -> None:
    import_session(store, "s1", 10)
    now = datetime(2026, 11, 28, 8, 30, tzinfo=timezone.utc)
    day_start = start_of_day(now, "UTC")
    call(store, "s1", "ann", "reached", now - timedelta(minutes=10), 30)
    call(store, "s1", "ann", "voicemail", now - timedelta(minutes=5), 90)
    call(store, "s1", "ann", "reached", now - timedelta(hours=3), 60)        # today, not the last hour
    call(store, "s1", "bob", "reached", day_start - timedelta(hours=2), 60)  # yesterday
    store.assign_next(store.require_session("s1"), "cy", rid(), now=now - timedelta(minutes=1))

    day = store.day_activity("s1", day_start, now)

    figures = {row.assistant_id: row for row in day.assistants}
    assert set(figures) == {"ann", "cy"}
    ann = figures["ann"]
    assert (ann.calls_last_hour, ann.calls_today) == (2, 3)
    assert ann.outcomes_today == {"reached": 2, "voicemail": 1}
    assert ann.average_call_seconds == pytest.approx(60.0)
    assert ann.holding is None and ann.last_event_at == now - timedelta(minutes=5) + timedelta(seconds=90)
    assert figures["cy"].holding is not None and figures["cy"].calls_today == 0
    assert figures["cy"].holding.since == now - timedelta(minutes=1)
    chart = dict(day.completions_per_minute)
    assert len(chart) == 61 and sum(chart.values()) == 2
    assert chart[datetime(2026, 11, 28, 8, 20, tzinfo=timezone.utc)] == 1  # claimed 8:20:00, completed 8:20:30


def test_callbacks_due_list_those_waiting_for_their_assistant_then_the_next_hours(store: AssignmentStore) -> None:
    import_session(store, "s1", 5)
    now = utcnow()
    soon = call(store, "s1", "ann", "call_later", now - timedelta(seconds=5), 1, Callback(now + timedelta(minutes=20),
                                                                                         "ann"))
    call(store, "s1", "ann", "call_later", now - timedelta(seconds=5), 1, Callback(now + timedelta(hours=3)))
    due = call(store, "s1", "bob", "call_later", now - timedelta(seconds=5), 1, Callback(now - timedelta(seconds=1),
                                                                                        "bob"))
    assert store.promote_due() == 1

    callbacks = store.callbacks_due("s1", now + timedelta(hours=1))

    assert [(c.student_id, c.assistant_id, c.waiting_for_assistant) for c in callbacks] == [
        (due, "bob", True), (soon, "ann", False)]
    assert store.summary(store.require_session("s1")).next_callback_assistant == "bob"


def test_latest_events_are_newest_first_and_keep_a_hostile_name_as_plain_text(store: AssignmentStore) -> None:
    store.import_students("s1", "x", [NewStudent({"name": HOSTILE}, key="evil")])
    now = utcnow()
    call(store, "s1", "ann", "reached", now - timedelta(seconds=30), 10)

    events = store.latest_events("s1", 10)

    assert [(e.event, e.assistant_id, e.outcome) for e in events] == [("completed", "ann", "reached"),
                                                                      ("claimed", "ann", None)]
    assert events[0].student_name == HOSTILE and events[0].at > events[1].at


def test_session_lists_page_and_search_by_id_or_name(store: AssignmentStore) -> None:
    for number in range(5):
        import_session(store, f"evening-{number}", 1, name=f"Evening {number}")
    import_session(store, "morning", 1, name="Calls for Lyon")
    store.close_session("evening-0", "session_closed", False, rid())

    page, total = store.list_sessions("open", "", skip=0, limit=3)
    assert total == 5 and [s.id for s in page] == ["morning", "evening-4", "evening-3"]
    assert [s.id for s in store.list_sessions("open", "", skip=3, limit=3)[0]] == ["evening-2", "evening-1"]
    assert [s.id for s in store.list_sessions("open", "LYON")[0]] == ["morning"]
    assert [s.id for s in store.list_sessions("closed", "")[0]] == ["evening-0"]
    assert store.list_sessions("open", ".*")[1] == 0  # the search is text, not a pattern


def test_every_supervision_read_names_its_index(store: AssignmentStore, engine_database: Database) -> None:
    """With the supervision indexes gone the reads fail: none of them can quietly read a whole collection."""
    import_session(store, "s1", 3)
    session = store.require_session("s1")
    for index in SUPERVISION_INDEXES:
        engine_database[STUDENTS].drop_index(index.document["name"])
    for read in (lambda: store.summary(session), lambda: store.day_activity("s1", utcnow()),
                 lambda: store.callbacks_due("s1", utcnow()), lambda: store.latest_events("s1"),
                 lambda: store.next_retry_at("s1")):
        with pytest.raises(OperationFailure, match="hint"):
            read()

