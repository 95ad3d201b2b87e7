"""How long the client's wait sleeps after an ``exhausted`` answer (``producers.waiting.next_pause``)."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

from callqueue.producers.results import Exhausted
from callqueue.producers.waiting import HELD_RECHECK_SECONDS, MIN_PAUSE_SECONDS, next_pause

NOW = datetime(2026, 12, 6, 9, 0, tzinfo=timezone.utc)


def test_it_sleeps_until_the_next_student_is_due() -> None:
    assert next_pause(Exhausted("s", "scheduled", NOW + timedelta(seconds=42), 3), NOW, None) == (42.0, False)
    soon = Exhausted("s", "scheduled", NOW + timedelta(milliseconds=1), 1)
    assert next_pause(soon, NOW, None) == (MIN_PAUSE_SECONDS, False)


def test_past_the_due_time_it_asks_for_the_promotion_once_and_presses_at_once() -> None:
    due = Exhausted("s", "scheduled", NOW - timedelta(seconds=1), 1)
    assert next_pause(due, NOW, None) == (0.0, True)
    assert next_pause(due, NOW, due.next_due_at) == (HELD_RECHECK_SECONDS, False)  # nudged already: no spin


def test_held_students_are_rechecked_and_nothing_to_wait_for_is_forever() -> None:
    assert next_pause(Exhausted("s", "held", None, 0, 2), NOW, None) == (HELD_RECHECK_SECONDS, False)
    later = Exhausted("s", "scheduled", NOW + timedelta(minutes=5), 1, 1)
    assert next_pause(later, NOW, None) == (HELD_RECHECK_SECONDS, False)  # a held one may come back sooner
    pause, nudge = next_pause(Exhausted("s", "none_left"), NOW, None)
    assert math.isinf(pause) and not nudge
