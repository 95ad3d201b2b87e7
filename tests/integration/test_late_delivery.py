"""Late and repeated delivery: expired requests are discarded, served requests never claim again."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from pymongo.database import Database

from callqueue.producers.client import AssignmentClient
from tests.integration.helpers import seed
from callqueue.workers.store import AssignmentStore, CompletionPlan, NewStudent, utcnow
from callqueue.workers.exceptions import RequestAlreadyServed


def test_a_request_delivered_after_its_expiry_is_discarded_visibly(
        client: AssignmentClient, session_id: str, app_database: Database) -> None:
    seed(client, session_id, 3)
    late = client.app.send_task("callqueue.assign_next_student",
                                kwargs={"call_session_id": session_id, "assistant_id": "alice"},
                                countdown=2, expires=1)
    deadline = time.monotonic() + 20
    while late.state != "REVOKED" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert late.state == "REVOKED"  # visible in the result backend and in Flower
    assert app_database.call_session_students.count_documents(
        {"call_session_id": session_id, "assigned_to": {"$ne": None}}) == 0


def test_the_same_request_delivered_again_after_completion_claims_nothing(
        client: AssignmentClient, session_id: str) -> None:
    seed(client, session_id, 3)
    arguments = {"call_session_id": session_id, "assistant_id": "alice", "request_id": f"press-{session_id}"}
    first = client.call("callqueue.assign_next_student", **arguments)
    client.complete(session_id, first["student_id"], "alice", "reached", first["assignment_token"])
    with pytest.raises(RequestAlreadyServed):
        client.call("callqueue.assign_next_student", **arguments)
    stats = client.stats(session_id)
    assert (stats.assigned, stats.completed, stats.pending) == (0, 1, 2)


def test_a_redelivery_minutes_later_around_completion_and_release_never_claims(store: AssignmentStore) -> None:
    store.import_students("s", None, [NewStudent({"n": n}, key=f"k{n}") for n in range(3)])
    session = store.open_session("s")
    start = utcnow()
    first = store.assign_next(session, "alice", "press-1", now=start)
    store.complete("s", first.student_id, "alice", first.assignment_token, CompletionPlan("reached"), "c1",
                   now=start + timedelta(minutes=1))
    with pytest.raises(RequestAlreadyServed):
        store.assign_next(session, "alice", "press-1", now=start + timedelta(minutes=5))
    second = store.assign_next(session, "alice", "press-2", now=start + timedelta(minutes=6))
    store.release("s", second.student_id, "alice", second.assignment_token, "r1",
                  now=start + timedelta(minutes=7))
    with pytest.raises(RequestAlreadyServed):
        store.assign_next(session, "alice", "press-2", now=start + timedelta(minutes=12))
    assert store.stats(session).assigned == 0
