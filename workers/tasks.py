"""The callqueue tasks: validate the arguments, call the store, shape the result.

Every task has a stable ``callqueue.*`` name and takes and returns JSON only,
so any service can call it with ``send_task`` without importing this code.
A refused request returns ``{"status": "rejected", "error": {"code", "message"}}``
and changes nothing; an unreachable MongoDB is retried with backoff and then
fails the task visibly.
"""

from __future__ import annotations

import inspect
import time
from typing import Any, Callable

from celery import Task

from callqueue.workers import calling_tasks  # noqa: F401 - registers the calling-hours and do-not-call tasks too
from callqueue.workers.app import BATCH_QUEUE, app
from callqueue.workers.eventlog import log_event
from callqueue.workers.exceptions import InvalidArgument, Rejected
from callqueue.workers.figures import start_of_day
from callqueue.workers.hours import zone_key
from callqueue.workers.models import BatchItem
from callqueue.workers.store import NewStudent, plan_for, utcnow
from callqueue.workers.task_base import (
    Result, callqueue_task, current_request_id, elapsed_ms, holder_arguments, id_limit, open_sessions, report,
    student_id_limit, task_store,
)
from callqueue.workers.validation import (
    e164, number_zones, optional_callback, optional_id, require_allowed_outcome, require_document, require_id,
    require_ids, require_int, require_list, require_outcome_list, require_phone, require_retry_rules, require_text,
    require_token, require_zone,
)

RESERVED_ROW_KEYS = ("student_id", "priority", "position")


@callqueue_task("callqueue.assign_next_student", acks_late=True, reject_on_worker_lost=True)
def assign_next_student(call_session_id: str, assistant_id: str, request_id: str | None = None,
                        skills: list | None = None) -> Result:
    """Hand the assistant one student (or the one they hold already).

    Without a ``request_id`` the task id stands in for it, so a redelivered
    message is recognised as the same request and never claims twice.
    ``skills`` (routing tags) widen the press from untagged students to
    students tagged with one of them; a due personal callback comes first.
    """
    started = time.perf_counter()
    session_id = require_id("call_session_id", call_session_id, id_limit())
    assistant = require_id("assistant_id", assistant_id, id_limit())
    request = optional_id("request_id", request_id, id_limit()) or current_request_id()
    tags = () if skills is None else require_ids("skills", skills, id_limit(), app.settings.max_skills)
    store = task_store()
    assignment = store.assign_next(open_sessions.open_session(store, session_id), assistant, request,
                                   skills=tags)
    if assignment is None:
        session = store.open_session(session_id)  # read afresh: a session closed meanwhile is refused as closed
        exhausted = store.why_exhausted(session, assistant, tags)
        report("exhausted", session=session_id, assistant=assistant, request_id=request, reason=exhausted.reason,
               duration_ms=elapsed_ms(started))
        return exhausted.to_result()
    report("claimed", session=session_id, assistant=assistant, student=assignment.student_id,
           token=assignment.assignment_token, request_id=request,
           already_held=assignment.already_held, duration_ms=elapsed_ms(started))
    return assignment.to_result()


@callqueue_task("callqueue.complete_student", acks_late=True, reject_on_worker_lost=True)
def complete_student(call_session_id: str, student_id: str, assistant_id: str, outcome: str,
                     assignment_token: int, callback_at: str | None = None,
                     callback_assistant: str | None = None) -> Result:
    """Record the outcome of a call; only the current holder with the current token may.

    The session's retry rule for the outcome may schedule another attempt;
    ``callback_at`` schedules a callback (for ``callback_assistant`` first,
    if given). The answer says which: ``next`` is ``final``, ``retry`` or
    ``callback``. A session with a list of outcomes refuses any other.
    """
    started = time.perf_counter()
    session_id, student, assistant, token = holder_arguments(call_session_id, student_id, assistant_id,
                                                              assignment_token)
    result = require_id("outcome", outcome, id_limit())
    callback = optional_callback("", callback_at, callback_assistant, id_limit(),
                                 app.settings.max_schedule_ahead_seconds)
    request = current_request_id()
    store = task_store()
    session = open_sessions.known_session(store, session_id)
    if session is not None:
        require_allowed_outcome("outcome", result, session.allowed_outcomes)
    plan = plan_for(session, result, callback, app.settings.callback_grace_seconds)
    completion = store.complete(session_id, student, assistant, token, plan, request)
    report("completed", session=session_id, assistant=assistant, student=student, token=token,
           outcome=result, attempt=completion.attempt, next=completion.next, request_id=request,
           duration_ms=elapsed_ms(started), also_count=(f"completed_{completion.next}",))
    return completion.to_result()


