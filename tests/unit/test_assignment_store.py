"""The claim engine against a real mongod, without Celery."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from pymongo import MongoClient
from pymongo.database import Database

from devstack.servers import MongoServer
from callqueue.workers.store.documents import CLAIM_ORDER, claim_filter, claim_lanes
from callqueue.workers.store import CLAIM_INDEX, STUDENTS, AssignmentStore, CompletionPlan, NewStudent
from callqueue.workers.exceptions import (
    AlreadyCompleted, NotAssigned, NotHolder, RequestAlreadyServed, RequestConflict, SessionClosed,
    StaleToken, UnknownSession, UnknownStudent,
)


def import_rows(store: AssignmentStore, session_id: str, count: int, **row_fields: int) -> None:
    rows = [NewStudent({"name": f"student {n}"}, key=f"s{n}", **row_fields) for n in range(count)]
    store.import_students(session_id, "test", rows)


def claim(store: AssignmentStore, session_id: str, assistant: str, request: str):  # type: ignore[no-untyped-def]
    return store.assign_next(store.open_session(session_id), assistant, request)


def test_claims_follow_priority_then_import_order(store: AssignmentStore) -> None:
    rows = [NewStudent({"n": 0}, priority=0), NewStudent({"n": 1}, priority=5),
            NewStudent({"n": 2}, priority=0), NewStudent({"n": 3}, priority=5)]
    store.import_students("s", None, rows)
    order = [claim(store, "s", f"a{i}", f"r{i}").student["n"] for i in range(4)]
    assert order == [1, 3, 0, 2]


def test_claim_sets_holder_token_and_history(store: AssignmentStore, engine_database: Database) -> None:
    import_rows(store, "s", 1)
    assignment = claim(store, "s", "alice", "req-1")
    document = engine_database[STUDENTS].find_one({"_id": assignment.student_id})
    assert document["assigned_to"] == "alice" and document["assigned_at"] is not None
    assert document["assignment_token"] == assignment.assignment_token == 1
    assert document["history"] == [{"event": "claimed", "assistant_id": "alice", "token": 1,
                                    "request_id": "req-1", "at": document["assigned_at"]}]


def test_second_press_returns_the_student_already_held(store: AssignmentStore) -> None:
    import_rows(store, "s", 5)
    first = claim(store, "s", "alice", "r1")
    second = claim(store, "s", "alice", "r2")
    assert second.student_id == first.student_id
    assert second.already_held and not first.already_held
    assert store.stats(store.open_session("s")).assigned == 1


def test_holder_of_the_last_student_gets_it_back_rather_than_exhausted(store: AssignmentStore) -> None:
    import_rows(store, "s", 1)
    first = claim(store, "s", "alice", "r1")
    again = claim(store, "s", "alice", "r2")
    assert again is not None and again.student_id == first.student_id and again.already_held
    assert claim(store, "s", "bob", "r3") is None


def test_student_ids_of_sessions_sharing_a_prefix_never_collide(store: AssignmentStore) -> None:
    store.import_students("X", None, [NewStudent({"n": 1}, key="b:c")])
    second = store.import_students("X:b", None, [NewStudent({"n": 2}, key="c")])
    assert second.inserted == 1
    assert claim(store, "X:b", "alice", "r1").student == {"n": 2}


def test_same_request_id_returns_the_same_student_not_flagged_as_held(store: AssignmentStore) -> None:
    import_rows(store, "s", 5)
    first = claim(store, "s", "alice", "r1")
    again = claim(store, "s", "alice", "r1")
    assert again == first


def test_request_id_served_before_never_claims_again_after_completion(store: AssignmentStore) -> None:
    import_rows(store, "s", 5)
    first = claim(store, "s", "alice", "r1")
    store.complete("s", first.student_id, "alice", first.assignment_token, CompletionPlan("reached"), "t1")
    with pytest.raises(RequestAlreadyServed) as raised:
        claim(store, "s", "alice", "r1")
    assert raised.value.details["student_id"] == first.student_id
    assert store.stats(store.open_session("s")).assigned == 0


def test_request_id_reused_by_another_assistant_is_a_conflict(store: AssignmentStore) -> None:
    import_rows(store, "s", 5)
    claim(store, "s", "alice", "r1")
    with pytest.raises(RequestConflict):
        claim(store, "s", "bob", "r1")


def test_exhausted_session_returns_none(store: AssignmentStore) -> None:
    import_rows(store, "s", 1)
    only = claim(store, "s", "alice", "r1")
    store.complete("s", only.student_id, "alice", only.assignment_token, CompletionPlan("reached"), "t1")
    assert claim(store, "s", "alice", "r2") is None


def test_unknown_and_closed_sessions_are_refused(store: AssignmentStore) -> None:
    with pytest.raises(UnknownSession):
        store.open_session("nope")
    import_rows(store, "s", 1)
    store.sessions.update_one({"_id": "s"}, {"$set": {"status": "closed"}})
    with pytest.raises(SessionClosed):
        store.open_session("s")


def test_open_sessions_are_read_at_once_without_closed_ones(store: AssignmentStore) -> None:
    for session_id in ("a", "b", "c"):
        import_rows(store, session_id, 1)
    store.sessions.update_one({"_id": "b"}, {"$set": {"status": "closed"}})
    assert sorted(session.id for session in store.open_sessions(10)) == ["a", "c"]
    assert len(store.open_sessions(1)) == 1
    plan = store.sessions.find({"status": "open"}).explain()["queryPlanner"]["winningPlan"]
    assert "session_status" in str(plan)  # served by the index, not a collection scan


def test_completion_needs_the_current_holder_and_token(store: AssignmentStore) -> None:
    import_rows(store, "s", 2)
    held = claim(store, "s", "alice", "r1")
    with pytest.raises(NotHolder):
        store.complete("s", held.student_id, "bob", held.assignment_token, CompletionPlan("reached"), "t1")
    with pytest.raises(StaleToken):
        store.complete("s", held.student_id, "alice", held.assignment_token + 1, CompletionPlan("reached"), "t2")
    with pytest.raises(UnknownStudent):
        store.complete("s", "s:missing", "alice", 1, CompletionPlan("reached"), "t3")
    with pytest.raises(UnknownSession):
        store.complete("other", held.student_id, "alice", 1, CompletionPlan("reached"), "t4")
    done = store.complete("s", held.student_id, "alice", held.assignment_token, CompletionPlan("reached"), "t5")
    assert (done.outcome, done.final, done.completed_by, done.attempt) == ("reached", True, "alice", 1)


def test_repeated_completion_is_recognised_but_a_different_one_is_refused(store: AssignmentStore) -> None:
    import_rows(store, "s", 1)
    held = claim(store, "s", "alice", "r1")
    first = store.complete("s", held.student_id, "alice", held.assignment_token, CompletionPlan("reached"), "t1")
    assert store.complete("s", held.student_id, "alice", held.assignment_token, CompletionPlan("reached"), "t2") == first
    with pytest.raises(AlreadyCompleted):
        store.complete("s", held.student_id, "alice", held.assignment_token, CompletionPlan("voicemail"), "t3")


def test_release_returns_the_student_and_fences_the_old_token(store: AssignmentStore) -> None:
    import_rows(store, "s", 1)
    held = claim(store, "s", "alice", "r1")
    store.release("s", held.student_id, "alice", held.assignment_token, "t1")
    with pytest.raises(NotAssigned):
        store.complete("s", held.student_id, "alice", held.assignment_token, CompletionPlan("reached"), "t2")
    again = claim(store, "s", "bob", "r2")
    assert again.student_id == held.student_id and again.assignment_token == held.assignment_token + 1
    with pytest.raises(StaleToken):
        store.complete("s", held.student_id, "alice", held.assignment_token, CompletionPlan("reached"), "t3")


def test_reimporting_the_same_rows_adds_nothing(store: AssignmentStore) -> None:
    rows = [NewStudent({"name": "Ann"}), NewStudent({"name": "Bo"})]
    first = store.import_students("s", None, rows)
    second = store.import_students("s", None, rows)
    assert (first.inserted, first.session_created) == (2, True)
    assert (second.inserted, second.duplicates, second.session_created) == (0, 2, False)


def test_claim_walks_the_covering_index_without_sorting(store: AssignmentStore,
                                                        engine_database: Database) -> None:
    for session, size in (("small", 100), ("large", 20_000)):
        import_rows(store, session, size)
        plan = engine_database.command("explain", {
            "findAndModify": STUDENTS,
            "query": claim_filter(session, claim_lanes("alice", ()), "press-1"),
            "sort": dict(CLAIM_ORDER), "update": {"$set": {"x": 1}}, "hint": CLAIM_INDEX,
        }, verbosity="executionStats")
        stages = str(plan["queryPlanner"]["winningPlan"])
        assert CLAIM_INDEX in stages and "'SORT'" not in stages
        assert plan["executionStats"]["totalDocsExamined"] == 1
        assert plan["executionStats"]["totalKeysExamined"] <= 2


def test_racing_claims_never_share_a_student(engine_database: Database, mongo_server: MongoServer) -> None:
    store = AssignmentStore(engine_database)
    import_rows(store, "race", 400)
    barrier = threading.Barrier(8)

    def drain(worker: int) -> list[str]:
        with MongoClient(mongo_server.url) as own_client:
            own = AssignmentStore(own_client[engine_database.name])
            barrier.wait()
            taken: list[str] = []
            while (held := claim(own, "race", f"a{worker}", f"r{worker}-{len(taken)}")) is not None:
                taken.append(held.student_id)
                own.complete("race", held.student_id, f"a{worker}", held.assignment_token, CompletionPlan("done"), "c")
            return taken

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(drain, range(8)))
    everything = [student for taken in results for student in taken]
    assert len(everything) == len(set(everything)) == 400
    assert sum(1 for taken in results if taken) > 1
