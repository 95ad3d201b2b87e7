""""Save and next" in one request, and an ``exhausted`` that says when to come back, through real workers.

The shared stack's beat promotes due students every second
(``CALLQUEUE_PROMOTE_INTERVAL_SECONDS=1`` in the test servers' environment).
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timezone
from typing import Any

import pytest
import redis
from pymongo.database import Database

from callqueue.config import Settings
from callqueue.producers.client import AssignmentClient
from callqueue.producers.results import Assigned, Exhausted
from tests.integration.helpers import seed, session_fingerprint
from callqueue.workers.exceptions import InvalidArgument, NotHolder, SessionClosed, StaleToken
from callqueue.workers.store import STUDENTS

PROMOTE_INTERVAL_SECONDS = 1.0


def claims_of(database: Database, session_id: str) -> list[tuple[str, str, str]]:
    """Every claim in the session's histories: (student, assistant, request id)."""
    return [(document["_id"], entry["assistant_id"], entry["request_id"])
            for document in database[STUDENTS].find({"call_session_id": session_id})
            for entry in document["history"] if entry["event"] == "claimed"]


def pair(client: AssignmentClient, held: Assigned, outcome: str = "reached", **extra: Any) -> dict[str, Any]:
    """The pair by task name, as any caller sends it."""
    return client.call("callqueue.complete_and_next", call_session_id=held.call_session_id,
                       student_id=held.student_id, assistant_id=held.assigned_to, outcome=outcome,
                       assignment_token=held.assignment_token, **extra)


def test_one_request_records_the_outcome_and_hands_out_the_next_student(
        client: AssignmentClient, session_id: str, app_database: Database) -> None:
    seed(client, session_id, 3)
    held = client.assign_next(session_id, "alice")

    done = client.complete_and_next(session_id, held.student_id, "alice", "reached", held.assignment_token)

    assert (done.completion.student_id, done.completion.outcome, done.completion.final) == \
        (held.student_id, "reached", True)
    following = done.student
    assert following is not None and following.student_id != held.student_id and not following.already_held
    stats = client.stats(session_id)
    assert (stats.completed, stats.assigned, stats.pending, stats.holders) == (1, 1, 1, ("alice",))
    assert sorted(claim[:2] for claim in claims_of(app_database, session_id)) == sorted([
        (held.student_id, "alice"), (following.student_id, "alice")])


def test_the_same_request_again_returns_the_same_pair_and_claims_nobody_else(
        client: AssignmentClient, session_id: str, app_database: Database) -> None:
    seed(client, session_id, 4)
    held = client.assign_next(session_id, "alice")
    request = f"press-{uuid.uuid4().hex[:8]}"

    first = pair(client, held, request_id=request)
    again = pair(client, held, request_id=request)

    assert again == first and first["next"]["status"] == "assigned"
    assert client.stats(session_id).assigned == 1
    assert [claim for claim in claims_of(app_database, session_id) if claim[2] == request] == [
        (first["next"]["student_id"], "alice", request)]


def test_a_redelivery_after_the_worker_died_between_the_steps_returns_the_same_pair(
        client: AssignmentClient, session_id: str, app_database: Database) -> None:
    """A worker that died after the completion and before the claim left exactly what ``complete_student``
    leaves; the message then comes again, with the same task id and arguments, and again after that."""
    seed(client, session_id, 4)
    held = client.assign_next(session_id, "alice")
    completed_alone = client.complete(session_id, held.student_id, "alice", "reached", held.assignment_token)
    message = {"call_session_id": session_id, "student_id": held.student_id, "assistant_id": "alice",
               "outcome": "reached", "assignment_token": held.assignment_token}
    task_id = str(uuid.uuid4())  # no request_id: the task id stands in for it, as for a redelivered message

    answers = [client.app.send_task("callqueue.complete_and_next", kwargs=message, task_id=task_id,
                                    expires=15).get(timeout=15) for _ in range(2)]

    assert answers[0] == answers[1] and answers[0]["status"] == "completed_and_next"
    assert answers[0]["completion"] == {**completed_alone.__dict__, "status": "completed", "final": True,
                                        "completed_at": completed_alone.completed_at.isoformat(),
                                        "next_attempt_at": None}
    assert answers[0]["next"]["status"] == "assigned"
    assert [claim[0] for claim in claims_of(app_database, session_id) if claim[2] == task_id] == [
        answers[0]["next"]["student_id"]]
    assert client.stats(session_id).assigned == 1


@pytest.mark.parametrize("holder, token, refusal", [("bob", None, NotHolder), ("alice", 99, StaleToken)])
def test_a_refused_completion_is_the_answer_and_claims_nothing(
        client: AssignmentClient, session_id: str, app_database: Database, holder: str, token: int | None,
        refusal: type) -> None:
    seed(client, session_id, 3)
    held = client.assign_next(session_id, "alice")
    before = session_fingerprint(app_database, session_id)

    with pytest.raises(refusal):
        client.complete_and_next(session_id, held.student_id, holder, "reached", token or held.assignment_token)

    assert session_fingerprint(app_database, session_id) == before


def test_bad_press_arguments_are_refused_before_the_completion_is_written(
        client: AssignmentClient, session_id: str, app_database: Database) -> None:
    seed(client, session_id, 2)
    held = client.assign_next(session_id, "alice")
    before = session_fingerprint(app_database, session_id)
    for bad in ({"skills": ["$ne"]}, {"skills": "es"}, {"request_id": {"$gt": ""}}):
        with pytest.raises(InvalidArgument):
            client.call("callqueue.complete_and_next", call_session_id=session_id, student_id=held.student_id,
                        assistant_id="alice", outcome="reached", assignment_token=held.assignment_token, **bad)
    assert session_fingerprint(app_database, session_id) == before