@callqueue_task("callqueue.complete_and_next", acks_late=True, reject_on_worker_lost=True)
def complete_and_next(call_session_id: str, student_id: str, assistant_id: str, outcome: str,
                      assignment_token: int, callback_at: str | None = None, callback_assistant: str | None = None,
                      request_id: str | None = None, skills: list | None = None) -> Result:
    """Record the call's outcome and hand the assistant the next student, in one request.

    Two atomic steps, each exactly what its own task does: the completion of
    ``complete_student`` and, only once it succeeded (or was an exact repeat),
    the claim of ``assign_next_student`` under ``request_id`` (without one,
    the task id). A refused completion is the answer, and nothing is claimed;
    a refused claim is the ``next`` answer beside the completion. Sent again
    (a retry, or a redelivery after a worker died between the two steps), the
    completion is recognised as a repeat and the request id finds the student
    it claimed, so the answer is the same pair and no second student is claimed.
    """
    started = time.perf_counter()
    request = optional_id("request_id", request_id, id_limit()) or current_request_id()
    if skills is not None:
        require_ids("skills", skills, id_limit(), app.settings.max_skills)  # refused before anything is written
    completion = _body(complete_student)(call_session_id, student_id, assistant_id, outcome, assignment_token,
                                         callback_at, callback_assistant)
    session = completion["call_session_id"]
    try:
        following = _body(assign_next_student)(call_session_id, assistant_id, request, skills)
    except Rejected as exc:
        report("rejected", code=exc.code, task="callqueue.complete_and_next", request_id=request, session=session,
               assistant=assistant_id)
        following = {"status": "rejected", "error": exc.to_error()}
    log_event("completed_and_next", session=session, assistant=assistant_id, student=completion["student_id"],
              token=completion["assignment_token"], request_id=request, next=following["status"],
              next_student=following.get("student_id"), next_token=following.get("assignment_token"),
              next_code=following.get("error", {}).get("code"), duration_ms=elapsed_ms(started))
    return {"status": "completed_and_next", "call_session_id": session, "completion": completion,
            "next": following}


def _body(task: Task) -> Callable[..., Result]:
    """A task's own function, which raises its rejections (the task answers them): to run two tasks as one."""
    return inspect.unwrap(task.run)


@callqueue_task("callqueue.release_student", acks_late=True, reject_on_worker_lost=True)
def release_student(call_session_id: str, student_id: str, assistant_id: str, assignment_token: int) -> Result:
    """The holder gives the student back to the pool."""
    started = time.perf_counter()
    session_id, student, assistant, token = holder_arguments(call_session_id, student_id, assistant_id,
                                                              assignment_token)
    request = current_request_id()
    state = task_store().release(session_id, student, assistant, token, request)
    report("released", session=session_id, assistant=assistant, student=student, token=token,
           request_id=request, duration_ms=elapsed_ms(started))
    return state.to_result("released")


@callqueue_task("callqueue.session_stats")
def session_stats(call_session_id: str) -> Result:
    """Pending, assigned and completed counts, and the assistants holding a student."""
    session_id = require_id("call_session_id", call_session_id, id_limit())
    store = task_store()
    return store.stats(store.require_session(session_id)).to_result()


@callqueue_task("callqueue.assistant_stats")
def assistant_stats(call_session_id: str) -> Result:
    """Per assistant of the session: the student held now, calls in the last hour and today, today's outcomes,
    and the average time from claim to completion (the figures of the dashboard's session page)."""
    session_id = require_id("call_session_id", call_session_id, id_limit())
    store = task_store()
    store.require_session(session_id)
    now = utcnow()
    day_start = start_of_day(now, app.settings.stats_time_zone)
    day = store.day_activity(session_id, day_start, now)
    return {"status": "ok", "call_session_id": session_id, "as_of": now.isoformat(),
            "day_started_at": day_start.isoformat(), "time_zone": app.settings.stats_time_zone,
            "assistants": [figures.to_result() for figures in day.assistants]}


