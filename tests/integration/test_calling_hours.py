"""Calling hours and do-not-call lists through real workers (and beat, promoting every second).

The windows are built around MongoDB's time, in seconds (``tests.hours_helpers``):
one zone closes a few seconds into the run and another opens, so nothing
waits for a real window. Every claim is then checked, from the students'
histories, against its student's window in its student's zone.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterator

import pytest
from pymongo import MongoClient
from pymongo.database import Database

from callqueue.config import Settings
from devstack.audit import audit_session
from devstack.servers import RedisServer
from callqueue.producers.client import AssignmentClient
from tests.hours_helpers import FIXED_ZONES, daytime_zones, local_range, shifted
from tests.integration.private_stack import PrivateStack, private_stack
from callqueue.workers.hours import WEEKDAYS, CallingHours, placement
from callqueue.workers.store import STUDENTS

CALLERS = 32
# Zone offsets (hours east of the base zone), around the world: 0 closes during the run, +1 opens during it.
OFFSETS = (0, -1, -2, 1, 2, 3, 5, 7, 9, -4, -7, -10)


def server_now(database: Database) -> datetime:
    return database.client.admin.command("hello")["localTime"].replace(tzinfo=timezone.utc)


def base_zone(moment: datetime) -> str:
    """A zone with room for every offset in ``OFFSETS`` and for both ranges within its local day."""
    usable = [zone for zone in daytime_zones(moment, 3, 21)
              if 10 <= FIXED_ZONES.index(zone if zone != "Etc/GMT" else "Etc/GMT+0") <= 16]
    assert usable, "no fixed-offset zone fits: widen OFFSETS' base"
    return usable[0]


def run_hours(zone: str, start: datetime, closes_in: float, opens_in: float, reopened_for: float) -> dict[str, Any]:
    """Every day: [start - 2 h, start + closes_in) and, an hour east, [start + opens_in, + reopened_for) local."""
    first = local_range(zone, start - timedelta(hours=2), start + timedelta(seconds=closes_in))
    east = shifted(zone, 1)
    second = local_range(east, start + timedelta(seconds=opens_in),
                         start + timedelta(seconds=opens_in + reopened_for))
    return {"days": {day: [first, second] for day in WEEKDAYS}, "default_zone": zone, "last_call_seconds": 0}


def whole_second(moment: datetime) -> datetime:
    """Where a range written ``HH:MM:SS`` (``local_range``) starts or ends for ``moment``."""
    return moment.replace(microsecond=0)


def rows_by_zone(zone: str, counts: dict[int, int]) -> list[dict[str, Any]]:
    return [{"student_id": f"k{offset:+d}-{n:04d}", "tz": shifted(zone, offset), "offset": offset}
            for offset, count in counts.items() for n in range(count)]


def press_until(settings: Settings, session_id: str, deadline: float, call_seconds: float,
                errors: list[BaseException], handed: list[tuple[str, float]], index: int,
                started: Callable[[], float] = time.monotonic) -> None:
    """One caller: press, "call", complete, until ``deadline`` (monotonic); when nobody is left, press again."""
    try:
        with AssignmentClient(settings, timeout_seconds=30) as client:
            while time.monotonic() < deadline:
                began = started()
                held = client.assign_next(session_id, f"caller-{index:02d}")
                if held is None:
                    time.sleep(0.2)
                    continue
                handed.append((held.student_id, began))
                time.sleep(call_seconds)
                client.complete(session_id, held.student_id, held.assigned_to, "reached", held.assignment_token)
    except BaseException as exc:  # reported by the test
        errors.append(exc)


def run_callers(settings: Settings, session_id: str, seconds: float, call_seconds: float
                ) -> list[tuple[str, float]]:
    errors: list[BaseException] = []
    handed: list[tuple[str, float]] = []
    deadline = time.monotonic() + seconds
    threads = [threading.Thread(target=press_until, args=(settings, session_id, deadline, call_seconds, errors,
                                                         handed, index)) for index in range(CALLERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    return handed


def claims_outside_hours(database: Database, session_id: str) -> list[tuple[str, datetime]]:
    """Every claim (from the histories) made when its student's window was closed, in its own zone."""
    session = database["call_sessions"].find_one({"_id": session_id})
    hours = CallingHours.from_document(session["calling_hours"])
    outside = []
    for document in database[STUDENTS].find({"call_session_id": session_id}):
        for entry in document["history"]:
            if entry["event"] == "claimed":
                at = entry["at"].replace(tzinfo=timezone.utc)
                if not placement(hours, document.get("zone"), at).open:
                    outside.append((document["_id"], at))
    return outside


def claims_by_offset(database: Database, session_id: str) -> dict[int, list[datetime]]:
    found: dict[int, list[datetime]] = {}
    for document in database[STUDENTS].find({"call_session_id": session_id}):
        found.setdefault(document["student"]["offset"], []).extend(
            entry["at"].replace(tzinfo=timezone.utc) for entry in document["history"] if entry["event"] == "claimed")
    return found


