"""What the supervision stage reads hands back: a session at a glance, its assistants, its events.

Frozen dataclasses built by ``workers.store.supervision``; the
``assistant_stats`` task turns ``AssistantFigures`` into JSON with
``to_result()``, the dashboard renders all of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Mapping
from zoneinfo import ZoneInfo

from callqueue.workers.models import CallSession

NAME_FIELDS = ("name", "full_name", "display_name")


def start_of_day(now: datetime, time_zone: str) -> datetime:
    """Midnight of ``now``'s day in ``time_zone`` (an IANA name), in UTC: where "today" begins."""
    local = now.astimezone(ZoneInfo(time_zone))
    return local.replace(hour=0, minute=0, second=0, microsecond=0).astimezone(timezone.utc)


def display_name(student: Mapping[str, Any] | None, student_id: str) -> str:
    """How a person reads a student: its ``name`` (or a similar field), else its id. Plain text, never markup."""
    for key in NAME_FIELDS:
        value = (student or {}).get(key)
        if isinstance(value, str) and value.strip():
            return value
    return student_id


@dataclass(frozen=True)
class SessionCounts:
    """Where a session's students stand: the four parts of its progress bar, and outcomes so far."""

    pending: int = 0
    held: int = 0
    scheduled_callbacks: int = 0
    scheduled_retries: int = 0
    completed: dict[str, int] = field(default_factory=dict)
    # Students waiting in an assistant's personal lane (a due personal callback).
    personal_due: int = 0

    @property
    def scheduled(self) -> int:
        return self.scheduled_callbacks + self.scheduled_retries

    @property
    def completed_total(self) -> int:
        return sum(self.completed.values())

    @property
    def total(self) -> int:
        return self.pending + self.held + self.scheduled + self.completed_total


@dataclass(frozen=True)
class Activity:
    """What happened in a session since a moment: claims, completions, and who acted."""

    claims: int = 0
    completions: int = 0
    assistants: frozenset[str] = frozenset()


@dataclass(frozen=True)
class SessionSummary:
    """One row of the sessions page."""

    session: CallSession
    counts: SessionCounts
    last_minute: Activity
    holders: frozenset[str]
    # When the longest-waiting pending student was imported (None: nobody pending).
    oldest_pending_since: datetime | None
    next_callback_at: datetime | None
    next_callback_assistant: str | None
    as_of: datetime

    @property
    def assistants_active(self) -> frozenset[str]:
        """Holding a student now, or claimed or completed one in the last minute."""
        return self.holders | self.last_minute.assistants


@dataclass(frozen=True)
class Hold:
    """A student held right now, by whom and since when."""

    student_id: str
    student: dict[str, Any]
    assistant_id: str
    assignment_token: int
    since: datetime | None
    lease_expires_at: datetime | None = None

    @property
    def name(self) -> str:
        return display_name(self.student, self.student_id)


@dataclass(frozen=True)
class AssistantFigures:
    """One assistant in one session: what they hold, and their calls of the last hour and of today."""

    assistant_id: str
    holding: Hold | None = None
    calls_last_hour: int = 0
    calls_today: int = 0
    outcomes_today: dict[str, int] = field(default_factory=dict)
    # Mean time from claim to completion of today's calls (None: no call today with its claim on record).
    average_call_seconds: float | None = None
    last_event_at: datetime | None = None

    def to_result(self) -> dict[str, Any]:
        holding = None if self.holding is None else {
            "student_id": self.holding.student_id,
            "assignment_token": self.holding.assignment_token,
            "since": _iso(self.holding.since),
        }
        return {
            "assistant_id": self.assistant_id,
            "holding": holding,
            "calls_last_hour": self.calls_last_hour,
            "calls_today": self.calls_today,
            "outcomes_today": dict(self.outcomes_today),
            "average_call_seconds": (None if self.average_call_seconds is None
                                     else round(self.average_call_seconds, 3)),
            "last_event_at": _iso(self.last_event_at),
        }


@dataclass(frozen=True)
class DueCallback:
    """A callback due soon (or now, waiting in its assistant's personal lane)."""

    student_id: str
    student: dict[str, Any]
    due_at: datetime | None
    assistant_id: str | None
    waiting_for_assistant: bool = False

    @property
    def name(self) -> str:
        return display_name(self.student, self.student_id)


@dataclass(frozen=True)
class SessionEvent:
    """One entry of a student's history: a claim, completion, release, reclaim, close or reopen."""

    at: datetime
    event: str
    student_id: str
    student_name: str
    assistant_id: str | None
    outcome: str | None = None


@dataclass(frozen=True)
class DayActivity:
    """A session's day so far: per-assistant figures and completions per minute of the last hour."""

    assistants: tuple[AssistantFigures, ...]
    completions_per_minute: tuple[tuple[datetime, int], ...]


@dataclass(frozen=True)
class SessionDetail:
    """Everything the session page shows."""

    summary: SessionSummary
    day: DayActivity
    callbacks_due: tuple[DueCallback, ...]
    next_retry_at: datetime | None
    latest_events: tuple[SessionEvent, ...]


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()
