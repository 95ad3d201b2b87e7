"""Calling hours: when a student may be called, in the student's own time zone.

Pure computation, no I/O. A session's ``CallingHours`` say, per weekday, the
local time ranges in which students may be called (``09:00-20:00``), the
local dates on which nobody is called (holidays), the zone of students whose
own zone is unknown, and how close to a range's end a press may still get a
student (``last_call_seconds``, 60 by default: a press at 19:59:00 or later
gets nobody whose window ends at 20:00; a call that has begun may finish).

A student's zone is a **zone key**: one IANA zone (``America/Chicago``), or
several joined by commas when the student's phone number may be in any of
them; such a student is callable only where all of their windows are open
(the intersection). The empty key means "unknown": the session's
``default_zone``, or never, when the session says such students are not
called.

Every computation turns the local ranges of a few days into UTC intervals
with ``zoneinfo`` (daylight saving included: a range is wall-clock time on
each date; a local time that a change skips maps to the time an hour later,
a repeated one to its first occurrence), unions touching ranges (so
``Mon 20:00-24:00`` and ``Tue 00:00-02:00`` are one window), intersects the
zones of a key, and takes ``last_call_seconds`` off each end.

``placement`` is the one rule the store applies at a given moment (read
from the database's clock): a window is *usable* when it is open now and
stays open for more than ``lead_seconds``; otherwise the student waits for
the next opening.
"""

from __future__ import annotations

import functools
import zoneinfo
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any, Iterable

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DEFAULT_ZONE, NOT_CALLED = "default_zone", "not_called"
UNKNOWN_ZONE_POLICIES = (DEFAULT_ZONE, NOT_CALLED)
DEFAULT_LAST_CALL_SECONDS = 60
DAY_SECONDS = 86_400
# "Never" as a date MongoDB stores and compares: the wake time of a student whose window never opens.
FOREVER = datetime(9999, 12, 31, tzinfo=timezone.utc)
# How far ahead the next opening is looked for (holidays may close many days in a row).
SEARCH_DAYS = 400
SPAN_DAYS = 8
# Names zoneinfo knows that are not places: the machine's own zone, and a file of rules.
NOT_PLACES = frozenset({"localtime", "posixrules", "Factory"})

Interval = tuple[datetime, datetime]


@functools.cache
def known_zones() -> frozenset[str]:
    """Every IANA zone name this process can load (read once)."""
    return frozenset(zoneinfo.available_timezones()) - NOT_PLACES


def is_zone(name: str) -> bool:
    return name in known_zones()


@functools.cache
def _zone(name: str) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(name)


def zone_key(zones: Iterable[str]) -> str:
    """The key of a set of zones: sorted, unique, comma-joined ("" for none)."""
    return ",".join(sorted(set(zones)))


@dataclass(frozen=True)
class CallingHours:
    """A session's calling hours (see module doc); ranges are seconds since local midnight, [start, end)."""

    days: tuple[tuple[tuple[int, int], ...], ...]  # one tuple of ranges per weekday, Monday first
    default_zone: str
    holidays: frozenset[date] = frozenset()
    unknown_zone: str = DEFAULT_ZONE
    callbacks_outside_hours: bool = False
    last_call_seconds: int = DEFAULT_LAST_CALL_SECONDS

    def to_document(self) -> dict[str, Any]:
        """The stored (and answered) form: ``{"days": {"mon": ["09:00-20:00"]}, ...}``."""
        return {
            "days": {name: [f"{_clock(start)}-{_clock(end)}" for start, end in ranges]
                     for name, ranges in zip(WEEKDAYS, self.days)},
            "holidays": sorted(day.isoformat() for day in self.holidays),
            "default_zone": self.default_zone,
            "unknown_zone": self.unknown_zone,
            "callbacks_outside_hours": self.callbacks_outside_hours,
            "last_call_seconds": self.last_call_seconds,
        }

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> "CallingHours":
        days = document.get("days") or {}
        return cls(
            days=tuple(tuple(parse_range(text) for text in days.get(name) or ()) for name in WEEKDAYS),
            default_zone=document["default_zone"],
            holidays=frozenset(date.fromisoformat(day) for day in document.get("holidays") or ()),
            unknown_zone=document.get("unknown_zone") or DEFAULT_ZONE,
            callbacks_outside_hours=bool(document.get("callbacks_outside_hours")),
            last_call_seconds=int(document.get("last_call_seconds", DEFAULT_LAST_CALL_SECONDS)),
        )

    def zones(self, key: str | None) -> tuple[str, ...]:
        """The zones a student with ``key`` is called in; () when never (unknown zone, not called)."""
        names = tuple(name for name in (key or "").split(",") if name and is_zone(name))
        if names:
            return names
        return () if self.unknown_zone == NOT_CALLED else (self.default_zone,)

    def intervals(self, key: str | None, start: datetime, end: datetime) -> list[Interval]:
        """UTC intervals, within [start, end], in which a press may get a student with ``key``."""
        zones = self.zones(key)
        if not zones:
            return []
        common = functools.reduce(_intersect, (self._zone_intervals(name, start, end) for name in zones))
        margin = timedelta(seconds=self.last_call_seconds)
        return [(low, high - margin) for low, high in common if high - margin > low]

    def _zone_intervals(self, name: str, start: datetime, end: datetime) -> list[Interval]:
        zone = _zone(name)
        first, last = start.astimezone(zone).date() - timedelta(days=1), end.astimezone(zone).date() + timedelta(days=1)
        found: list[Interval] = []
        day = first
        while day <= last:
            if day not in self.holidays:
                midnight = datetime(day.year, day.month, day.day, tzinfo=zone)
                for low, high in self.days[day.weekday()]:
                    found.append(((midnight + timedelta(seconds=low)).astimezone(timezone.utc),
                                  (midnight + timedelta(seconds=high)).astimezone(timezone.utc)))
            day += timedelta(days=1)
        return _union(found)


