"""Calling hours and do-not-call lists in the store, against a real mongod, without Celery.

Windows are built around the server's time (``tests.hours_helpers``), and
moments later than now are passed as ``now`` to the claim and the
promotion, so nothing here waits for a window to open or close.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

import pytest
from pymongo.database import Database

from tests.hours_helpers import daytime_zones, shifted, window
from tests.integration.helpers import fingerprint
from callqueue.workers.exceptions import InvalidArgument
from callqueue.workers.models import Assignment, Callback, RetryRule
from callqueue.workers.store import CLAIM_INDEX, STUDENTS, AssignmentStore, NewStudent, plan_for
from callqueue.workers.store.documents import CLAIM_ORDER, SCHEDULED_LANE, claim_filter, claim_lanes
from callqueue.workers.validation import require_calling_hours

LEAD = 2.0


@pytest.fixture()
def hours_store(engine_database: Database) -> AssignmentStore:
    return AssignmentStore(engine_database, window_lead_seconds=LEAD)


def claim(store: AssignmentStore, session_id: str, assistant: str, now: datetime | None = None) -> Assignment | None:
    return store.assign_next(store.open_session(session_id), assistant, f"{assistant}-{now}-{id(store)}", now=now)


def complete(store: AssignmentStore, held: Assignment, outcome: str, callback: Callback | None = None,
             now: datetime | None = None):  # type: ignore[no-untyped-def]
    plan = plan_for(store.require_session(held.call_session_id), outcome, callback, default_grace_seconds=600)
    return store.complete(held.call_session_id, held.student_id, held.assigned_to, held.assignment_token, plan,
                          f"complete-{held.student_id}-{held.assignment_token}", now=now)


def zones_around(store: AssignmentStore) -> tuple[datetime, str, str]:
    """Server time, a zone whose window closes in 60 s, and the zone an hour east of it (closed)."""
    now = store.server_now()
    zones = daytime_zones(now, 5, 17)
    zone = zones[len(zones) // 2]
    return now, zone, shifted(zone, 1)


def two_zone_session(store: AssignmentStore, session_id: str, per_zone: int, closes_in: float = 60.0,
                     **extra: object) -> tuple[datetime, str, str]:
    """A session whose hours open the first zone until ``closes_in`` from now and leave the second closed."""
    now, open_zone, closed_zone = zones_around(store)
    store.create_session(session_id, None)
    store.set_calling_hours(session_id, require_calling_hours(window(open_zone, now, -3600, closes_in, **extra), 8, 500))
    rows = [NewStudent({"n": n, "zone": zone}, key=f"{zone}-{n}", zone=zone)
            for zone in (open_zone, closed_zone) for n in range(per_zone)]
    store.import_students(session_id, None, rows)
    return now, open_zone, closed_zone


def test_an_import_places_open_students_in_the_pool_and_closed_ones_to_wait(hours_store: AssignmentStore) -> None:
    now, open_zone, closed_zone = two_zone_session(hours_store, "s", 3)
    by_zone = {zone: list(hours_store.students.find({"zone": zone})) for zone in (open_zone, closed_zone)}
    assert {d["lane"] for d in by_zone[open_zone]} == {"r:"}
    closes = {d["window_closes_at"] for d in by_zone[open_zone]}
    assert len(closes) == 1 and timedelta(seconds=50) < closes.pop() - now <= timedelta(seconds=61)
    assert {(d["lane"], d["waiting_for"]) for d in by_zone[closed_zone]} == {(SCHEDULED_LANE, "window")}
    # an hour east, the same local window opens 23 h after it opened here, i.e. about 22 h from now
    assert all(timedelta(hours=21) < d["wake_at"] - now < timedelta(hours=23) for d in by_zone[closed_zone])
    stats = hours_store.stats(hours_store.open_session("s"))
    assert (stats.pending, stats.waiting_for_window, stats.scheduled_retries) == (3, 3, 0)
    handed = [claim(hours_store, "s", f"a{n}") for n in range(4)]
    assert [held.student["zone"] for held in handed if held] == [open_zone] * 3 and handed[3] is None


def test_with_beat_stopped_a_closed_window_still_keeps_its_students_out(hours_store: AssignmentStore) -> None:
    now, open_zone, _ = two_zone_session(hours_store, "s", 3, closes_in=30)
    after_close = now + timedelta(seconds=31)
    assert claim(hours_store, "s", "early") is not None  # open now
    assert claim(hours_store, "s", "late", now=after_close) is None  # no promotion ran, the filter's guard did it
    assert hours_store.students.count_documents({"zone": open_zone, "lane": "r:", "assigned_to": None}) == 2


def test_the_sweep_moves_students_out_before_the_window_closes_and_promotion_brings_them_back(
        hours_store: AssignmentStore) -> None:
    now, open_zone, closed_zone = two_zone_session(hours_store, "s", 2, closes_in=30)
    assert hours_store.promote_due(now + timedelta(seconds=27)) == 0  # more than the lead before the close
    assert hours_store.promote_due(now + timedelta(seconds=29)) == 2  # within the lead: out of the pool
    moved = list(hours_store.students.find({"zone": open_zone}))
    assert {(d["lane"], d["waiting_for"]) for d in moved} == {(SCHEDULED_LANE, "window")}
    tomorrow = moved[0]["wake_at"]
    assert timedelta(hours=22, minutes=59) < tomorrow - now < timedelta(hours=23, minutes=1)
    assert claim(hours_store, "s", "a", now=now + timedelta(seconds=29)) is None
    assert hours_store.promote_due(tomorrow) == 4  # both zones open then: the closed one opened an hour before
    assert claim(hours_store, "s", "b", now=tomorrow) is not None


def test_a_retry_due_outside_the_window_comes_back_when_it_opens(hours_store: AssignmentStore) -> None:
    now, open_zone, _ = two_zone_session(hours_store, "s", 1, closes_in=600)
    hours_store.set_campaign("s", (RetryRule("no_answer", 900, 3),), None)
    held = claim(hours_store, "s", "a")
    done = complete(hours_store, held, "no_answer")
    assert done.next == "retry"
    assert hours_store.promote_due(done.next_attempt_at) == 1  # due, but the window closed 5 minutes before
    waiting = hours_store.students.find_one({"_id": held.student_id})
    assert (waiting["lane"], waiting["waiting_for"]) == (SCHEDULED_LANE, "window")
    assert timedelta(hours=22, minutes=59) < waiting["wake_at"] - now < timedelta(hours=23, minutes=1)


def test_a_callback_outside_the_hours_is_refused_with_the_next_allowed_time(hours_store: AssignmentStore) -> None:
    now, _, _ = two_zone_session(hours_store, "s", 1, closes_in=600)
    held = claim(hours_store, "s", "a")
    with pytest.raises(InvalidArgument) as refused:
        complete(hours_store, held, "call_later", Callback(now + timedelta(hours=2)))
    allowed = datetime.fromisoformat(refused.value.details["next_allowed"])
    assert timedelta(hours=22) < allowed - now < timedelta(hours=24)
    assert "next allowed time" in refused.value.message and refused.value.details["argument"] == "callback_at"
    inside = complete(hours_store, held, "call_later", Callback(now + timedelta(seconds=120)))
    assert inside.next == "callback"


def test_a_session_may_allow_callbacks_outside_the_hours_and_then_hands_the_student_out_on_time(
        hours_store: AssignmentStore) -> None:
    now, _, _ = two_zone_session(hours_store, "s", 1, closes_in=600, callbacks_outside_hours=True)
    held = claim(hours_store, "s", "a")
    asked = now + timedelta(hours=2)
    assert complete(hours_store, held, "call_later", Callback(asked)).next == "callback"
    assert hours_store.promote_due(asked) == 1
    again = claim(hours_store, "s", "b", now=asked)
    assert again is not None and again.student_id == held.student_id
    assert claim(hours_store, "s", "c", now=asked + timedelta(hours=1)) is None  # nothing else is open


def test_changing_the_hours_places_every_student_again(hours_store: AssignmentStore) -> None:
    now, zone, _ = zones_around(hours_store)
    hours_store.import_students("s", None, [NewStudent({"n": n}, key=f"s{n}", zone=zone) for n in range(4)])
    held = claim(hours_store, "s", "a")
    hours_store.set_calling_hours("s", require_calling_hours(window(zone, now, 3600, 7200), 8, 500))
    assert claim(hours_store, "s", "b") is None
    assert hours_store.students.find_one({"_id": held.student_id})["window_closes_at"] <= hours_store.server_now()
    hours_store.release("s", held.student_id, "a", held.assignment_token, "give-back")
    assert claim(hours_store, "s", "c") is None  # given back after its window closed: the guard keeps it out
    hours_store.set_calling_hours("s", None)
    assert hours_store.stats(hours_store.open_session("s")).waiting_for_window == 0
    assert len([n for n in range(5) if claim(hours_store, "s", f"d{n}")]) == 4


def test_students_whose_zone_is_unknown_follow_the_default_or_are_not_called(hours_store: AssignmentStore) -> None:
    now, open_zone, closed_zone = zones_around(hours_store)
    hours_store.import_students("s", None, [NewStudent({"n": n}, key=f"s{n}") for n in range(2)])
    hours_store.set_calling_hours("s", require_calling_hours(window(open_zone, now, -60, 600), 8, 500))
    assert claim(hours_store, "s", "a") is not None
    hours_store.set_calling_hours("s", require_calling_hours(
        {**window(open_zone, now, -60, 600), "unknown_zone": "not_called"}, 8, 500))
    assert claim(hours_store, "s", "b") is None
    assert hours_store.stats(hours_store.open_session("s")).waiting_for_window == 1


def test_a_claim_walks_the_same_few_keys_at_any_size_with_half_the_students_closed(
        hours_store: AssignmentStore, engine_database: Database) -> None:
    examined = {}
    for session, size in (("small", 1_000), ("large", 100_000)):
        now, open_zone, closed_zone = zones_around(hours_store)
        hours_store.create_session(session, None)
        hours_store.set_calling_hours(session, require_calling_hours(window(open_zone, now, -3600, 3600), 8, 500))
        rows = [NewStudent({"n": n}, key=f"s{n}", zone=(open_zone, closed_zone)[n % 2], route=("", "es")[n % 3 == 0])
                for n in range(size)]
        for start in range(0, size, 10_000):
            hours_store.import_students(session, None, rows[start:start + 10_000], chunk_size=5_000)
        assert hours_store.stats(hours_store.open_session(session)).waiting_for_window == size // 2
        plan = engine_database.command("explain", {
            "findAndModify": STUDENTS, "query": claim_filter(session, claim_lanes("alice", ("es",)), "press-1"),
            "sort": dict(CLAIM_ORDER), "update": {"$set": {"x": 1}}, "hint": CLAIM_INDEX,
        }, verbosity="executionStats")
        stages = str(plan["queryPlanner"]["winningPlan"])
        assert "SORT_MERGE" in stages and "'SORT'" not in stages and CLAIM_INDEX in stages
        assert plan["executionStats"]["totalDocsExamined"] == 1
        examined[size] = plan["executionStats"]["totalKeysExamined"]
    assert examined[1_000] == examined[100_000] <= 2 * 2 + 1


# -- do-not-call ---------------------------------------------------------------------------------------------


def numbered(count: int) -> list[NewStudent]:
    return [NewStudent({"n": n}, key=f"s{n}", phone=f"+1212555{n:04d}") for n in range(count)]


def test_suppress_ends_pending_and_scheduled_students_and_a_held_one_ends_final(hours_store: AssignmentStore) -> None:
    hours_store.import_students("s", None, numbered(4))
    hours_store.set_campaign("s", (RetryRule("no_answer", 600, 3),), None)
    held = claim(hours_store, "s", "a")
    retried = claim(hours_store, "s", "b")
    assert complete(hours_store, retried, "no_answer").next == "retry"
    held_number = hours_store.students.find_one({"_id": held.student_id})["phone_e164"]
    retried_number = hours_store.students.find_one({"_id": retried.student_id})["phone_e164"]
    summary = hours_store.suppress(None, [held_number, retried_number, "+12125550003"], [], "dnc-1")
    assert (summary.added, summary.students_marked, summary.do_not_call, summary.still_held) == (3, 3, 2, 1)
    assert hours_store.students.find_one({"_id": retried.student_id})["filter_status"] == "do_not_call"
    hours_store.set_campaign("s", (RetryRule("no_answer", 600, 3), RetryRule("reached", 1, 5)), None)
    done = complete(hours_store, held, "no_answer")
    assert (done.final, done.outcome) == (True, "no_answer")  # final despite the retry rule
    before = fingerprint(hours_store.students.database)
    again = hours_store.suppress(None, [held_number, retried_number, "+12125550003"], [], "dnc-2")
    assert (again.added, again.students_marked, again.do_not_call) == (0, 0, 0)
    assert fingerprint(hours_store.students.database) == before
    assert hours_store.stats(hours_store.open_session("s")).suppressed == 3


def test_a_suppressed_student_given_back_ends_with_do_not_call(hours_store: AssignmentStore) -> None:
    hours_store.import_students("s", None, numbered(2))
    held = claim(hours_store, "s", "a")
    hours_store.suppress("s", [], [held.student_id], "dnc-1")
    state = hours_store.release("s", held.student_id, "a", held.assignment_token, "give-back")
    assert state.filter_status == "do_not_call"
    assert claim(hours_store, "s", "b").student_id != held.student_id


def test_imports_skip_listed_numbers_and_ids_and_say_how_many(hours_store: AssignmentStore) -> None:
    hours_store.suppress(None, ["+12125550001"], [], "dnc-global")
    hours_store.suppress("s", ["+12125550002"], ["s:s3"], "dnc-session")
    summary = hours_store.import_students("s", None, numbered(5))
    assert (summary.received, summary.inserted, summary.duplicates, summary.suppressed) == (5, 2, 0, 3)
    other = hours_store.import_students("t", None, numbered(5))
    assert (other.inserted, other.suppressed) == (4, 1)  # only the list for every session applies there
    again = hours_store.import_students("s", None, numbered(5))
    assert (again.inserted, again.duplicates, again.suppressed) == (0, 2, 3)
    hours_store.unsuppress("s", ["+12125550002"], [])
    assert hours_store.import_students("s", None, numbered(5)).inserted == 1


def test_reopening_a_session_keeps_suppressed_students_out(hours_store: AssignmentStore) -> None:
    hours_store.import_students("s", None, numbered(2))
    hours_store.close_session("s", "session_closed", False, "close-1")
    hours_store.suppress("s", ["+12125550000"], [], "dnc-1")
    hours_store.reopen_session("s", "reopen-1")
    statuses = {d["phone_e164"]: d["filter_status"] for d in hours_store.students.find({"call_session_id": "s"})}
    assert statuses == {"+12125550000": "do_not_call", "+12125550001": ""}


def test_no_suppressed_student_is_handed_out_once_suppress_returns_while_claims_race(
        hours_store: AssignmentStore) -> None:
    hours_store.import_students("s", None, numbered(400))
    listed = [f"+1212555{n:04d}" for n in range(0, 400, 2)]
    done = threading.Event()
    after: list[tuple[str, bool]] = []

    def press(index: int) -> None:
        count = 0
        while True:
            late = done.is_set()  # set before this press began: suppress had answered
            held = hours_store.assign_next(hours_store.open_session("s"), f"a{index}", f"r{index}-{count}")
            if held is None:
                return
            after.append((held.student_id, late))
            hours_store.complete("s", held.student_id, held.assigned_to, held.assignment_token,
                                 plan_for(hours_store.require_session("s"), "reached", None, 600), f"c{index}-{count}")
            count += 1

    callers = [threading.Thread(target=press, args=(index,)) for index in range(8)]
    for caller in callers:
        caller.start()
    hours_store.suppress("s", listed, [], "dnc-race")
    done.set()
    for caller in callers:
        caller.join()
    numbers = {d["_id"]: d.get("phone_e164") for d in hours_store.students.find({"call_session_id": "s"})}
    handed_after = [student for student, late in after if late and numbers[student] in set(listed)]
    assert any(late for _, late in after), "no press began after suppress answered: the race was not run"
    assert handed_after == []
    finals = {d["filter_status"] for d in hours_store.students.find({"phone_e164": {"$in": listed}})}
    assert finals <= {"do_not_call", "reached"} and "do_not_call" in finals
