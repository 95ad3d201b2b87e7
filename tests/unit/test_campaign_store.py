"""Callbacks, retries by outcome and skill routing in the store, against a real mongod, without Celery."""

from __future__ import annotations

import dataclasses
import random
from datetime import datetime, timedelta

import pytest
from pymongo.database import Database

from callqueue.workers.exceptions import AlreadyCompleted, StaleToken
from callqueue.workers.models import Assignment, BatchItem, CallSession, Callback, RetryRule
from callqueue.workers.store import (
    CLAIM_INDEX, STUDENTS, AssignmentStore, CompletionPlan, NewStudent, ensure_indexes, plan_for, utcnow,
)
from callqueue.workers.hours import placement
from callqueue.workers.store.windows import Group, due_filter, placement_update
from callqueue.workers.store.documents import CLAIM_ORDER, WAKE_INDEX, claim_filter, claim_lanes

TAGS = ("es", "fr", "de", "pt", "it")
RETRY_NO_ANSWER = (RetryRule("no_answer", delay_seconds=60, max_attempts=3),)


def claim(store: AssignmentStore, session_id: str, assistant: str, request: str,
          skills: tuple[str, ...] = (), now: datetime | None = None) -> Assignment | None:
    return store.assign_next(store.open_session(session_id), assistant, request, now=now, skills=skills)


def complete(store: AssignmentStore, held: Assignment, outcome: str, callback: Callback | None = None,
             now: datetime | None = None):  # type: ignore[no-untyped-def]
    plan = plan_for(store.require_session(held.call_session_id), outcome, callback, default_grace_seconds=600)
    return store.complete(held.call_session_id, held.student_id, held.assigned_to, held.assignment_token, plan,
                          f"complete-{held.student_id}-{held.assignment_token}", now=now)


def tagged_rows(count: int, tags: tuple[str, ...] = TAGS, untagged_every: int = 6) -> list[NewStudent]:
    """``count`` students, one in ``untagged_every`` untagged and the rest spread over ``tags``."""
    return [NewStudent({"n": n}, key=f"s{n}", route="" if n % untagged_every == 0 else tags[n % len(tags)])
            for n in range(count)]


def test_a_press_without_skills_takes_only_untagged_students(store: AssignmentStore) -> None:
    store.import_students("s", None, tagged_rows(30))
    taken = []
    while (held := claim(store, "s", "alice", f"r{len(taken)}")) is not None:
        taken.append(held.student["n"])
        complete(store, held, "reached")
    assert taken == [n for n in range(30) if n % 6 == 0]


def test_skills_widen_the_press_in_priority_and_position_order_across_tags(store: AssignmentStore) -> None:
    rows = [NewStudent({"n": 0}, route="fr", priority=0), NewStudent({"n": 1}, route="es", priority=0),
            NewStudent({"n": 2}, route="", priority=5), NewStudent({"n": 3}, route="de", priority=9),
            NewStudent({"n": 4}, route="es", priority=5), NewStudent({"n": 5}, route="", priority=0)]
    store.import_students("s", None, rows)
    order = []
    while (held := claim(store, "s", "alice", f"r{len(order)}", skills=("es", "fr"))) is not None:
        order.append(held.student["n"])
        complete(store, held, "reached")
    assert order == [2, 4, 0, 1, 5]  # priority 5 (untagged, then es), then priority 0 by position; "de" never


def test_a_tagged_student_never_reaches_an_assistant_without_the_skill(store: AssignmentStore) -> None:
    store.import_students("s", None, tagged_rows(60))
    rng = random.Random(7)
    for round_ in range(80):
        skills = tuple(rng.sample(TAGS, 2))
        held = claim(store, "s", f"a{round_ % 7}", f"r{round_}", skills=skills)
        if held is None:
            continue
        route = store.students.find_one({"_id": held.student_id})["route"]
        assert route == "" or route in skills
        complete(store, held, "reached")


def test_claim_with_skills_merges_index_ranges_and_examines_few_keys_at_any_size(
        store: AssignmentStore, engine_database: Database) -> None:
    examined = {}
    for session, size in (("small", 1_000), ("large", 30_000)):
        store.import_students(session, None, tagged_rows(size))
        plan = engine_database.command("explain", {
            "findAndModify": STUDENTS,
            "query": claim_filter(session, claim_lanes("alice", TAGS), "press-1"),
            "sort": dict(CLAIM_ORDER), "update": {"$set": {"x": 1}}, "hint": CLAIM_INDEX,
        }, verbosity="executionStats")
        stages = str(plan["queryPlanner"]["winningPlan"])
        assert "SORT_MERGE" in stages and "'SORT'" not in stages and CLAIM_INDEX in stages
        assert plan["executionStats"]["totalDocsExamined"] == 1
        examined[size] = plan["executionStats"]["totalKeysExamined"]
    lanes = len(claim_lanes("alice", TAGS))
    assert examined[1_000] == examined[30_000] <= 2 * lanes + 1