@dataclass(frozen=True)
class Placement:
    """Where a student goes at a moment: open until ``closes_at``, or waiting until ``opens_at``."""

    open: bool
    closes_at: datetime | None = None
    opens_at: datetime | None = None


def placement(hours: CallingHours | None, key: str | None, moment: datetime, lead_seconds: float = 0.0
              ) -> Placement:
    """The rule at ``moment``: open (until the window's last-call time) if that is more than
    ``lead_seconds`` away, else closed until the next opening (``FOREVER`` if none within a year).

    Without calling hours every student is open, with no end (``closes_at`` None).
    """
    if hours is None:
        return Placement(True)
    if not hours.zones(key):
        return Placement(False, opens_at=FOREVER)
    lead = timedelta(seconds=lead_seconds)
    span = moment - timedelta(days=1)
    while span < moment + timedelta(days=SEARCH_DAYS):
        for low, high in hours.intervals(key, span, span + timedelta(days=SPAN_DAYS)):
            if low <= moment < high:
                if high > moment + lead:
                    return Placement(True, closes_at=high)
            elif low > moment:
                return Placement(False, opens_at=low)
        span += timedelta(days=SPAN_DAYS - 2)
    return Placement(False, opens_at=FOREVER)


def next_allowed(hours: CallingHours, key: str | None, moment: datetime, lead_seconds: float = 0.0) -> datetime:
    """``moment`` itself when a student with ``key`` may be called then, else the next time it may."""
    found = placement(hours, key, moment, lead_seconds)
    return moment if found.open else found.opens_at or FOREVER


def parse_range(text: str) -> tuple[int, int]:
    """``"09:00-20:00"`` (or with seconds, ``"09:00:30-09:01:00"``) as seconds since midnight; ValueError if not."""
    low, dash, high = text.partition("-")
    if not dash:
        raise ValueError(f"{text!r} is not START-END such as 09:00-20:00")
    start, end = _seconds(low), _seconds(high)
    if end > DAY_SECONDS or start >= DAY_SECONDS:
        raise ValueError(f"{text!r}: times run from 00:00 to 24:00")
    if end <= start:
        raise ValueError(f"{text!r} ends before it starts (a range past midnight is two ranges on two days)")
    return start, end


def _seconds(text: str) -> int:
    parts = text.strip().split(":")
    if len(parts) not in (2, 3) or not all(len(part) == 2 and part.isdigit() for part in parts):
        raise ValueError(f"{text!r} is not HH:MM or HH:MM:SS")
    hours, minutes, seconds = (int(part) for part in (*parts, "00")[:3])
    if hours > 24 or minutes > 59 or seconds > 59 or (hours == 24 and (minutes or seconds)):
        raise ValueError(f"{text!r} is not a time of day (00:00 to 24:00)")
    return hours * 3600 + minutes * 60 + seconds


def _clock(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    minutes, second = divmod(rest, 60)
    return f"{hours:02d}:{minutes:02d}" + (f":{second:02d}" if second else "")


def _union(intervals: list[Interval]) -> list[Interval]:
    """Sorted, with overlapping or touching intervals merged."""
    merged: list[Interval] = []
    for low, high in sorted(intervals):
        if merged and low <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return merged


def _intersect(first: list[Interval], second: list[Interval]) -> list[Interval]:
    """The parts of time in both sorted lists of disjoint intervals."""
    common: list[Interval] = []
    i = j = 0
    while i < len(first) and j < len(second):
        low, high = max(first[i][0], second[j][0]), min(first[i][1], second[j][1])
        if low < high:
            common.append((low, high))
        if first[i][1] < second[j][1]:
            i += 1
        else:
            j += 1
    return common
