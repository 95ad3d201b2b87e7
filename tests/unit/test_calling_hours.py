"""Calling hours as computed (workers.hours) and as accepted (workers.validation), without MongoDB."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings as hypothesis_settings, strategies as st

from tests.contract import common_validator
from callqueue.workers.exceptions import InvalidArgument, Rejected, TooLarge
from callqueue.workers.hours import FOREVER, CallingHours, next_allowed, placement, zone_key
from callqueue.workers.validation import number_zones, require_calling_hours, require_phone, require_phones

UTC = timezone.utc
WEEKDAYS_9_TO_8 = {"days": {day: ["09:00-20:00"] for day in ("mon", "tue", "wed", "thu", "fri")},
                   "default_zone": "America/New_York", "last_call_seconds": 0}


def hours(**changes: Any) -> CallingHours:
    return require_calling_hours({**WEEKDAYS_9_TO_8, **changes}, 8, 500)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def test_a_window_is_local_wall_clock_time_on_both_sides_of_a_daylight_saving_change() -> None:
    rules = hours()
    # New York: EST (UTC-5) until 2026-03-08, EDT (UTC-4) after.
    assert placement(rules, "America/New_York", at("2026-03-06T13:59:00+00:00")).open is False  # 08:59 EST
    assert placement(rules, "America/New_York", at("2026-03-06T14:00:00+00:00")).open is True   # 09:00 EST
    assert placement(rules, "America/New_York", at("2026-03-09T13:00:00+00:00")).open is True   # 09:00 EDT
    assert placement(rules, "America/New_York", at("2026-03-09T12:59:00+00:00")).open is False  # 08:59 EDT
    assert placement(rules, "America/New_York", at("2026-03-06T14:00:00+00:00")).closes_at == \
        at("2026-03-07T01:00:00+00:00")  # 20:00 EST


def test_a_closed_student_waits_for_the_next_opening_across_the_weekend_and_holidays() -> None:
    rules = hours(holidays=["2026-12-28"])  # a Monday
    friday_evening = at("2026-12-25T21:30:00-05:00")  # 20:30 in Chicago
    found = placement(rules, "America/Chicago", friday_evening)
    assert found.open is False
    assert found.opens_at == at("2026-12-29T09:00:00-06:00")  # Tuesday, Chicago time


def test_a_number_in_several_zones_is_called_only_where_all_are_open() -> None:
    rules = hours()
    both = zone_key(["America/New_York", "America/Los_Angeles"])
    found = placement(rules, both, at("2026-11-24T13:00:00-05:00"))  # 13:00 New York, 10:00 Los Angeles
    assert found.open and found.closes_at == at("2026-11-24T20:00:00-05:00")
    early = placement(rules, both, at("2026-11-24T10:00:00-05:00"))  # 07:00 in Los Angeles
    assert not early.open and early.opens_at == at("2026-11-24T09:00:00-08:00")


def test_last_call_time_and_the_lead_close_a_window_early() -> None:
    rules = hours(last_call_seconds=60)
    just_before = at("2026-11-24T19:58:59-05:00")
    assert placement(rules, "America/New_York", just_before).closes_at == at("2026-11-24T19:59:00-05:00")
    assert placement(rules, "America/New_York", at("2026-11-24T19:59:00-05:00")).open is False
    assert placement(rules, "America/New_York", just_before, lead_seconds=10).open is False  # not usable


def test_ranges_touching_at_midnight_are_one_window() -> None:
    rules = hours(days={"mon": ["20:00-24:00"], "tue": ["00:00-02:00"]})
    found = placement(rules, "Europe/Berlin", at("2026-11-23T23:00:00+01:00"))
    assert found.open and found.closes_at == at("2026-11-24T02:00:00+01:00")


def test_unknown_zones_use_the_default_or_are_never_called() -> None:
    moment = at("2026-11-24T12:00:00-05:00")
    assert placement(hours(), "", moment).open
    never = placement(hours(unknown_zone="not_called"), "", moment)
    assert (never.open, never.opens_at) == (False, FOREVER)
    assert placement(None, "", moment).open and placement(None, "", moment).closes_at is None


def test_next_allowed_is_the_moment_itself_inside_the_hours() -> None:
    inside = at("2026-11-24T10:00:00-05:00")
    assert next_allowed(hours(), "America/New_York", inside) == inside
    sunday = at("2026-11-29T20:30:00-05:00")
    assert next_allowed(hours(), "America/New_York", sunday) == at("2026-11-30T09:00:00-05:00")


def test_phone_numbers_map_to_their_zones() -> None:
    assert number_zones(require_phone("p", "+1 312 555 0100")) == ("America/Chicago",)
    assert len(number_zones(require_phone("p", "+79161234567"))) > 5  # a mobile anywhere in Russia
    assert number_zones(require_phone("p", "+15550000001")) == ()  # no zone known
    assert require_phones("numbers", ["+1 (212) 555-0100", "+12125550100"], 10) == ("+12125550100",)


@pytest.mark.parametrize("value", ["212-555-0100", "+", "+1", "hello", "", "+99 123", "+1 212 555 0100 555 0100 555"])
def test_unparsable_phone_numbers_are_invalid_arguments(value: str) -> None:
    with pytest.raises(InvalidArgument):
        require_phone("phone", value)


@pytest.mark.parametrize("change, code", [
    ({"days": {"mon": ["25:00-26:00"]}}, "invalid_argument"),
    ({"days": {"mon": ["09:00-24:01"]}}, "invalid_argument"),
    ({"days": {"mon": ["20:00-09:00"]}}, "invalid_argument"),
    ({"days": {"mon": ["09:00-09:00"]}}, "invalid_argument"),
    ({"days": {"mon": ["09:00-12:00", "11:00-13:00"]}}, "invalid_argument"),
    ({"days": {"mon": ["9:00-12:00"]}}, "invalid_argument"),
    ({"days": {"mon": [f"{h:02d}:00-{h:02d}:30" for h in range(9)]}}, "too_large"),
    ({"days": {"funday": ["09:00-12:00"]}}, "invalid_argument"),
    ({"days": {"mon": "09:00-12:00"}}, "invalid_argument"),
    ({"default_zone": "Mars/Olympus_Mons"}, "invalid_argument"),
    ({"default_zone": "../../etc/passwd"}, "invalid_argument"),
    ({"default_zone": "localtime"}, "invalid_argument"),
    ({"holidays": ["2026-02-30"]}, "invalid_argument"),
    ({"holidays": ["2026-12-25"] * 501}, "too_large"),
    ({"unknown_zone": "guess"}, "invalid_argument"),
    ({"callbacks_outside_hours": "yes"}, "invalid_argument"),
    ({"last_call_seconds": -1}, "invalid_argument"),
    ({"colour": "blue"}, "invalid_argument"),
])
def test_malformed_calling_hours_are_refused_naming_the_argument(change: dict[str, Any], code: str) -> None:
    with pytest.raises(Rejected) as refused:
        hours(**change)
    assert refused.value.code == code
    assert refused.value.details["argument"] == "calling_hours"
    assert isinstance(refused.value, (TooLarge if code == "too_large" else InvalidArgument))


RANGES = st.lists(st.tuples(st.integers(0, 25), st.sampled_from([0, 30, 59, 60]), st.integers(0, 25),
                            st.sampled_from([0, 15, 60])).map(lambda t: f"{t[0]:02d}:{t[1]:02d}-{t[2]:02d}:{t[3]:02d}"),
                  max_size=3)


@hypothesis_settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["mon", "sat", "sun", "xyz"]), RANGES, max_size=2),
       st.sampled_from(["America/Chicago", "Mars/Base", "UTC", ""]))
def test_the_contract_schema_accepts_the_hours_the_workers_accept_in_shape(days: dict[str, list[str]],
                                                                          zone: str) -> None:
    """Overlap and a real zone name are the workers' to check: the schema accepts a superset of what they do."""
    value = {"days": days, "default_zone": zone}
    try:
        require_calling_hours(value, 8, 500)
        accepted = True
    except Rejected:
        accepted = False
    if accepted:
        assert common_validator("calling_hours").is_valid(value)


def test_stored_hours_read_back_the_same() -> None:
    rules = hours(days={"mon": ["09:00-12:00", "13:00:30-20:00"], "sun": []}, holidays=["2026-12-25"],
                  unknown_zone="not_called", callbacks_outside_hours=True)
    assert CallingHours.from_document(rules.to_document()) == rules
    assert rules.to_document()["days"]["mon"] == ["09:00-12:00", "13:00:30-20:00"]


def test_a_student_whose_windows_meet_only_in_summer_waits_for_daylight_saving() -> None:
    rules = hours()
    apart = zone_key(["Asia/Kolkata", "America/Chicago"])  # 11.5 h apart in winter: 09:00-20:00 never overlaps
    start = at("2026-11-23T00:00:00+00:00")
    assert all(not placement(rules, apart, start + timedelta(hours=h)).open for h in range(0, 24 * 7, 1))
    # 10.5 h apart once Chicago moves to daylight saving time (2027-03-14): Monday 09:00 CDT is 19:30 in Kolkata
    assert placement(rules, apart, start).opens_at == at("2027-03-15T09:00:00-05:00")
    never = zone_key(["Etc/GMT-6", "Etc/GMT+6"])  # 12 h apart all year
    assert placement(rules, never, start).opens_at == FOREVER
