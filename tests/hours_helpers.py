"""Calling hours built around a moment, for tests that must not wait for a real window to open or close.

Ranges may carry seconds (``09:00:30-09:00:45``), so a test makes a window
that closes a few seconds from now, or opens a few seconds from now, in a
zone whose local time is far from midnight (the ranges of one weekday only).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from callqueue.workers.hours import WEEKDAYS

# Fixed offsets (no daylight saving), east of UTC first: Etc/GMT-12 is UTC+12.
FIXED_ZONES = tuple(f"Etc/GMT{sign}{hours}" for sign, hours in
                    [("-", h) for h in range(14, 0, -1)] + [("+", h) for h in range(0, 13)])


def daytime_zones(moment: datetime, earliest_hour: int = 3, latest_hour: int = 19) -> list[str]:
    """Fixed-offset zones whose local time at ``moment`` is between ``earliest_hour`` and ``latest_hour``."""
    found = []
    for name in FIXED_ZONES:
        local = moment.astimezone(ZoneInfo(name.replace("GMT+0", "GMT")))
        if earliest_hour <= local.hour < latest_hour:
            found.append(name.replace("GMT+0", "GMT"))
    return found


def local_range(zone: str, start: datetime, end: datetime) -> str:
    """``"HH:MM:SS-HH:MM:SS"``: [start, end) in ``zone``'s wall-clock time, both on one local day."""
    local_start, local_end = start.astimezone(ZoneInfo(zone)), end.astimezone(ZoneInfo(zone))
    assert local_start.date() == local_end.date(), "the range must stay within one local day"
    return f"{local_start:%H:%M:%S}-{local_end:%H:%M:%S}"


def window(zone: str, moment: datetime, opens_in: float, closes_in: float, **extra: Any) -> dict[str, Any]:
    """Calling hours (argument form), every day [moment + opens_in, moment + closes_in) in ``zone``'s local time.

    Students of other zones have the same local range: a zone an hour west of ``zone`` is in it an hour
    later, one an hour east an hour earlier.
    """
    text = local_range(zone, moment + timedelta(seconds=opens_in), moment + timedelta(seconds=closes_in))
    return {"days": {day: [text] for day in WEEKDAYS}, "default_zone": zone, "last_call_seconds": 0, **extra}


def shifted(zone: str, hours: int) -> str:
    """The fixed-offset zone ``hours`` east of ``zone`` (its local time ``hours`` later)."""
    index = FIXED_ZONES.index(zone if zone != "Etc/GMT" else "Etc/GMT+0") - hours
    assert 0 <= index < len(FIXED_ZONES), f"no fixed-offset zone {hours} h east of {zone}"
    return FIXED_ZONES[index].replace("GMT+0", "GMT")