@callqueue_task("callqueue.import_students", queue=BATCH_QUEUE, acks_late=True, reject_on_worker_lost=True)
def import_students(call_session_id: str, students: list, session_name: str | None = None,
                    route_by: str | None = None, zone_by: str | None = None, phone_by: str | None = None) -> Result:
    """Create the session if needed and add the students; running it again adds nothing.

    ``route_by`` names the column whose value is each student's routing tag
    (for example ``language``); a student without one is untagged.
    ``zone_by`` names a column holding the student's IANA time zone and
    ``phone_by`` one holding its phone number in international form: the
    zone comes from the zone column, else from the number (phonenumbers'
    data; a number in several zones is called where all of them are open),
    else it is unknown. Rows whose number or id is on a do-not-call list are
    skipped and counted in ``suppressed``.
    """
    started = time.perf_counter()
    session_id = require_id("call_session_id", call_session_id, id_limit())
    name = None if session_name is None else require_text("session_name", session_name, id_limit())
    columns = {label: _column(label, value) for label, value in
               (("route_by", route_by), ("zone_by", zone_by), ("phone_by", phone_by))}
    rows = [_new_student(index, item, columns["route_by"], columns["zone_by"], columns["phone_by"])
            for index, item in enumerate(require_list("students", students, app.settings.max_import_students))]
    summary = task_store().import_students(session_id, name, rows, app.settings.import_chunk_size)
    report("imported", session=session_id, received=summary.received, inserted=summary.inserted,
           suppressed=summary.suppressed, duration_ms=elapsed_ms(started))
    return summary.to_result()


def _column(label: str, value: Any) -> str | None:
    """A column name given to the import (``route_by``, ``zone_by``, ``phone_by``): an id, not one of ours."""
    column = optional_id(label, value, id_limit())
    if column in RESERVED_ROW_KEYS:
        raise InvalidArgument(f"{label} must name a column of the student, not {column!r}", argument=label)
    return column


def _new_student(index: int, item: Any, route_by: str | None = None, zone_by: str | None = None,
                 phone_by: str | None = None) -> NewStudent:
    """One import row: ``student_id``, ``priority`` and ``position`` are ours, the rest is the student.

    The ``route_by`` column (kept in the student) gives the routing tag; empty or missing is untagged.
    The ``zone_by`` and ``phone_by`` columns (kept too) give the zone key and the E.164 number.
    """
    label = f"students[{index}]"
    row = require_document(label, item, app.settings.max_student_bytes)
    student = {key: value for key, value in row.items() if key not in RESERVED_ROW_KEYS}
    tag = _cell(row, route_by)
    zone, phone = _cell(row, zone_by), _cell(row, phone_by)
    number = None if phone is None else require_phone(f"{label}.{phone_by}", phone)
    zones = (require_zone(f"{label}.{zone_by}", zone),) if zone is not None else (
        number_zones(number) if number is not None else ())
    return NewStudent(
        student=student,
        priority=require_int(f"{label}.priority", row.get("priority", 0)),
        position=None if row.get("position") is None else require_int(f"{label}.position", row["position"], 0),
        key=optional_id(f"{label}.student_id", row.get("student_id"), id_limit()),
        route=optional_id(f"{label}.{route_by}", tag, id_limit()) or "",
        zone=zone_key(zones),
        phone=None if number is None else e164(number),
    )


def _cell(row: dict[str, Any], column: str | None) -> Any:
    """The row's value in ``column``; None for no column, a missing cell, null or empty."""
    return None if column is None or row.get(column) in (None, "") else row[column]


@callqueue_task("callqueue.set_lease")
def set_lease(call_session_id: str, lease_seconds: int | None) -> Result:
    """Set (or with null, remove) the session's lease length for claims from now on."""
    session_id = require_id("call_session_id", call_session_id, id_limit())
    lease = None if lease_seconds is None else require_int("lease_seconds", lease_seconds, 1,
                                                           app.settings.max_lease_seconds)
    session = task_store().set_lease(session_id, lease)
    return {"status": "ok", "call_session_id": session.id, "lease_seconds": session.lease_seconds}


