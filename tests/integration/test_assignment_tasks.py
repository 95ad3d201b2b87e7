"""The task contract through real Celery workers, Redis and mongod."""

from __future__ import annotations

import pytest
from pymongo.database import Database

from callqueue.producers.client import AssignmentClient
from tests.integration.helpers import seed
from callqueue.workers.exceptions import NotHolder, SessionClosed, StaleToken, UnknownSession


def test_assistant_gets_a_student_with_a_token(client: AssignmentClient, session_id: str) -> None:
    seed(client, session_id, 3)
    assigned = client.assign_next(session_id, "alice")
    assert assigned is not None and assigned.assigned_to == "alice"
    assert assigned.student["name"] == "Student 0" and assigned.assignment_token == 1
    assert not assigned.already_held


def test_same_request_id_twice_returns_the_same_student(client: AssignmentClient, session_id: str) -> None:
    seed(client, session_id, 3)
    first = client.assign_next(session_id, "alice", request_id=f"press-{session_id}")
    again = client.assign_next(session_id, "alice", request_id=f"press-{session_id}")
    assert again == first and not again.already_held


def test_second_press_returns_the_student_already_held(client: AssignmentClient, session_id: str) -> None:
    seed(client, session_id, 3)
    first = client.assign_next(session_id, "alice")
    second = client.assign_next(session_id, "alice")
    assert second.student_id == first.student_id and second.already_held
    assert client.stats(session_id).assigned == 1


def test_stale_token_and_non_holder_cannot_complete(client: AssignmentClient, session_id: str) -> None:
    seed(client, session_id, 3)
    held = client.assign_next(session_id, "alice")
    with pytest.raises(NotHolder):
        client.complete(session_id, held.student_id, "bob", "reached", held.assignment_token)
    with pytest.raises(StaleToken):
        client.complete(session_id, held.student_id, "alice", "reached", held.assignment_token + 1)
    done = client.complete(session_id, held.student_id, "alice", "reached", held.assignment_token)
    assert (done.status, done.outcome) == ("completed", "reached")


def test_release_then_reassign_hands_the_student_out_again(client: AssignmentClient, session_id: str) -> None:
    seed(client, session_id, 1)
    held = client.assign_next(session_id, "alice")
    released = client.release(session_id, held.student_id, "alice", held.assignment_token)
    assert released.status == "released"
    again = client.assign_next(session_id, "bob")
    assert again.student_id == held.student_id and again.assignment_token == held.assignment_token + 1
    with pytest.raises(StaleToken):
        client.complete(session_id, held.student_id, "alice", "reached", held.assignment_token)


def test_exhausted_session_answers_none_and_stats_add_up(client: AssignmentClient, session_id: str) -> None:
    seed(client, session_id, 2)
    for assistant in ("alice", "bob"):
        held = client.assign_next(session_id, assistant)
        client.complete(session_id, held.student_id, assistant, "voicemail", held.assignment_token)
    assert client.assign_next(session_id, "carol") is None
    stats = client.stats(session_id)
    assert (stats.total, stats.pending, stats.completed, stats.completed_by_outcome) == \
        (2, 0, 2, {"voicemail": 2})


def test_unknown_and_closed_sessions_are_rejected(client: AssignmentClient, session_id: str,
                                                  app_database: Database) -> None:
    with pytest.raises(UnknownSession):
        client.assign_next(session_id, "alice")
    seed(client, session_id, 1)
    app_database.call_sessions.update_one({"_id": session_id}, {"$set": {"status": "closed"}})
    with pytest.raises(SessionClosed):
        client.assign_next(session_id, "alice")


def test_tasks_answer_by_name_without_this_code(client: AssignmentClient, session_id: str) -> None:
    seed(client, session_id, 1)
    message = client.app.send_task("callqueue.assign_next_student",
                                   args=[session_id, "alice", f"by-name-{session_id}"])
    result = message.get(timeout=15)
    assert result["status"] == "assigned" and result["assigned_to"] == "alice"
    assert set(result) >= {"student_id", "student", "assignment_token", "already_held"}
