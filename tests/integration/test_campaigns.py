"""Callbacks, retries by outcome and skill routing through real workers and a real beat.

Beat runs ``promote_due`` every second here (``CALLQUEUE_PROMOTE_INTERVAL_SECONDS=1``
in the test servers' environment). Every call goes by task name with JSON
arguments, as a caller in any language would send it.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any

from pymongo.collection import Collection
from pymongo.database import Database

from callqueue.config import Settings
from callqueue.producers.client import AssignmentClient
from tests.integration.helpers import poll
from callqueue.workers.store import STUDENTS

PROMOTE_INTERVAL_SECONDS = 1.0
EARLY_WATCH_SECONDS = 3.5  # more than three promotions by beat before the callback is due
LANGUAGES = ("es", "fr", "de")


def press(client: AssignmentClient, session_id: str, assistant: str,
          skills: list[str] | None = None) -> dict[str, Any] | None:
    """One "Get Next" press by task name; the answer, or None when nobody is left to hand out now."""
    answer = client.call("callqueue.assign_next_student", call_session_id=session_id, assistant_id=assistant,
                         skills=skills)
    return None if answer["status"] == "exhausted" else answer


def complete(client: AssignmentClient, held: dict[str, Any], outcome: str, **callback: Any) -> dict[str, Any]:
    return client.call("callqueue.complete_student", call_session_id=held["call_session_id"],
                       student_id=held["student_id"], assistant_id=held["assigned_to"], outcome=outcome,
                       assignment_token=held["assignment_token"], **callback)


def release(client: AssignmentClient, held: dict[str, Any]) -> None:
    client.call("callqueue.release_student", call_session_id=held["call_session_id"],
                student_id=held["student_id"], assistant_id=held["assigned_to"],
                assignment_token=held["assignment_token"])


def stats(client: AssignmentClient, session_id: str) -> dict[str, Any]:
    return client.call("callqueue.session_stats", call_session_id=session_id)


def import_rows(client: AssignmentClient, session_id: str, rows: list[dict[str, Any]],
                route_by: str | None = None) -> None:
    client.call("callqueue.import_students", call_session_id=session_id, students=rows, route_by=route_by)


def watch_lane(students: Collection, student_id: str, until: datetime) -> list[str]:
    """The student's lane, read every 50 ms until ``until``."""
    seen = []
    while datetime.now(timezone.utc) < until:
        seen.append(students.find_one({"_id": student_id})["lane"])
        time.sleep(0.05)
    return seen


def test_a_personal_callback_comes_back_on_time_and_to_its_assistant_first(
        client: AssignmentClient, session_id: str, app_database: Database) -> None:
    import_rows(client, session_id, [{"student_id": "promised", "name": "Ann"}])
    client.call("callqueue.set_campaign", call_session_id=session_id, callback_grace_seconds=60)
    held = press(client, session_id, "alice")
    due = datetime.now(timezone.utc) + timedelta(seconds=EARLY_WATCH_SECONDS)
    done = complete(client, held, "call_back_later", callback_at=due.isoformat(), callback_assistant="alice")
    assert (done["next"], done["final"], done["callback_assistant"]) == ("callback", False, "alice")
    import_rows(client, session_id, [{"student_id": f"fresh{n}", "priority": 9} for n in range(3)])
    assert stats(client, session_id)["scheduled_callbacks"] == 1

    early = press(client, session_id, "alice")
    assert early["student_id"] != held["student_id"]  # not before its time
    release(client, early)
    students = app_database[STUDENTS]
    lanes_before_due = watch_lane(students, held["student_id"], until=due - timedelta(seconds=0.3))
    assert set(lanes_before_due) == {"s:"}, lanes_before_due  # beat ran several times; none moved it early
    lane = poll(lambda: students.find_one({"_id": held["student_id"]})["lane"], lambda found: found == "u:alice",
                10, interval_seconds=0.05)
    promoted = datetime.now(timezone.utc)
    assert lane == "u:alice", "the callback was not promoted"
    assert promoted >= due - timedelta(seconds=0.1)
    assert (promoted - due).total_seconds() <= PROMOTE_INTERVAL_SECONDS + 1.5
    by_bob = press(client, session_id, "bob")
    assert by_bob["student_id"] != held["student_id"]  # only alice may take it during the grace period
    by_alice = press(client, session_id, "alice")
    assert by_alice["student_id"] == held["student_id"]  # before the priority-9 students still waiting
    final = complete(client, by_alice, "reached")
    assert (final["attempt"], final["final"]) == (2, True)