@callqueue_task("callqueue.heartbeat", acks_late=True, reject_on_worker_lost=True)
def heartbeat(call_session_id: str, student_id: str, assistant_id: str, assignment_token: int) -> Result:
    """The holder renews its lease on the student."""
    started = time.perf_counter()
    session_id, student, assistant, token = holder_arguments(call_session_id, student_id, assistant_id,
                                                              assignment_token)
    store = task_store()
    state = store.heartbeat(store.require_session(session_id), student, assistant, token)
    report("heartbeat", session=session_id, assistant=assistant, student=student, token=token,
           duration_ms=elapsed_ms(started))
    return state.to_result("renewed")


# Beat's periodic jobs send no task events (nor, from beat, task-sent events: workers.app.quiet_beat), so that
# Flower's task list shows the calls people make, not a promotion every few seconds; their work is logged and
# counted (``reclaimed``, ``promoted``), and a failure is logged by the worker as any task's.
@callqueue_task("callqueue.reclaim_expired", acks_late=True, reject_on_worker_lost=True, send_events=False)
def reclaim_expired() -> Result:
    """Return every student whose lease ran out to the pool (run by beat)."""
    return _beat_job_result("reclaimed", task_store().reclaim_expired())


@callqueue_task("callqueue.promote_due", acks_late=True, reject_on_worker_lost=True, send_events=False)
def promote_due() -> Result:
    """Return students whose callback, retry or window time has come to the pool, and move students whose
    calling-hours window is about to close out of it (run by beat)."""
    return _beat_job_result("promoted", task_store().promote_due())


def _beat_job_result(event: str, count: int) -> Result:
    """Count what a scheduled job moved (when it moved anything) and answer ``{"status": "ok", event: count}``."""
    if count:
        report(event, amount=count, count=count)
    return {"status": "ok", event: count}


@callqueue_task("callqueue.set_campaign")
def set_campaign(call_session_id: str, retry_rules: dict | None = None,
                 callback_grace_seconds: int | None = None, allowed_outcomes: list | None = None) -> Result:
    """Set the session's retry rules by outcome, its personal-callback grace period and/or its outcomes.

    ``retry_rules`` replaces all rules (``{}`` removes them), for example
    ``{"no_answer": {"delay_seconds": 7200, "max_attempts": 3}}``;
    ``allowed_outcomes`` (``["reached", "no_answer"]``) makes completions
    with any other outcome refused (``[]`` allows any again); an argument
    left out (or null) keeps what the session has.
    """
    session_id = require_id("call_session_id", call_session_id, id_limit())
    rules = None if retry_rules is None else require_retry_rules(
        retry_rules, id_limit(), app.settings.max_retry_rules, app.settings.max_schedule_ahead_seconds,
        app.settings.max_attempts_limit)
    grace = None if callback_grace_seconds is None else require_int(
        "callback_grace_seconds", callback_grace_seconds, 0, app.settings.max_schedule_ahead_seconds)
    outcomes = None if allowed_outcomes is None else require_outcome_list(
        allowed_outcomes, id_limit(), app.settings.max_outcomes)
    session = task_store().set_campaign(session_id, rules, grace, outcomes)
    report("campaign_set", session=session_id, rules=len(session.retry_rules))
    return session.campaign_result(app.settings.callback_grace_seconds)


@callqueue_task("callqueue.release_assistant", acks_late=True, reject_on_worker_lost=True)
def release_assistant(call_session_id: str, assistant_id: str) -> Result:
    """An assistant logging off gives back what they hold in the session."""
    session_id = require_id("call_session_id", call_session_id, id_limit())
    assistant = require_id("assistant_id", assistant_id, id_limit())
    released = task_store().release_assistant(session_id, assistant, current_request_id())
    report("assistant_released", amount=released, count=released, session=session_id, assistant=assistant)
    return {"status": "ok", "call_session_id": session_id, "assistant_id": assistant, "released": released}