def test_a_retried_outcome_is_final_after_exactly_max_attempts(store: AssignmentStore) -> None:
    store.import_students("s", None, [NewStudent({"n": 0})])
    store.set_campaign("s", RETRY_NO_ANSWER, None)
    now = utcnow()
    results = []
    for attempt in range(1, 4):
        held = claim(store, "s", "alice", f"r{attempt}", now=now)
        assert held is not None, f"attempt {attempt} was not handed out"
        done = complete(store, held, "no_answer", now=now)
        results.append((done.attempt, done.next, done.final))
        assert claim(store, "s", "bob", f"early{attempt}", now=now) is None  # waiting, not claimable
        now += timedelta(seconds=61)
        store.promote_due(now)
    assert results == [(1, "retry", False), (2, "retry", False), (3, "final", True)]
    stats = store.stats(store.open_session("s"))
    assert (stats.completed, stats.attempts, stats.scheduled_retries, stats.pending) == ({"no_answer": 1}, 3, 0, 0)


def test_a_retry_waits_for_its_delay_before_it_can_be_claimed(store: AssignmentStore) -> None:
    store.import_students("s", None, [NewStudent({"n": 0})])
    store.set_campaign("s", RETRY_NO_ANSWER, None)
    now = utcnow()
    done = complete(store, claim(store, "s", "alice", "r1", now=now), "no_answer", now=now)
    assert done.next_attempt_at == now + timedelta(seconds=60)
    assert store.stats(store.open_session("s")).scheduled_retries == 1
    assert store.promote_due(now + timedelta(seconds=59)) == 0
    assert claim(store, "s", "bob", "r2") is None
    assert store.promote_due(now + timedelta(seconds=60)) == 1
    assert claim(store, "s", "bob", "r3") is not None


def promise_callback(store: AssignmentStore, now: datetime, assistant: str | None) -> Assignment:
    """Session "s" with one student whose call ended with a callback in 10 s (for ``assistant``), then three
    fresh students of a higher priority; the promised student's assignment as it was held."""
    store.import_students("s", None, [NewStudent({"n": 0}, key="promised")])
    store.set_campaign("s", None, 300)
    held = claim(store, "s", "alice", "r0", now=now)
    done = complete(store, held, "call_back_later", Callback(now + timedelta(seconds=10), assistant), now=now)
    assert (done.next, done.final, done.next_attempt_at) == ("callback", False, now + timedelta(seconds=10))
    store.import_students("s", None, [NewStudent({"n": n}, key=f"s{n}", priority=9) for n in range(1, 4)])
    return held


def test_a_personal_callback_comes_first_for_its_assistant_and_only_for_them(store: AssignmentStore) -> None:
    now = utcnow()
    promised = promise_callback(store, now, "alice")
    assert store.stats(store.open_session("s")).scheduled_callbacks == 1
    early = claim(store, "s", "alice", "r1", now=now)
    assert early.student_id != promised.student_id  # not before its time
    complete(store, early, "reached")
    assert store.promote_due(now + timedelta(seconds=10)) == 1
    by_bob = claim(store, "s", "bob", "r2")
    assert by_bob.student_id != promised.student_id
    complete(store, by_bob, "reached")
    by_alice = claim(store, "s", "alice", "r3")
    assert by_alice.student_id == promised.student_id  # before the priority-9 student still pending


def test_after_the_grace_period_a_personal_callback_goes_to_anyone(store: AssignmentStore) -> None:
    now = utcnow()
    promised = promise_callback(store, now, "alice")
    store.students.update_many({"_id": {"$ne": promised.student_id}}, {"$set": {"priority": -1}})
    store.promote_due(now + timedelta(seconds=10))
    assert claim(store, "s", "bob", "r1").student_id != promised.student_id
    assert store.promote_due(now + timedelta(seconds=310)) == 1  # grace (300 s) over: back to the pool
    complete(store, claim(store, "s", "bob", "r1"), "reached")  # bob's earlier hold
    assert claim(store, "s", "bob", "r2").student_id == promised.student_id