def test_a_retried_student_reaches_its_final_outcome_after_exactly_max_attempts(
        client: AssignmentClient, session_id: str) -> None:
    import_rows(client, session_id, [{"student_id": "only", "name": "Bo"}])
    answer = client.call("callqueue.set_campaign", call_session_id=session_id,
                         retry_rules={"no_answer": {"delay_seconds": 1, "max_attempts": 3}})
    assert answer["retry_rules"] == {"no_answer": {"delay_seconds": 1, "max_attempts": 3}}
    attempts = []
    for attempt in range(1, 4):
        held = poll(lambda: press(client, session_id, "carol"), lambda answer: answer is not None, 10)
        assert held is not None, f"attempt {attempt} was not handed out"
        done = complete(client, held, "no_answer")
        attempts.append((done["attempt"], done["next"]))
        if attempt < 3:
            assert stats(client, session_id)["scheduled_retries"] == 1
            assert press(client, session_id, "dave") is None  # waiting for its delay
    assert attempts == [(1, "retry"), (2, "retry"), (3, "final")]
    time.sleep(1 + PROMOTE_INTERVAL_SECONDS + 0.5)
    assert press(client, session_id, "dave") is None
    final = stats(client, session_id)
    assert (final["completed_by_outcome"], final["attempts"], final["scheduled"], final["pending"]) == (
        {"no_answer": 1}, 3, 0, 0)


def test_skills_never_hand_a_tagged_student_to_an_assistant_without_the_skill(
        client: AssignmentClient, session_id: str) -> None:
    rows = [{"student_id": f"s{n}", "language": ["", "es", "fr"][n % 3]} for n in range(12)]
    import_rows(client, session_id, rows, route_by="language")
    untagged = []
    while (held := press(client, session_id, "erin")) is not None:
        untagged.append(held["student"]["language"])
        complete(client, held, "reached")
    assert untagged == [""] * 4
    spanish = []
    while (held := press(client, session_id, "frank", skills=["es"])) is not None:
        spanish.append(held["student"]["language"])
        complete(client, held, "reached")
    assert spanish == ["es"] * 4
    assert stats(client, session_id)["pending"] == 4  # the French students wait for someone who speaks it


def test_callers_with_mixed_skills_drain_a_campaign_with_no_doubles_and_one_final_outcome_each(
        settings: Settings, stack: Any, session_id: str, app_database: Database) -> None:
    callers, count = 32, 480
    rows = [{"student_id": f"s{n:04d}", "language": ([""] + list(LANGUAGES))[n % 4], "priority": n % 3}
            for n in range(count)]
    with AssignmentClient(settings, timeout_seconds=30) as setup:
        import_rows(setup, session_id, rows, route_by="language")
        setup.call("callqueue.set_campaign", call_session_id=session_id,
                   retry_rules={"no_answer": {"delay_seconds": 1, "max_attempts": 2}})
    skill_sets = [list(LANGUAGES[i % 3:i % 3 + 1 + i % 2]) for i in range(callers)]
    errors: list[BaseException] = []
    handed: list[tuple[str, str, list[str]]] = []

    def work(index: int) -> None:
        rng = random.Random(index)
        assistant, skills = f"caller-{index:02d}", skill_sets[index]
        try:
            with AssignmentClient(settings, timeout_seconds=30) as client:
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline:
                    held = press(client, session_id, assistant, skills)
                    if held is None:
                        if stats(client, session_id)["scheduled"] == 0 and not _pending_for(client, session_id):
                            return
                        time.sleep(0.2)
                        continue
                    handed.append((held["student_id"], assistant, skills))
                    complete(client, held, "no_answer" if rng.random() < 0.3 else "reached")
                raise AssertionError(f"{assistant} was still working after 120 s")
        except BaseException as exc:  # reported by the test below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    _assert_routed(handed, {row["student_id"]: row["language"] for row in rows}, session_id)
    _assert_one_final_outcome_each(app_database, session_id, count)


def _pending_for(client: AssignmentClient, session_id: str) -> bool:
    """Students still pending or held (someone with the skill may still take them)."""
    current = stats(client, session_id)
    return current["pending"] + current["assigned"] > 0


def _assert_routed(handed: list[tuple[str, str, list[str]]], languages: dict[str, str], session_id: str) -> None:
    prefix = f"{session_id}:"
    for student_id, assistant, skills in handed:
        language = languages[student_id.removeprefix(prefix)]
        assert language == "" or language in skills, (student_id, assistant, skills)


def _assert_one_final_outcome_each(database: Database, session_id: str, count: int) -> None:
    """From each student's history: holds never overlap, attempts add up, exactly one final completion."""
    documents = list(database[STUDENTS].find({"call_session_id": session_id}))
    assert len(documents) == count
    retried = 0
    for document in documents:
        history = document["history"]
        claims = [entry for entry in history if entry["event"] == "claimed"]
        completions = [entry for entry in history if entry["event"] == "completed"]
        assert [entry["event"] for entry in history] == ["claimed", "completed"] * len(claims), document["_id"]
        assert [entry["token"] for entry in claims] == list(range(1, len(claims) + 1))
        assert [entry["assistant_id"] for entry in claims] == [entry["assistant_id"] for entry in completions]
        assert Counter(entry["next"] for entry in completions)["final"] == 1
        assert completions[-1]["next"] == "final" and document["filter_status"] == completions[-1]["outcome"]
        assert document["attempts"] == len(completions) <= 2
        assert document["assigned_to"] is None
        retried += len(completions) > 1
    assert retried > 0  # the run did exercise retries