def test_32_callers_across_12_zones_call_nobody_outside_their_hours_and_a_zone_that_opens_is_called(
        settings: Settings, stack: Any, session_id: str, app_database: Database) -> None:
    start = server_now(app_database)
    zone = base_zone(start)
    closes_in, opens_in, open_for = 6.0, 11.0, 10.0
    counts = {offset: 30 for offset in OFFSETS} | {0: 600}
    with AssignmentClient(settings, timeout_seconds=30) as setup:
        setup.import_students(session_id, rows_by_zone(zone, counts)[:10_000], zone_by="tz")
        setup.set_calling_hours(session_id, run_hours(zone, start, closes_in, opens_in, open_for))
        before = setup.stats(session_id)
    open_now = {0, -1, -2}
    assert before.pending == sum(counts[offset] for offset in open_now)
    assert before.waiting_for_window == sum(counts.values()) - before.pending
    elapsed = (server_now(app_database) - start).total_seconds()
    run_callers(settings, session_id, opens_in + open_for + 1.5 - elapsed, call_seconds=0.25)

    assert claims_outside_hours(app_database, session_id) == []
    by_offset = claims_by_offset(app_database, session_id)
    assert len(by_offset[-1]) == len(by_offset[-2]) == 30  # open all along: drained
    assert 0 < len(by_offset[0]) < 600  # called until its window closed, not after
    assert max(by_offset[0]) < whole_second(start + timedelta(seconds=closes_in))  # hours are HH:MM:SS
    opened = by_offset[1]
    assert len(opened) == 30 and min(opened) >= whole_second(start + timedelta(seconds=opens_in))  # once open
    assert all(not by_offset[offset] for offset in OFFSETS if offset not in (0, -1, -2, 1))
    report = audit_session(app_database, session_id)
    assert report.clean and report.held == 0
    with AssignmentClient(settings) as client:
        after = client.stats(session_id)
    assert after.waiting_for_window == sum(counts.values()) - sum(len(claims) for claims in by_offset.values())


@pytest.fixture(scope="module")
def without_beat(server_env: dict[str, str], redis_server: RedisServer,
                 mongo_client: MongoClient) -> Iterator[PrivateStack]:
    """Workers with no beat: nothing promotes or sweeps; only the claim's own guard keeps the hours."""
    with private_stack(server_env, redis_server, mongo_client, "hours_no_beat", broker_db=8, backend_db=9,
                       assignment_concurrency=2) as running:
        yield running


def test_with_beat_stopped_no_claim_falls_outside_the_hours(without_beat: PrivateStack) -> None:
    database, session_id = without_beat.database, "no-beat"
    start = server_now(database)
    zone = base_zone(start)
    counts = {offset: 10 for offset in OFFSETS} | {0: 400}
    with without_beat.client() as setup:
        setup.import_students(session_id, rows_by_zone(zone, counts), zone_by="tz")
        setup.set_calling_hours(session_id, run_hours(zone, start, 4.0, 3600.0, 10.0))
    elapsed = (server_now(database) - start).total_seconds()
    run_callers(without_beat.settings, session_id, 8.0 - elapsed, call_seconds=0.25)

    assert claims_outside_hours(database, session_id) == []
    by_offset = claims_by_offset(database, session_id)
    assert 0 < len(by_offset[0]) < 400 and max(by_offset[0]) < start + timedelta(seconds=4)
    left = database[STUDENTS].count_documents({"call_session_id": session_id, "student.offset": 0,
                                               "filter_status": "", "lane": "r:"})
    assert left == 400 - len(by_offset[0])  # still in the pool (no sweep ran): the claim's guard held them back


def test_do_not_call_under_load_hands_out_no_listed_student_after_the_answer(
        settings: Settings, stack: Any, session_id: str, app_database: Database) -> None:
    rows = [{"student_id": f"s{n:04d}", "phone": f"+1 212 555 {n:04d}"} for n in range(600)]
    listed = [f"+1212555{n:04d}" for n in range(0, 600, 2)]
    with AssignmentClient(settings, timeout_seconds=30) as setup:
        setup.import_students(session_id, rows, phone_by="phone")
        setup.set_campaign(session_id, retry_rules={"reached": {"delay_seconds": 1, "max_attempts": 5}})
    answered = threading.Event()
    answered_at: list[float] = []
    errors: list[BaseException] = []
    handed: list[tuple[str, float]] = []
    deadline = time.monotonic() + 12
    threads = [threading.Thread(target=press_until, args=(settings, session_id, deadline, 0.05, errors, handed,
                                                         index)) for index in range(CALLERS)]
    for thread in threads:
        thread.start()
    time.sleep(1.5)
    with AssignmentClient(settings, timeout_seconds=60) as admin:
        summary = admin.suppress(numbers=listed, call_session_id=session_id)
        answered_at.append(time.monotonic())
        answered.set()
    for thread in threads:
        thread.join()
    assert errors == []
    numbers = {document["_id"]: document["phone_e164"] for document in
               app_database[STUDENTS].find({"call_session_id": session_id}, {"phone_e164": 1})}
    late = [student for student, began in handed if began > answered_at[0] and numbers[student] in set(listed)]
    assert any(began > answered_at[0] for _, began in handed)  # presses went on after the answer
    assert late == []
    assert summary["do_not_call"] > 0 and summary["still_held"] > 0
    listed_students = list(app_database[STUDENTS].find({"call_session_id": session_id,
                                                        "phone_e164": {"$in": listed}}))
    assert all(document["filter_status"] != "" for document in listed_students)  # every listed student is final
    # held when the list was added: their holder's completion ended them, before the retry rule's 5 attempts
    ended_by_holder = [d for d in listed_students if d["filter_status"] == "reached" and d["attempts"] < 5]
    assert ended_by_holder and all(d["history"][-1]["next"] == "final" for d in ended_by_holder)
    with AssignmentClient(settings, timeout_seconds=30) as again:
        reimport = again.import_students(session_id, rows, phone_by="phone")
    assert (reimport.inserted, reimport.suppressed, reimport.duplicates) == (0, 300, 300)