def test_a_callback_for_anyone_returns_to_the_pool_when_due(store: AssignmentStore) -> None:
    now = utcnow()
    promised = promise_callback(store, now, None)
    store.promote_due(now + timedelta(seconds=10))
    lanes = {d["_id"]: d["lane"] for d in store.students.find({"call_session_id": "s"})}
    assert lanes[promised.student_id] == "r:"


def test_promotion_never_touches_a_held_student(store: AssignmentStore) -> None:
    now = utcnow()
    promised = promise_callback(store, now, "alice")
    store.promote_due(now + timedelta(seconds=10))
    held = claim(store, "s", "alice", "r1")
    assert held.student_id == promised.student_id
    before = store.students.find_one({"_id": promised.student_id})
    assert store.promote_due(now + timedelta(days=1)) == 0
    assert store.students.find_one({"_id": promised.student_id}) == before
    released = store.release("s", held.student_id, "alice", held.assignment_token, "give-back")
    assert released.assigned_to is None
    assert store.students.find_one({"_id": promised.student_id})["lane"] == "r:"  # given back: anyone's now


def test_promotion_reads_only_due_waiting_students_through_its_index(store: AssignmentStore,
                                                                       engine_database: Database) -> None:
    """promote_due's own filter and update, explained on 5,000 students of whom 40 wait and 25 of those are due."""
    store.import_students("s", None, tagged_rows(5_000))
    store.set_campaign("s", RETRY_NO_ANSWER, None)
    now = utcnow()
    for number in range(40):
        held = claim(store, "s", f"a{number}", f"r{number}", skills=TAGS, now=now - timedelta(seconds=60))
        complete(store, held, "no_answer", now=now - timedelta(seconds=60 if number < 25 else 30))
    found = engine_database[STUDENTS].find(due_filter(now)).explain()  # the $match that groups the due students
    assert WAKE_INDEX in str(found["queryPlanner"]["winningPlan"])
    assert found["executionStats"]["nReturned"] == 25
    assert found["executionStats"]["totalDocsExamined"] == 25 and found["executionStats"]["totalKeysExamined"] <= 26
    decision = placement(None, "", now, 0)
    update = {"q": {**due_filter(now), **Group("s", "").match()}, "u": placement_update(now, decision, True),
              "multi": True}
    plan = engine_database.command("explain", {"update": STUDENTS, "updates": [update]},
                                   verbosity="executionStats")
    assert WAKE_INDEX in str(plan["queryPlanner"]["winningPlan"])
    stats = plan["executionStats"]
    assert stats["executionStages"]["nWouldModify"] == 25
    assert stats["totalDocsExamined"] == 25 and stats["totalKeysExamined"] <= 26
    assert store.promote_due(now) == 25


def test_repeating_a_completion_that_scheduled_a_retry_gets_the_same_answer_later(store: AssignmentStore) -> None:
    store.import_students("s", None, [NewStudent({"n": 0})])
    store.set_campaign("s", RETRY_NO_ANSWER, None)
    now = utcnow()
    held = claim(store, "s", "alice", "r1", now=now)
    first = complete(store, held, "no_answer", now=now)
    store.promote_due(now + timedelta(seconds=60))
    assert claim(store, "s", "bob", "r2") is not None  # someone else holds the student now
    assert complete(store, held, "no_answer") == first
    with pytest.raises(AlreadyCompleted):
        complete(store, held, "reached")


def test_a_completion_in_a_closed_session_is_final(store: AssignmentStore) -> None:
    store.import_students("s", None, [NewStudent({"n": 0})])
    store.set_campaign("s", RETRY_NO_ANSWER, None)
    held = claim(store, "s", "alice", "r1")
    store.close_session("s", "session_closed", False, "close-1")
    done = complete(store, held, "no_answer", Callback(utcnow() + timedelta(hours=1), "alice"))
    assert (done.final, done.outcome) == (True, "no_answer")
    assert store.stats(store.require_session("s")).completed == {"no_answer": 1}