def test_in_a_closed_session_the_completion_stands_and_the_press_is_refused(
        client: AssignmentClient, session_id: str) -> None:
    seed(client, session_id, 3)
    held = client.assign_next(session_id, "alice")
    client.close_session(session_id)

    done = client.complete_and_next(session_id, held.student_id, "alice", "reached", held.assignment_token)

    assert done.completion.final and isinstance(done.next, SessionClosed) and done.student is None
    assert client.stats(session_id).completed_by_outcome == {"reached": 1, "session_closed": 2}


def test_exhausted_says_held_while_others_call_the_last_students(client: AssignmentClient, session_id: str) -> None:
    seed(client, session_id, 1)
    client.assign_next(session_id, "alice")
    answer = client.next_student(session_id, "bob")
    assert answer == Exhausted(session_id, "held", None, 0, 1)


def test_with_only_scheduled_students_left_exhausted_says_when_and_the_wait_gets_the_student_on_time(
        client: AssignmentClient, session_id: str, monkeypatch: pytest.MonkeyPatch) -> None:
    seed(client, session_id, 1)
    client.set_campaign(session_id, {"no_answer": {"delay_seconds": 3, "max_attempts": 3}})
    held = client.assign_next(session_id, "alice")

    done = client.complete_and_next(session_id, held.student_id, "alice", "no_answer", held.assignment_token)

    waiting = done.next
    assert isinstance(waiting, Exhausted) and (waiting.reason, waiting.scheduled) == ("scheduled", 1)
    assert waiting.next_due_at == done.completion.next_attempt_at
    presses: list[float] = []
    press = client.next_student

    def counted(*args: Any, **kwargs: Any) -> Any:
        presses.append(time.monotonic())
        return press(*args, **kwargs)

    monkeypatch.setattr(client, "next_student", counted)
    again = client.wait_for_next(session_id, "alice", after=waiting, max_wait_seconds=20)
    got_at = datetime.now(timezone.utc)

    assert isinstance(again, Assigned) and again.student_id == held.student_id
    late = (got_at - waiting.next_due_at).total_seconds()
    assert 0 <= late <= PROMOTE_INTERVAL_SECONDS, late  # never before its time, at most one promotion late
    assert len(presses) <= 3, presses  # slept until the due time instead of polling


def test_the_wait_rechecks_held_students_until_its_bound_and_never_sleeps_past_it(
        client: AssignmentClient, session_id: str) -> None:
    seed(client, session_id, 3)
    client.set_campaign(session_id, {"no_answer": {"delay_seconds": 60, "max_attempts": 3}})
    carol, dave, held = (client.assign_next(session_id, name) for name in ("carol", "dave", "alice"))
    later = client.complete_and_next(session_id, held.student_id, "alice", "no_answer", held.assignment_token)
    due = later.completion.next_attempt_at
    assert later.next == Exhausted(session_id, "scheduled", due, 1, 2)

    started = time.monotonic()
    assert client.wait_for_next(session_id, "bob", max_wait_seconds=3.0) == later.next
    assert 1.9 <= time.monotonic() - started < 3.0  # asked again after 2 s for the held ones, then gave up

    for other in (carol, dave):
        client.complete(session_id, other.student_id, other.assigned_to, "reached", other.assignment_token)
    started = time.monotonic()
    assert client.wait_for_next(session_id, "bob", max_wait_seconds=5.0) == Exhausted(session_id, "scheduled",
                                                                                      due, 1, 0)
    assert time.monotonic() - started < 1.0  # due in a minute: nothing can come within the bound


def test_the_wait_returns_at_once_when_nobody_is_left(client: AssignmentClient, session_id: str) -> None:
    seed(client, session_id, 1)
    only = client.assign_next(session_id, "alice")
    nobody = client.complete_and_next(session_id, only.student_id, "alice", "reached", only.assignment_token).next
    assert nobody == Exhausted(session_id, "none_left")
    started = time.monotonic()
    assert client.wait_for_next(session_id, "alice", max_wait_seconds=30) == nobody
    assert time.monotonic() - started < 5


def test_the_client_deletes_each_answer_once_read_and_a_stock_caller_leaves_it(
        client: AssignmentClient, session_id: str, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[str] = []
    send = client.app.send_task

    def recorded(*args: Any, **kwargs: Any) -> Any:
        message = send(*args, **kwargs)
        sent.append(message.id)
        return message

    monkeypatch.setattr(client.app, "send_task", recorded)
    seed(client, session_id, 2)  # a batch-queue job
    held = client.assign_next(session_id, "alice")
    client.complete_and_next(session_id, held.student_id, "alice", "reached", held.assignment_token)
    stock = send("callqueue.session_stats", kwargs={"call_session_id": session_id}, expires=15)
    stock.get(timeout=15)

    backend = redis.Redis.from_url(settings.result_backend)
    try:
        assert len(sent) == 3 and [backend.exists(f"celery-task-meta-{task_id}") for task_id in sent] == [0, 0, 0]
        assert backend.ttl(f"celery-task-meta-{stock.id}") > 0  # kept until CALLQUEUE_RESULT_EXPIRES_SECONDS
    finally:
        backend.close()
