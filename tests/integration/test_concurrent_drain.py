"""32 callers in two processes drain one session through at least two worker processes."""

from __future__ import annotations

from callqueue.config import Settings
from devstack.assistants import Behaviour, run_in_processes
from devstack.audit import audit_session
from devstack.stack import Stack
from callqueue.producers.client import AssignmentClient
from tests.integration.helpers import seed

STUDENTS = 1_000


def test_every_student_is_assigned_exactly_once_under_32_racing_callers(
        stack: Stack, client: AssignmentClient, settings: Settings, session_id: str, app_database) -> None:
    seed(client, session_id, STUDENTS)
    before = _tasks_per_child(stack)

    logs = run_in_processes(settings, session_id, processes=2, threads_each=16,
                            behaviour=Behaviour(timeout_seconds=30))

    assert [log.errors for log in logs if log.errors] == []
    assert all(log.exhausted for log in logs)  # every caller got an answer to every press
    handouts = [handout for log in logs for handout in log.handouts]
    assert len(handouts) == STUDENTS
    assert len({handout.student_id for handout in handouts}) == STUDENTS
    assert sum(log.already_held for log in logs) == 0
    report = audit_session(app_database, session_id, handouts)
    assert report.clean, report
    assert (report.students, report.completed, report.claims) == (STUDENTS, STUDENTS, STUDENTS)
    assert sum(1 for log in logs if log.handouts) > 16
    after = _tasks_per_child(stack)
    busy = [n for n, m in zip(after, before + [0] * len(after)) if n - m > 0]
    assert len(busy) >= 2, f"tasks ran in {len(busy)} worker process(es)"


def _tasks_per_child(stack: Stack) -> list[int]:
    """How many tasks each child of the assignments pool has been sent so far."""
    replies = stack.app.control.inspect(timeout=2).stats() or {}
    for name, stats in replies.items():
        if name.startswith("assignments"):
            return [int(part) for part in stats["pool"]["writes"].get("raw", "").split(", ") if part.isdigit()]
    return []