def test_running_a_batch_again_counts_no_attempt_twice(store: AssignmentStore) -> None:
    store.import_students("s", None, [NewStudent({"n": n}, key=f"s{n}") for n in range(3)])
    store.set_campaign("s", RETRY_NO_ANSWER, None)
    ids = [d["_id"] for d in store.students.find({"call_session_id": "s"}, {"_id": 1})]
    items = [BatchItem(index, "s", student, "no_answer") for index, student in enumerate(ids)]
    first = store.complete_batch(items, "job-1", default_grace_seconds=600)
    again = store.complete_batch(items, "job-2", default_grace_seconds=600)
    assert [r["unchanged"] for r in first] == [False] * 3 and [r["unchanged"] for r in again] == [True] * 3
    stats = store.stats(store.open_session("s"))
    assert (stats.attempts, stats.scheduled_retries, stats.pending) == (3, 3, 0)


def test_a_completion_plan_follows_the_session_rules() -> None:
    session = CallSession("s", "s", "open", None, retry_rules=RETRY_NO_ANSWER, callback_grace_seconds=30)
    assert plan_for(session, "no_answer", None, 600) == CompletionPlan("no_answer", RETRY_NO_ANSWER[0], None, 30)
    assert plan_for(session, "reached", None, 600).rule is None
    closed = CallSession("s", "s", "closed", None, retry_rules=RETRY_NO_ANSWER)
    assert plan_for(closed, "no_answer", Callback(utcnow()), 600) == CompletionPlan("no_answer")


def test_a_database_from_before_lanes_is_upgraded_once_and_its_students_stay_claimable(
        engine_database: Database) -> None:
    students = engine_database[STUDENTS]
    students.create_index([("call_session_id", 1), ("filter_status", 1), ("assigned_to", 1), ("priority", -1),
                           ("position", 1)], name="claim_order")
    engine_database["call_sessions"].insert_one({"_id": "old", "name": "old", "status": "open"})
    students.insert_many([{"_id": f"old:s{n}", "call_session_id": "old", "student": {"n": n}, "priority": 0,
                           "position": n, "filter_status": "", "assigned_to": None, "assignment_token": 0,
                           "history": []} for n in range(3)])
    ensure_indexes(engine_database)
    assert "claim_order" not in students.index_information() and CLAIM_INDEX in students.index_information()
    store = AssignmentStore(engine_database)
    assert [claim(store, "old", f"a{n}", f"r{n}").student["n"] for n in range(3)] == [0, 1, 2]
    ensure_indexes(engine_database)  # a second start finds nothing to upgrade


def test_presses_name_the_personal_lane_only_once_the_session_has_personal_callbacks(
        store: AssignmentStore) -> None:
    store.import_students("s", None, [NewStudent({"n": n}, key=f"s{n}") for n in range(3)])
    store.import_students("t", None, [NewStudent({"n": n}, key=f"s{n}") for n in range(2)])
    assert not store.require_session("s").personal_callbacks
    assert claim_lanes("alice", ("es",), personal=False) == ["r:", "r:es"]
    held = claim(store, "s", "alice", "r1")
    complete(store, held, "call_back_later", Callback(utcnow() + timedelta(hours=1), None))
    assert not store.require_session("s").personal_callbacks  # a callback for anyone needs no personal lane
    held = claim(store, "s", "alice", "r2")
    complete(store, held, "call_back_later", Callback(utcnow() + timedelta(hours=1), "alice"))
    assert store.require_session("s").personal_callbacks
    ids = [d["_id"] for d in store.students.find({"call_session_id": "t"}, {"_id": 1})]
    item = BatchItem(0, "t", ids[0], "call_back_later", callback=Callback(utcnow() + timedelta(hours=1), "bob"))
    store.complete_batch([item], "job-1", default_grace_seconds=600)
    assert store.require_session("t").personal_callbacks


def test_a_refused_completion_with_a_personal_callback_changes_nothing(store: AssignmentStore) -> None:
    """The session is marked for personal callbacks only by a completion that landed."""
    store.import_students("s", None, [NewStudent({"n": 0})])
    now = utcnow()
    held = claim(store, "s", "alice", "r1", now=now)
    before = (store.sessions.find_one({"_id": "s"}), list(store.students.find({"call_session_id": "s"})))
    stale = dataclasses.replace(held, assignment_token=held.assignment_token + 1)
    with pytest.raises(StaleToken):
        complete(store, stale, "call_back_later", Callback(now + timedelta(seconds=10), "alice"), now=now)
    assert (store.sessions.find_one({"_id": "s"}), list(store.students.find({"call_session_id": "s"}))) == before
    complete(store, held, "call_back_later", Callback(now + timedelta(seconds=10), "alice"), now=now)
    assert store.sessions.find_one({"_id": "s"})["personal_callbacks"] is True
