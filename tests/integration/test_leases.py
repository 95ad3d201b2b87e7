"""Leases, heartbeats and fencing through real workers and a real beat."""

from __future__ import annotations

import time

import pytest
from pymongo.database import Database

from callqueue.producers.client import AssignmentClient
from callqueue.producers.results import Assigned
from tests.integration.helpers import seed
from callqueue.workers.exceptions import StaleToken


def wait_for_student(client: AssignmentClient, session_id: str, assistant: str, seconds: float) -> Assigned:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if (assigned := client.assign_next(session_id, assistant)) is not None:
            return assigned
        time.sleep(0.2)
    raise AssertionError(f"{assistant} got no student within {seconds}s")


def test_expired_lease_goes_to_another_assistant_and_fences_the_first(
        client: AssignmentClient, session_id: str, app_database: Database) -> None:
    seed(client, session_id, 1)
    client.set_lease(session_id, 1)
    first = client.assign_next(session_id, "alice")

    second = wait_for_student(client, session_id, "bob", seconds=20)  # beat reclaims every second

    assert second.student_id == first.student_id
    assert second.assignment_token > first.assignment_token
    for late_write in (
        lambda: client.complete(session_id, first.student_id, "alice", "reached", first.assignment_token),
        lambda: client.heartbeat(session_id, first.student_id, "alice", first.assignment_token),
        lambda: client.release(session_id, first.student_id, "alice", first.assignment_token),
    ):
        with pytest.raises(StaleToken):
            late_write()
    done = client.complete(session_id, second.student_id, "bob", "reached", second.assignment_token)
    assert done.outcome == "reached"
    events = [e["event"] for e in app_database.call_session_students.find_one({"_id": first.student_id})["history"]]
    assert events == ["claimed", "reclaimed", "claimed", "completed"]


def test_a_holder_that_heartbeats_keeps_the_student(client: AssignmentClient, session_id: str) -> None:
    seed(client, session_id, 1)
    client.set_lease(session_id, 2)
    held = client.assign_next(session_id, "carol")
    for _ in range(10):  # 5 s: more than two lease lengths, with beat reclaiming every second
        time.sleep(0.5)
        renewed = client.heartbeat(session_id, held.student_id, "carol", held.assignment_token)
        assert renewed.assignment_token == held.assignment_token
        assert client.assign_next(session_id, "dave") is None
    done = client.complete(session_id, held.student_id, "carol", "reached", held.assignment_token)
    assert done.outcome == "reached"


def test_without_a_lease_a_student_stays_held(client: AssignmentClient, session_id: str) -> None:
    seed(client, session_id, 1)
    held = client.assign_next(session_id, "erin")
    time.sleep(2.5)
    assert client.assign_next(session_id, "frank") is None
    assert client.heartbeat(session_id, held.student_id, "erin", held.assignment_token).status == "renewed"


def test_an_assistant_logging_off_gives_the_student_back(client: AssignmentClient, session_id: str) -> None:
    seed(client, session_id, 1)
    held = client.assign_next(session_id, "gina")
    assert client.release_assistant(session_id, "gina") == 1
    assert client.release_assistant(session_id, "gina") == 0
    again = client.assign_next(session_id, "hank")
    assert again.student_id == held.student_id
    with pytest.raises(StaleToken):
        client.complete(session_id, held.student_id, "gina", "reached", held.assignment_token)
