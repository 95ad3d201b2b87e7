"""What the templates use to show figures: durations, clock times, the progress bar and the chart's geometry.

Everything here returns plain numbers or text; the templates escape it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable
from zoneinfo import ZoneInfo

from callqueue.config import Settings
from callqueue.workers.figures import SessionCounts
from callqueue.workers.store import utcnow

# The live parts of the session page, each a template in templates/parts/ and an element id.
SESSION_REGIONS = ("figures", "assistants", "callbacks", "chart", "events")
CHART_WIDTH, CHART_HEIGHT = 720, 160


def duration(seconds: float | None) -> str:
    """``45 s``, ``12 min``, ``3 h 05 min``, ``2 d 4 h``."""
    if seconds is None:
        return "–"
    if seconds < 10:
        return f"{max(0.0, seconds):.1f} s"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if hours < 1:
        return f"{minutes} min"
    if days < 1:
        return f"{hours} h {minutes % 60:02d} min"
    return f"{days} d {hours % 24} h"


@dataclass(frozen=True)
class Segment:
    """One part of a progress bar: its class, label, count and where it starts and ends (percent)."""

    css: str
    label: str
    count: int
    start: float
    width: float


def progress(counts: SessionCounts) -> list[Segment]:
    """Completed, held, scheduled and pending as consecutive parts of 100 %."""
    total = counts.total or 1
    parts = [("completed", "completed", counts.completed_total), ("held", "held now", counts.held),
             ("scheduled", "scheduled", counts.scheduled), ("pending", "pending", counts.pending)]
    segments, start = [], 0.0
    for css, label, count in parts:
        width = 100.0 * count / total
        segments.append(Segment(css, label, count, round(start, 3), round(width, 3)))
        start += width
    return segments


@dataclass(frozen=True)
class Bar:
    """One bar of the completions chart."""

    x: float
    y: float
    width: float
    height: float
    minute: str
    count: int


def chart(points: tuple[tuple[datetime, int], ...], clock: Callable[[datetime | None], str]) -> tuple[list[Bar], int]:
    """Bars for completions per minute (SVG coordinates) and the tallest count."""
    tallest = max((count for _, count in points), default=0)
    if not points:
        return [], 0
    step = CHART_WIDTH / len(points)
    bars = [Bar(round(index * step + 1, 2), round(CHART_HEIGHT - CHART_HEIGHT * count / (tallest or 1), 2),
                round(max(step - 2, 1), 2), round(CHART_HEIGHT * count / (tallest or 1), 2), clock(minute)[:5], count)
            for index, (minute, count) in enumerate(points)]
    return bars, tallest


def helpers(settings: Settings) -> dict[str, Any]:
    """The functions and constants every template gets, with "now" taken once per rendering."""
    zone = ZoneInfo(settings.stats_time_zone)
    now = utcnow()

    def clock(moment: datetime | None) -> str:
        return "–" if moment is None else moment.astimezone(zone).strftime("%H:%M:%S")

    def ago(moment: datetime | None) -> str:
        return "–" if moment is None else duration((now - moment).total_seconds())

    def until(moment: datetime | None) -> str:
        if moment is None:
            return "–"
        seconds = (moment - now).total_seconds()
        return "due now" if seconds <= 0 else f"in {duration(seconds)}"

    return {"clock": clock, "ago": ago, "until": until, "duration": duration, "progress": progress,
            "chart": lambda points: chart(points, clock), "chart_width": CHART_WIDTH, "chart_height": CHART_HEIGHT,
            "time_zone": settings.stats_time_zone}
