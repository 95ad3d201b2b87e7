"""The calling-hours bench part measures what it says: half of its zones closed, none of them handed out.

``choose_zones`` must find 10 zones that stay open and 10 that stay closed
at any moment of the day; the part stops when the session it seeded is not
half closed, or when a closed zone's student was claimed; its target fails
without rounds.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from pymongo.database import Database

from bench.harness.claims import Claims
from bench.harness.desks import BenchError
from bench.harness.integrity import Answer
from bench.parts.calling_hours import (
    HOURS, HOURS_DOCUMENT, PART, PLAIN, ZONES, HoursResults, _seed, choose_zones, expected_closed,
    require_no_closed_claims, require_waiting,
)
from callqueue.workers.hours import CallingHours, placement
from callqueue.workers.store import AssignmentStore

RULES = CallingHours.from_document(HOURS_DOCUMENT)
MARGIN_SECONDS = 3_600.0


@pytest.mark.parametrize("minutes", range(0, 24 * 60, 20))
def test_at_any_moment_ten_zones_stay_open_and_ten_stay_closed_for_the_margin(minutes: int) -> None:
    moment = datetime(2026, 3, 2, tzinfo=timezone.utc) + timedelta(minutes=minutes, seconds=17)
    opened, closed = choose_zones(RULES, moment, 10, MARGIN_SECONDS)
    assert len(set(opened)) == len(set(closed)) == 10 and not set(opened) & set(closed)
    assert set(opened) | set(closed) <= set(ZONES)
    later = moment + timedelta(seconds=MARGIN_SECONDS)
    assert all(placement(RULES, zone, moment).open and placement(RULES, zone, later).open for zone in opened)
    assert not any(placement(RULES, zone, moment).open or placement(RULES, zone, later).open for zone in closed)


def test_hours_that_leave_too_few_zones_open_stop_the_part() -> None:
    never = CallingHours.from_document({"days": {}, "default_zone": "Etc/GMT"})
    with pytest.raises(BenchError, match="only 0 zones stay open"):
        choose_zones(never, datetime(2026, 3, 2, 12, tzinfo=timezone.utc), 10, MARGIN_SECONDS)


@pytest.fixture()
def sessions(engine_database: Database, store: AssignmentStore) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Sessions "p" (no hours) and "h" (hours) of 4 students: positions 0, 2 in an open zone, 1, 3 in a closed one."""
    opened, closed = choose_zones(RULES, store.server_now(), 1, 600.0)
    zones = (opened[0], closed[0])
    _seed(engine_database, "p", 4, zones, None)
    _seed(engine_database, "h", 4, zones, RULES)
    return opened, closed


def test_the_part_stops_unless_the_hours_session_is_half_closed(
        engine_database: Database, sessions: tuple[tuple[str, ...], tuple[str, ...]]) -> None:
    expected = expected_closed(4, (sessions[0][0], sessions[1][0]), sessions[1])
    assert expected == 2
    require_waiting(engine_database, {PLAIN: "p", HOURS: "h"}, expected)
    with pytest.raises(BenchError, match="not what is to be measured"):
        require_waiting(engine_database, {PLAIN: "h", HOURS: "p"}, expected)  # the hours session has none waiting
    with pytest.raises(BenchError, match="not what is to be measured"):
        require_waiting(engine_database, {PLAIN: "h", HOURS: "h"}, expected)  # the baseline has students waiting
    with pytest.raises(BenchError, match="not what is to be measured"):
        require_waiting(engine_database, {PLAIN: "p", HOURS: "h"}, 4)  # nobody open


def test_a_claim_of_a_closed_zone_student_stops_the_part(
        engine_database: Database, store: AssignmentStore,
        sessions: tuple[tuple[str, ...], tuple[str, ...]]) -> None:
    closed = sessions[1]
    for session_id in ("h", "p"):
        for number in range(2):
            name = f"{session_id}-{number}"
            assert store.assign_next(store.open_session(session_id), f"a{name}", f"r{name}")
    require_no_closed_claims(engine_database, "h", closed)  # both of its claims were open-zone students
    assert store.assign_next(store.open_session("h"), "ah-2", "rh-2") is None  # its closed half waits
    with pytest.raises(BenchError, match="1 students of zones outside their calling hours"):
        require_no_closed_claims(engine_database, "p", closed)  # no hours: position 1 is a closed zone's


def _round(plain: int, hours: int) -> dict[str, Claims]:
    def claims(kind: str, count: int) -> Claims:
        return Claims(kind, 1, [Answer(kind, f"s{n}", "a", n) for n in range(count)], [], 1.0)
    return {PLAIN: claims(PLAIN, plain), HOURS: claims(HOURS, hours)}


def test_the_target_is_the_median_of_round_ratios_and_fails_without_rounds() -> None:
    assert "no samples" in PART.targets(HoursResults())[0].line()
    assert PART.targets(HoursResults(rounds=[_round(100, 90), _round(100, 50), _round(100, 85)]))[0].passed
    lost = PART.targets(HoursResults(rounds=[_round(100, 90), _round(100, 0), _round(100, 70)]))[0]
    assert not lost.passed and lost.measured == pytest.approx(0.7)