@callqueue_task("callqueue.complete_batch", queue=BATCH_QUEUE, acks_late=True, reject_on_worker_lost=True)
def complete_batch(items: list) -> Result:
    """Many completions in one job, with bulk writes; a result per item; safe to run again."""
    started = time.perf_counter()
    checked = require_list("items", items, app.settings.max_batch_items)
    valid, refused = _batch_items(checked)
    def progress(done: int, _valid_total: int) -> None:
        _report_progress(done + len(refused), len(checked))

    done = task_store().complete_batch(valid, current_request_id(), progress, app.settings.batch_chunk_size,
                                   app.settings.batch_pause_seconds, app.settings.callback_grace_seconds)
    results = sorted(done + refused, key=lambda result: result["index"])
    counts = {status: sum(1 for r in results if r["status"] == status) for status in ("completed", "rejected")}
    unchanged = sum(1 for r in results if r.get("unchanged"))
    report("batch_completed", total=len(results), duration_ms=elapsed_ms(started), unchanged=unchanged, **counts)
    return {"status": "done", "total": len(results), **counts, "unchanged": unchanged, "items": results}


@callqueue_task("callqueue.close_session", queue=BATCH_QUEUE, acks_late=True, reject_on_worker_lost=True)
def close_session(call_session_id: str, outcome: str = "session_closed", force: bool = False) -> Result:
    """Close the session: no more claims, pending students get ``outcome``; held ones too if ``force``."""
    session_id = require_id("call_session_id", call_session_id, id_limit())
    result = require_id("outcome", outcome, id_limit())
    if not isinstance(force, bool):
        raise InvalidArgument("force must be true or false", argument="force")
    summary = task_store().close_session(session_id, result, force, current_request_id(), _report_progress)
    report("session_closed", session=session_id, outcome=result, force=force, **summary)
    return {"status": "closed", **summary}


@callqueue_task("callqueue.reopen_session", queue=BATCH_QUEUE, acks_late=True, reject_on_worker_lost=True)
def reopen_session(call_session_id: str) -> Result:
    """Open a closed session again; students it closed return to the pool."""
    session_id = require_id("call_session_id", call_session_id, id_limit())
    summary = task_store().reopen_session(session_id, current_request_id())
    report("session_reopened", session=session_id, **summary)
    return {"status": "open", **summary}


def _report_progress(done: int, total: int) -> None:
    """Publish ``PROGRESS`` with done/total so callers and Flower can follow a job."""
    app.current_worker_task.update_state(state="PROGRESS", meta={"done": done, "total": total})


def _batch_items(items: list) -> tuple[list[BatchItem], list[Result]]:
    """Split the job's items into valid ones and per-item rejections."""
    valid: list[BatchItem] = []
    refused: list[Result] = []
    for index, item in enumerate(items):
        try:
            valid.append(_batch_item(index, item))
        except Rejected as exc:
            refused.append({"index": index, "status": "rejected", "error": exc.to_error()})
    return valid, refused


def _batch_item(index: int, item: Any) -> BatchItem:
    label = f"items[{index}]"
    if not isinstance(item, dict):
        raise InvalidArgument(f"{label} must be an object")
    unknown = set(item) - {"call_session_id", "student_id", "outcome", "assistant_id", "assignment_token",
                           "callback_at", "callback_assistant"}
    if unknown:
        raise InvalidArgument(f"{label} has unknown fields {sorted(map(str, unknown))}")
    assistant = optional_id(f"{label}.assistant_id", item.get("assistant_id"), id_limit())
    token = item.get("assignment_token")
    if (assistant is None) != (token is None):
        raise InvalidArgument(f"{label}: give both assistant_id and assignment_token, or neither")
    return BatchItem(
        index=index,
        call_session_id=require_id(f"{label}.call_session_id", item.get("call_session_id"), id_limit()),
        student_id=require_id(f"{label}.student_id", item.get("student_id"), student_id_limit()),
        outcome=require_id(f"{label}.outcome", item.get("outcome"), id_limit()),
        assistant_id=assistant,
        assignment_token=None if token is None else require_token(f"{label}.assignment_token", token),
        callback=optional_callback(f"{label}.", item.get("callback_at"), item.get("callback_assistant"), id_limit(),
                                   app.settings.max_schedule_ahead_seconds),
    )
