"""What an ``exhausted`` answer says (why nobody, when next), from one indexed read, against a real mongod."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pymongo.database import Database

from callqueue.workers.models import Assignment, Callback, Exhausted, RetryRule
from callqueue.workers.store import STUDENTS, AssignmentStore, NewStudent, plan_for, utcnow
from callqueue.workers.store.documents import CLAIM_INDEX
from callqueue.workers.store.waiting import waiting_pipeline

RETRY_NO_ANSWER = (RetryRule("no_answer", delay_seconds=60, max_attempts=3),)
GRACE_SECONDS = 600


def claim(store: AssignmentStore, session_id: str, assistant: str, request: str,
          skills: tuple[str, ...] = ()) -> Assignment | None:
    return store.assign_next(store.open_session(session_id), assistant, request, skills=skills)


def complete(store: AssignmentStore, held: Assignment, outcome: str, callback: Callback | None = None,
             now: datetime | None = None) -> None:
    plan = plan_for(store.require_session(held.call_session_id), outcome, callback, GRACE_SECONDS)
    store.complete(held.call_session_id, held.student_id, held.assigned_to, held.assignment_token, plan,
                   f"c-{held.student_id}-{held.assignment_token}", now=now)


def why(store: AssignmentStore, session_id: str, assistant: str, skills: tuple[str, ...] = ()) -> Exhausted:
    return store.why_exhausted(store.open_session(session_id), assistant, skills)


def test_only_scheduled_students_left_says_when_the_first_is_due_and_how_many(store: AssignmentStore) -> None:
    store.import_students("s", None, [NewStudent({"n": n}, key=f"s{n}") for n in range(3)])
    store.set_campaign("s", RETRY_NO_ANSWER, None)
    start = utcnow()
    for n in range(3):
        held = claim(store, "s", "alice", f"r{n}")
        complete(store, held, "no_answer", now=start + timedelta(seconds=10 * n))
    assert claim(store, "s", "bob", "r-bob") is None
    assert why(store, "s", "bob") == Exhausted("s", "scheduled", start + timedelta(seconds=60), 3, 0)


def test_students_held_by_others_and_none_waiting_say_held(store: AssignmentStore) -> None:
    store.import_students("s", None, [NewStudent({"n": n}, key=f"s{n}") for n in range(2)])
    claim(store, "s", "alice", "r1")
    claim(store, "s", "carol", "r2")
    assert why(store, "s", "bob") == Exhausted("s", "held", None, 0, 2)


def test_nobody_left_for_these_skills_says_none_left(store: AssignmentStore) -> None:
    rows = [NewStudent({"n": 0}, key="a"), NewStudent({"n": 1}, key="b", route="es")]
    store.import_students("s", None, rows)
    store.set_campaign("s", RETRY_NO_ANSWER, None)
    complete(store, claim(store, "s", "alice", "r1"), "reached")
    held = claim(store, "s", "alice", "r2", skills=("es",))
    complete(store, held, "no_answer")  # the "es" student waits for its retry
    assert why(store, "s", "bob") == Exhausted("s", "none_left", None, 0, 0)
    assert why(store, "s", "bob", ("fr",)).reason == "none_left"
    spanish = why(store, "s", "bob", ("es",))
    assert (spanish.reason, spanish.scheduled) == ("scheduled", 1)


def test_a_callback_reserved_for_another_reaches_this_press_when_its_grace_ends(store: AssignmentStore) -> None:
    store.import_students("s", None, [NewStudent({"n": 0}, key="a")])
    at = utcnow() + timedelta(hours=1)
    complete(store, claim(store, "s", "alice", "r1"), "call_me", Callback(at, "alice"))
    assert why(store, "s", "alice").next_due_at == at
    assert why(store, "s", "bob").next_due_at == at + timedelta(seconds=GRACE_SECONDS)
    store.promote_due(now=at)  # due: into alice's personal lane until the grace ends
    assert claim(store, "s", "bob", "r2") is None
    assert why(store, "s", "bob") == Exhausted("s", "scheduled", at + timedelta(seconds=GRACE_SECONDS), 1, 0)


def test_a_callback_for_this_assistant_counts_whatever_its_routing_tag(store: AssignmentStore) -> None:
    store.import_students("s", None, [NewStudent({"n": 0}, key="a", route="es")])
    at = utcnow() + timedelta(hours=1)
    complete(store, claim(store, "s", "alice", "r1", skills=("es",)), "call_me", Callback(at, "alice"))
    assert why(store, "s", "alice").next_due_at == at  # alice without "es" still gets her own callback
    assert why(store, "s", "bob").reason == "none_left"  # bob without "es" never gets this student


def test_the_read_walks_the_claim_index_past_the_pool_not_the_pool(store: AssignmentStore,
                                                                   engine_database: Database) -> None:
    """Thousands of pending students of another skill cost the read nothing: it seeks from lane to lane."""
    others = [NewStudent({"n": n}, key=f"es{n}", route="es") for n in range(3000)]
    store.import_students("s", None, [*(NewStudent({"n": -n}, key=f"s{n}") for n in range(6)), *others])
    store.set_campaign("s", RETRY_NO_ANSWER, None)
    complete(store, claim(store, "s", "alice", "r1"), "no_answer")
    for n in range(5):
        claim(store, "s", f"other-{n}", f"other-{n}")
    assert claim(store, "s", "bob", "r-bob") is None
    plan = explain(engine_database, waiting_pipeline("s", "bob", ()))
    stages = plan_stages(plan)
    assert "COLLSCAN" not in stages and "IXSCAN" in stages, stages
    assert {scan["indexName"] for scan in find_all(plan, "IXSCAN")} == {CLAIM_INDEX}
    examined = sum(scan.get("keysExamined", 0) for scan in find_all(plan, "IXSCAN"))
    assert examined < 50, examined  # 1 scheduled + 5 held + seeks, not 3,000 pending keys
    assert why(store, "s", "bob") == Exhausted("s", "scheduled", why(store, "s", "bob").next_due_at, 1, 5)


def explain(database: Database, pipeline: list[dict[str, Any]]) -> dict[str, Any]:
    return database.command("explain", {"aggregate": STUDENTS, "pipeline": pipeline, "cursor": {},
                                        "hint": CLAIM_INDEX}, verbosity="executionStats")


def find_all(node: Any, stage: str) -> list[dict[str, Any]]:
    """Every plan node of ``stage`` in an explain document (the executed plan, any depth)."""
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        if node.get("stage") == stage and "keysExamined" in node:
            found.append(node)
        for key, value in node.items():
            if key != "rejectedPlans":
                found.extend(find_all(value, stage))
    elif isinstance(node, list):
        for value in node:
            found.extend(find_all(value, stage))
    return found


def plan_stages(node: Any) -> set[str]:
    stages: set[str] = set()
    if isinstance(node, dict):
        if isinstance(node.get("stage"), str):
            stages.add(node["stage"])
        for key, value in node.items():
            if key != "rejectedPlans":
                stages |= plan_stages(value)
    elif isinstance(node, list):
        for value in node:
            stages |= plan_stages(value)
    return stages
