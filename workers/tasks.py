"""The callqueue tasks: validate the arguments, call the store, shape the result.

Every task has a stable ``callqueue.*`` name and takes and returns JSON only,
so any service can call it with ``send_task`` without importing this code.
A refused request returns ``{"status": "rejected", "error": {"code", "message"}}``
and changes nothing; an unreachable MongoDB is retried with backoff and then
fails the task visibly.
"""

from __future__ import annotations

import functools
import inspect
import time
from typing import Any, Callable

from celery import Task

from workers.app import BATCH_QUEUE, app
from workers.assignments import AssignmentStore, NewStudent
from workers.eventlog import log_event
from workers.exceptions import InfrastructureError, MissingArgument, Rejected
from workers.mongo import get_database
from workers.validation import (
    optional_id, require_document, require_id, require_int, require_list, require_text, require_token,
)

Result = dict[str, Any]
RESERVED_ROW_KEYS = ("student_id", "priority", "position")


def callqueue_task(name: str, **options: Any) -> Callable[[Callable[..., Result]], Task]:
    """Register ``body`` as task ``name``, turning bad calls into ``rejected`` results.

    The wrapper binds the caller's arguments to ``body``'s signature itself, so
    missing or unknown arguments are a rejection, not a crashed task.
    ``InfrastructureError`` is retried with exponential backoff, then raised.
    """
    settings = app.settings

    def register(body: Callable[..., Result]) -> Task:
        signature = inspect.signature(body)

        @app.task(name=name, bind=True, typing=False, autoretry_for=(InfrastructureError,),
                  retry_backoff=True, retry_backoff_max=settings.task_retry_backoff_max_seconds,
                  retry_jitter=True, max_retries=settings.task_max_retries, **options)
        @functools.wraps(body)
        def run(self: Task, *args: Any, **kwargs: Any) -> Result:
            started = time.perf_counter()
            try:
                bound = signature.bind(*args, **kwargs)
            except TypeError as exc:
                return _rejected(name, self, MissingArgument(f"{name}: {exc}"), started)
            try:
                return body(*bound.args, **bound.kwargs)
            except Rejected as exc:
                return _rejected(name, self, exc, started, **_ids(bound.arguments))

        return run

    return register


def _rejected(name: str, task: Task, exc: Rejected, started: float, **fields: Any) -> Result:
    log_event("rejected", task=name, code=exc.code, request_id=task.request.id,
              duration_ms=_ms(started), **fields)
    return {"status": "rejected", "error": exc.to_error()}


def _ids(arguments: dict[str, Any]) -> dict[str, Any]:
    """Loggable identifiers from the arguments (plain strings only)."""
    keys = ("call_session_id", "assistant_id", "student_id")
    return {key: arguments[key] for key in keys if isinstance(arguments.get(key), str)}


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


def _store() -> AssignmentStore:
    return AssignmentStore(get_database(app.settings))


def _current_request_id() -> str:
    return str(app.current_worker_task.request.id)


def _limit() -> int:
    return app.settings.max_id_length


@callqueue_task("callqueue.assign_next_student", acks_late=True, reject_on_worker_lost=True)
def assign_next_student(call_session_id: str, assistant_id: str, request_id: str | None = None) -> Result:
    """Hand the assistant one student (or the one they hold already).

    Without a ``request_id`` the task id stands in for it, so a redelivered
    message is recognised as the same request and never claims twice.
    """
    started = time.perf_counter()
    session_id = require_id("call_session_id", call_session_id, _limit())
    assistant = require_id("assistant_id", assistant_id, _limit())
    request = optional_id("request_id", request_id, _limit()) or _current_request_id()
    store = _store()
    assignment = store.assign_next(store.open_session(session_id), assistant, request)
    if assignment is None:
        log_event("exhausted", session=session_id, assistant=assistant, request_id=request,
                  duration_ms=_ms(started))
        return {"status": "exhausted", "call_session_id": session_id}
    log_event("claimed", session=session_id, assistant=assistant, student=assignment.student_id,
              token=assignment.assignment_token, request_id=request,
              already_held=assignment.already_held, duration_ms=_ms(started))
    return assignment.to_result()


@callqueue_task("callqueue.complete_student", acks_late=True, reject_on_worker_lost=True)
def complete_student(call_session_id: str, student_id: str, assistant_id: str, outcome: str,
                     assignment_token: int) -> Result:
    """Record the outcome of a call; only the current holder with the current token may."""
    started = time.perf_counter()
    session_id = require_id("call_session_id", call_session_id, _limit())
    student = require_id("student_id", student_id, _limit())
    assistant = require_id("assistant_id", assistant_id, _limit())
    result = require_id("outcome", outcome, _limit())
    token = require_token("assignment_token", assignment_token)
    state = _store().complete(session_id, student, assistant, token, result, _current_request_id())
    log_event("completed", session=session_id, assistant=assistant, student=student, token=token,
              outcome=result, request_id=_current_request_id(), duration_ms=_ms(started))
    return state.to_result("completed")


@callqueue_task("callqueue.release_student", acks_late=True, reject_on_worker_lost=True)
def release_student(call_session_id: str, student_id: str, assistant_id: str, assignment_token: int) -> Result:
    """The holder gives the student back to the pool."""
    started = time.perf_counter()
    session_id = require_id("call_session_id", call_session_id, _limit())
    student = require_id("student_id", student_id, _limit())
    assistant = require_id("assistant_id", assistant_id, _limit())
    token = require_token("assignment_token", assignment_token)
    state = _store().release(session_id, student, assistant, token, _current_request_id())
    log_event("released", session=session_id, assistant=assistant, student=student, token=token,
              request_id=_current_request_id(), duration_ms=_ms(started))
    return state.to_result("released")


@callqueue_task("callqueue.session_stats")
def session_stats(call_session_id: str) -> Result:
    """Pending, assigned and completed counts, and the assistants holding a student."""
    session_id = require_id("call_session_id", call_session_id, _limit())
    store = _store()
    return store.stats(store.require_session(session_id)).to_result()


@callqueue_task("callqueue.import_students", queue=BATCH_QUEUE, acks_late=True, reject_on_worker_lost=True)
def import_students(call_session_id: str, students: list, session_name: str | None = None) -> Result:
    """Create the session if needed and add the students; running it again adds nothing."""
    started = time.perf_counter()
    session_id = require_id("call_session_id", call_session_id, _limit())
    name = None if session_name is None else require_text("session_name", session_name, _limit())
    rows = [_new_student(index, item) for index, item in
            enumerate(require_list("students", students, app.settings.max_import_students))]
    summary = _store().import_students(session_id, name, rows, app.settings.import_chunk_size)
    log_event("imported", session=session_id, received=summary.received, inserted=summary.inserted,
              duration_ms=_ms(started))
    return summary.to_result()


def _new_student(index: int, item: Any) -> NewStudent:
    """One import row: ``student_id``, ``priority`` and ``position`` are ours, the rest is the student."""
    label = f"students[{index}]"
    row = require_document(label, item, app.settings.max_student_bytes)
    student = {key: value for key, value in row.items() if key not in RESERVED_ROW_KEYS}
    return NewStudent(
        student=student,
        priority=require_int(f"{label}.priority", row.get("priority", 0)),
        position=None if row.get("position") is None else require_int(f"{label}.position", row["position"], 0),
        key=optional_id(f"{label}.student_id", row.get("student_id"), _limit()),
    )
