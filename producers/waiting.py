"""Waiting for the next student after an ``exhausted`` answer, without pressing more often than needed.

``exhausted`` says when this press could next get someone (``next_due_at``).
The wait sleeps until then and presses again. A student past its due time
comes back with beat's next promotion (``CALLQUEUE_PROMOTE_INTERVAL_SECONDS``);
rather than wait for it, the wait asks for the promotion itself, once per due
time. While other assistants hold students this press could take (they may
be released any time) it asks again every ``HELD_RECHECK_SECONDS`` at the
latest. It stops as soon as nobody is left for this press, nothing can come
within its bound, or the bound has passed.
"""

from __future__ import annotations

import math
import time
from datetime import datetime, timezone
from typing import Iterable, Protocol

from callqueue.producers.results import Exhausted, Press

HELD_RECHECK_SECONDS = 2.0
MIN_PAUSE_SECONDS = 0.05  # the shortest sleep before a student's due time


class Presses(Protocol):
    """What the wait needs of a client: a press, and the promotion on demand."""

    def next_student(self, call_session_id: str, assistant_id: str, request_id: str | None = None,
                     skills: Iterable[str] | None = None) -> Press: ...

    def promote_due(self) -> int: ...


def next_pause(answer: Exhausted, now: datetime, nudged: datetime | None) -> tuple[float, bool]:
    """Seconds to sleep after ``answer`` before pressing again, and whether to ask for the promotion first.

    ``nudged`` is the due time the wait already asked the promotion for: when
    the same due time is still the answer, someone else took the student
    (or it is not yet this press's), so it waits like for held students.
    """
    due = answer.next_due_at
    if due is not None and due <= now:
        return (HELD_RECHECK_SECONDS, False) if due == nudged else (0.0, True)
    pause = math.inf if due is None else max((due - now).total_seconds(), MIN_PAUSE_SECONDS)
    return (min(pause, HELD_RECHECK_SECONDS) if answer.held_by_others else pause), False


def wait_for_next(client: Presses, call_session_id: str, assistant_id: str, request_id: str,
                  skills: list[str] | None, max_wait_seconds: float, after: Exhausted | None) -> Press:
    """Press (unless ``after`` is the last answer), then sleep and press again as ``next_pause`` says, within
    ``max_wait_seconds``; the student, or the last ``Exhausted``. Every press uses ``request_id``."""
    deadline = time.monotonic() + max_wait_seconds
    answer: Press = after or client.next_student(call_session_id, assistant_id, request_id, skills)
    nudged: datetime | None = None
    while isinstance(answer, Exhausted) and answer.someone_may_come and time.monotonic() < deadline:
        pause, nudge = next_pause(answer, datetime.now(timezone.utc), nudged)
        if nudge:
            client.promote_due()  # due, not yet promoted: bring it back now rather than at beat's next run
            nudged = answer.next_due_at
        if pause > deadline - time.monotonic():
            break
        time.sleep(pause)
        answer = client.next_student(call_session_id, assistant_id, request_id, skills)
    return answer
