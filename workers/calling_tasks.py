"""The tasks of calling hours and do-not-call lists (registered by ``workers.tasks``).

All four run on the ``batch`` queue: each may move or end many students.
Like every callqueue task they validate, call the store and shape the answer.
"""

from __future__ import annotations

from typing import Any

from callqueue.workers.app import BATCH_QUEUE, app
from callqueue.workers.exceptions import InvalidArgument, TooLarge
from callqueue.workers.student_ids import handed_out_id, session_prefix
from callqueue.workers.task_base import (
    Result, callqueue_task, current_request_id, id_limit, report, student_id_limit, task_store,
)
from callqueue.workers.validation import (
    optional_id, require_calling_hours, require_id, require_ids, require_int, require_phones,
)


@callqueue_task("callqueue.set_calling_hours", queue=BATCH_QUEUE, acks_late=True, reject_on_worker_lost=True)
def set_calling_hours(call_session_id: str, calling_hours: dict | None) -> Result:
    """Set (or with null, remove) the session's calling hours; every student is placed by them at once.

    For example ``{"days": {"mon": ["09:00-20:00"], "sat": ["10:00-16:00"]}, "holidays": ["2026-12-25"],
    "default_zone": "America/New_York"}``: see ``workers.hours`` and ``workers.store.windows``.
    """
    session_id = require_id("call_session_id", call_session_id, id_limit())
    hours = None if calling_hours is None else require_calling_hours(
        calling_hours, app.settings.max_ranges_per_day, app.settings.max_holidays)
    session = task_store().set_calling_hours(session_id, hours)
    report("calling_hours_set", session=session_id, removed=hours is None)
    return session.hours_result()


@callqueue_task("callqueue.suppress", queue=BATCH_QUEUE, acks_late=True, reject_on_worker_lost=True)
def suppress(call_session_id: str | None = None, numbers: list | None = None,
             student_ids: list | None = None) -> Result:
    """Put phone numbers and student ids on a do-not-call list (the session's, or with no session every session's).

    Pending and scheduled students they name take ``do_not_call`` at once; a
    held one stays with its assistant and its completion is final. From the
    answer on none of them is handed out. Running it again changes nothing.
    """
    session_id, phones, ids = _entries(call_session_id, numbers, student_ids)
    summary = task_store().suppress(session_id, phones, ids, current_request_id())
    report("suppressed", amount=summary.do_not_call, session=session_id, added=summary.added,
           do_not_call=summary.do_not_call, still_held=summary.still_held)
    return summary.to_result("suppressed")


@callqueue_task("callqueue.unsuppress", queue=BATCH_QUEUE, acks_late=True, reject_on_worker_lost=True)
def unsuppress(call_session_id: str | None = None, numbers: list | None = None,
               student_ids: list | None = None) -> Result:
    """Take entries off a do-not-call list: later imports no longer skip them (``do_not_call`` stays final)."""
    session_id, phones, ids = _entries(call_session_id, numbers, student_ids)
    summary = task_store().unsuppress(session_id, phones, ids)
    report("unsuppressed", session=session_id, removed=summary.removed)
    return summary.to_result("unsuppressed")


@callqueue_task("callqueue.list_suppressed", queue=BATCH_QUEUE)
def list_suppressed(call_session_id: str | None = None, after: str | None = None, limit: int = 100) -> Result:
    """One page of a do-not-call list (the session's, or with no session the list for every session).

    ``after`` is the previous page's ``next``; ``next`` is null on the last page.
    """
    session_id = None if call_session_id is None else require_id("call_session_id", call_session_id, id_limit())
    cursor = None if after is None else optional_id("after", after, student_id_limit() + 16)
    page = require_int("limit", limit, 1, app.settings.max_suppression_page)
    return task_store().list_suppressed(session_id, cursor, page)


def _entries(call_session_id: Any, numbers: Any, student_ids: Any) -> tuple[str | None, tuple[str, ...],
                                                                              tuple[str, ...]]:
    """The scope and the entries of a suppress/unsuppress call, checked.

    Numbers are normalised to E.164; student ids are ids as handed out, and
    need their session (``call_session_id``). At most
    ``CALLQUEUE_MAX_SUPPRESSION_ENTRIES`` entries in all, and at least one.
    """
    session_id = None if call_session_id is None else require_id("call_session_id", call_session_id, id_limit())
    limit = app.settings.max_suppression_entries
    phones = () if numbers is None else require_phones("numbers", numbers, limit)
    ids = () if student_ids is None else require_ids("student_ids", student_ids, student_id_limit(), limit)
    if len(phones) + len(ids) > limit:
        raise TooLarge(f"numbers and student_ids have more than {limit} entries together", argument="numbers")
    if not phones and not ids:
        raise InvalidArgument("give at least one phone number (numbers) or student id (student_ids)",
                              argument="numbers")
    if ids and session_id is None:
        raise InvalidArgument("student_ids need the call_session_id they belong to", argument="student_ids")
    if session_id is not None:  # an import's id stands for the student it named (workers.student_ids)
        ids = tuple(student if student.startswith(session_prefix(session_id)) else handed_out_id(session_id, student)
                    for student in ids)
    return session_id, phones, ids
