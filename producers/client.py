"""``AssignmentClient``: call the callqueue tasks by name and get typed answers.

Each method sends one task with ``send_task`` (JSON only), waits for its
result with a timeout, and either returns a typed result or raises: a
``Rejected`` subclass when the request was refused, ``TaskFailed`` when the
task failed after its retries, ``RequestTimedOut`` when no answer came.

Every request is safe to send again, and the client does so after a timeout
or a broken connection: "Get Next" reuses the same ``request_id``, so a
retried press never claims a second student. Each message also expires after
the client's timeout, so a message delivered after the caller gave up is
discarded instead of claiming a student nobody will call. Once an answer is
read, the client deletes it from the result backend (``AsyncResult.forget``),
so Redis does not hold it for ``CALLQUEUE_RESULT_EXPIRES_SECONDS``.

A client holds its own Celery app and connections: give each thread its own
client (they are cheap) rather than sharing one across threads.
"""

from __future__ import annotations

import time
import uuid
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Callable, Iterable, Iterator, Mapping

from celery import states
from celery.exceptions import TimeoutError as CeleryTimeout
from celery.result import AsyncResult
import redis.exceptions
from kombu.exceptions import EncodeError

from callqueue.config import Settings, load_caller_settings
from callqueue.config.redis_urls import redacted_url
from callqueue.producers.results import (
    Assigned, Completed, CompletedAndNext, Exhausted, ImportResult, Press, Stats, StudentUpdate, press_from_result,
)
from callqueue.producers import waiting
from callqueue.workers.app import CallqueueCelery, create_app
from callqueue.workers.exceptions import (
    BrokerUnavailable, FailoverInProgress, InvalidArgument, RequestTimedOut, StoreUnavailable, TaskFailed,
    rejection_from_error,
)

JOB_POLL_SECONDS = 0.2
ProgressCallback = Callable[[int, int], None]
PUBLISH_RETRY_POLICY = {"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 2.0}


class AssignmentClient:
    """Client for the callqueue tasks (one per thread)."""

    def __init__(self, settings: Settings | None = None, timeout_seconds: float | None = None,
                 retries: int | None = None, app: CallqueueCelery | None = None,
                 stop_at_store_outage: bool = False, forget_answers: bool = True) -> None:
        """``stop_at_store_outage``: raise ``StoreUnavailable`` as soon as one wait ends while the workers
        retry the request because MongoDB is unreachable, instead of resending (a person at a terminal
        wants to know at once; a service may rather ride out a short restart). ``forget_answers=False``
        leaves each answer in the result backend until it expires, as a stock Celery caller does."""
        self.settings = settings or load_caller_settings()
        self.app = app or create_app(self.settings, include_tasks=False)
        self.timeout_seconds = timeout_seconds or self.settings.client_timeout_seconds
        self.retries = self.settings.client_retries if retries is None else retries
        self.stop_at_store_outage = stop_at_store_outage
        self.forget_answers = forget_answers

    def __enter__(self) -> "AssignmentClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release this client's broker and backend connections."""
        self.app.close()

    # -- the task contract ------------------------------------------------

    def assign_next(self, call_session_id: str, assistant_id: str, request_id: str | None = None,
                    skills: Iterable[str] | None = None) -> Assigned | None:
        """The next student for the assistant, or None when the session is exhausted.

        ``skills`` (routing tags) let the press take students tagged with one
        of them as well as untagged ones; a due personal callback comes first.
        """
        request_id = request_id or new_request_id()
        extra = {} if skills is None else {"skills": list(skills)}
        result = self.call("callqueue.assign_next_student", call_session_id=call_session_id,
                           assistant_id=assistant_id, request_id=request_id, **extra)
        return None if result["status"] == "exhausted" else Assigned.from_result(result, request_id)

    def next_student(self, call_session_id: str, assistant_id: str, request_id: str | None = None,
                     skills: Iterable[str] | None = None) -> Press:
        """Like ``assign_next``, but "nobody" is an ``Exhausted`` saying why and when someone could be there."""
        request_id = request_id or new_request_id()
        extra = {} if skills is None else {"skills": list(skills)}
        return press_from_result(self.call("callqueue.assign_next_student", call_session_id=call_session_id,
                                           assistant_id=assistant_id, request_id=request_id, **extra), request_id)

    def wait_for_next(self, call_session_id: str, assistant_id: str, skills: Iterable[str] | None = None,
                      max_wait_seconds: float = 60.0, after: Exhausted | None = None,
                      request_id: str | None = None) -> Press:
        """The next student, waiting up to ``max_wait_seconds`` for one while students are scheduled or held.

        Sleeps until the ``next_due_at`` of the last ``Exhausted`` answer
        (``after``, or this method's own first press) and presses again; once
        that time has passed it sends ``promote_due`` itself, once per due
        time, rather than wait for beat (``producers.waiting``). Returns the
        student, or the last ``Exhausted`` as soon as nobody is left for this
        press, nothing can come within the bound, or the time is up. All
        presses of one wait share one ``request_id``, so a press whose answer
        was lost is found again, never doubled.
        """
        return waiting.wait_for_next(self, call_session_id, assistant_id, request_id or new_request_id(),
                             None if skills is None else list(skills), max_wait_seconds, after)

    def complete(self, call_session_id: str, student_id: str, assistant_id: str, outcome: str,
                 assignment_token: int, callback_at: datetime | str | None = None,
                 callback_assistant: str | None = None) -> Completed:
        """Record the outcome of the call with this student.

        ``callback_at`` (a datetime with a time zone, or an ISO-8601 string)
        asks for a callback then, reserved for ``callback_assistant`` if given.
        The answer says whether the outcome is final or the student will be
        called again (``next``: ``final``, ``retry`` or ``callback``).
        """
        return Completed.from_result(self.call(
            "callqueue.complete_student", call_session_id=call_session_id, student_id=student_id,
            assistant_id=assistant_id, outcome=outcome, assignment_token=assignment_token,
            **_callback(callback_at, callback_assistant)))

    def complete_and_next(self, call_session_id: str, student_id: str, assistant_id: str, outcome: str,
                          assignment_token: int, callback_at: datetime | str | None = None,
                          callback_assistant: str | None = None, request_id: str | None = None,
                          skills: Iterable[str] | None = None) -> CompletedAndNext:
        """Record the call's outcome and get the next student, in one round trip ("save and next").

        The completion is that of ``complete``; the press that follows it,
        made only once the completion is recorded, is that of ``next_student``.
        A refused completion raises its ``Rejected`` (nothing was claimed); a
        refused press is the answer's ``next``. Resent after a timeout with
        the same ``request_id``, it gets the same completion and student.
        """
        request_id = request_id or new_request_id()
        extra = {} if skills is None else {"skills": list(skills)}
        return CompletedAndNext.from_result(self.call(
            "callqueue.complete_and_next", call_session_id=call_session_id, student_id=student_id,
            assistant_id=assistant_id, outcome=outcome, assignment_token=assignment_token,
            request_id=request_id, **_callback(callback_at, callback_assistant), **extra), request_id)

    def release(self, call_session_id: str, student_id: str, assistant_id: str,
                assignment_token: int) -> StudentUpdate:
        """Give the student back to the pool."""
        return StudentUpdate.from_result(self.call(
            "callqueue.release_student", call_session_id=call_session_id, student_id=student_id,
            assistant_id=assistant_id, assignment_token=assignment_token))

    def stats(self, call_session_id: str) -> Stats:
        """Pending, assigned and completed counts for the session."""
        return Stats.from_result(self.call("callqueue.session_stats", call_session_id=call_session_id))

    def assistant_stats(self, call_session_id: str) -> dict[str, Any]:
        """Per assistant of the session: the student held now, calls in the last hour and today, today's
        outcomes and the average time from claim to completion (``contract/results/assistant_stats.schema.json``)."""
        return self.call("callqueue.assistant_stats", call_session_id=call_session_id)

    def import_students(self, call_session_id: str, students: Iterable[Mapping[str, Any]],
                        session_name: str | None = None, route_by: str | None = None, zone_by: str | None = None,
                        phone_by: str | None = None) -> ImportResult:
        """Add students to the session (creating it); importing the same rows again adds nothing.

        ``route_by`` names the column holding each student's routing tag,
        ``zone_by`` the one holding its IANA time zone, ``phone_by`` the one
        holding its phone number (its zone when the zone column has none, and
        what the do-not-call lists match). Rows on a do-not-call list are
        skipped (``suppressed``).
        """
        extra = {key: value for key, value in (("route_by", route_by), ("zone_by", zone_by),
                                               ("phone_by", phone_by)) if value is not None}
        return ImportResult.from_result(self.call(
            "callqueue.import_students", call_session_id=call_session_id,
            students=[dict(row) for row in students], session_name=session_name, **extra))

    def heartbeat(self, call_session_id: str, student_id: str, assistant_id: str,
                  assignment_token: int) -> StudentUpdate:
        """Renew the lease on a student you hold."""
        return StudentUpdate.from_result(self.call(
            "callqueue.heartbeat", call_session_id=call_session_id, student_id=student_id,
            assistant_id=assistant_id, assignment_token=assignment_token))

    def release_assistant(self, call_session_id: str, assistant_id: str) -> int:
        """Give back whatever the assistant holds (logging off); how many were released."""
        return int(self.call("callqueue.release_assistant", call_session_id=call_session_id,
                             assistant_id=assistant_id)["released"])

    def set_lease(self, call_session_id: str, lease_seconds: int | None) -> dict[str, Any]:
        """Set the session's lease length (None: no lease)."""
        return self.call("callqueue.set_lease", call_session_id=call_session_id, lease_seconds=lease_seconds)

    def set_campaign(self, call_session_id: str, retry_rules: Mapping[str, Mapping[str, int]] | None = None,
                     callback_grace_seconds: int | None = None,
                     allowed_outcomes: Iterable[str] | None = None) -> dict[str, Any]:
        """Set the session's retry rules, personal-callback grace period and/or allowed outcomes; the
        session's settings.

        ``retry_rules`` (``{outcome: {"delay_seconds": n, "max_attempts": n}}``)
        replaces every rule (``{}`` removes them); ``allowed_outcomes`` makes
        completions with any other outcome refused (``[]`` allows any again);
        None keeps what the session has.
        """
        rules = None if retry_rules is None else {outcome: dict(rule) for outcome, rule in retry_rules.items()}
        extra = {} if allowed_outcomes is None else {"allowed_outcomes": list(allowed_outcomes)}
        return self.call("callqueue.set_campaign", call_session_id=call_session_id, retry_rules=rules,
                         callback_grace_seconds=callback_grace_seconds, **extra)

    def set_calling_hours(self, call_session_id: str, calling_hours: Mapping[str, Any] | None) -> dict[str, Any]:
        """Set the session's calling hours (None removes them); every student is placed by them before the answer.

        ``{"days": {"mon": ["09:00-20:00"], ...}, "holidays": ["2026-12-25"], "default_zone": "America/New_York",
        "unknown_zone": "default_zone", "callbacks_outside_hours": False, "last_call_seconds": 60}``.
        """
        return self.run_job("callqueue.set_calling_hours", None, call_session_id=call_session_id,
                            calling_hours=None if calling_hours is None else dict(calling_hours))

    def suppress(self, numbers: Iterable[str] | None = None, student_ids: Iterable[str] | None = None,
                 call_session_id: str | None = None) -> dict[str, Any]:
        """Put phone numbers and student ids on the do-not-call list of a session (None: of every session)."""
        return self.run_job("callqueue.suppress", None, **_entries(numbers, student_ids, call_session_id))

    def unsuppress(self, numbers: Iterable[str] | None = None, student_ids: Iterable[str] | None = None,
                   call_session_id: str | None = None) -> dict[str, Any]:
        """Take entries off a do-not-call list (later imports no longer skip them)."""
        return self.run_job("callqueue.unsuppress", None, **_entries(numbers, student_ids, call_session_id))

    def list_suppressed(self, call_session_id: str | None = None, after: str | None = None,
                        limit: int = 100) -> dict[str, Any]:
        """One page of a do-not-call list; pass the answer's ``next`` as ``after`` for the next page."""
        return self.run_job("callqueue.list_suppressed", None, call_session_id=call_session_id, after=after,
                            limit=limit)

    def promote_due(self) -> int:
        """Run the promotion now (beat runs it on schedule); how many due students were moved back."""
        return int(self.call("callqueue.promote_due")["promoted"])

    def reclaim_expired(self) -> int:
        """Run the reclaim job now (beat runs it on schedule); how many were reclaimed."""
        return int(self.call("callqueue.reclaim_expired")["reclaimed"])

    def complete_batch(self, items: list[Mapping[str, Any]], on_progress: ProgressCallback | None = None
                       ) -> dict[str, Any]:
        """Complete many students in one batch job; ``on_progress(done, total)`` follows it."""
        return self.run_job("callqueue.complete_batch", on_progress, items=[dict(item) for item in items])

    def close_session(self, call_session_id: str, outcome: str = "session_closed", force: bool = False,
                      on_progress: ProgressCallback | None = None) -> dict[str, Any]:
        """Close the session as a batch job."""
        return self.run_job("callqueue.close_session", on_progress, call_session_id=call_session_id,
                            outcome=outcome, force=force)

    def reopen_session(self, call_session_id: str) -> dict[str, Any]:
        """Open a closed session again."""
        return self.run_job("callqueue.reopen_session", None, call_session_id=call_session_id)

    # -- transport --------------------------------------------------------

    def run_job(self, task_name: str, on_progress: ProgressCallback | None, **kwargs: Any) -> dict[str, Any]:
        """Send a batch job once and follow its ``PROGRESS`` until it ends.

        Jobs are idempotent, but a long job is not resent on timeout: it may
        still be running. ``RequestTimedOut`` then means "look in Flower".
        """
        timeout = self.settings.batch_timeout_seconds
        try:
            with _transport_faults():
                message = self.app.send_task(task_name, kwargs=kwargs, expires=timeout,
                                             retry=True, retry_policy=PUBLISH_RETRY_POLICY)
            result = _follow(message, on_progress or (lambda done, total: None), timeout, self.forget_answers)
        except _TransportFault as exc:
            raise self._redis_unreachable(task_name, exc) from exc
        return self._answer(task_name, result)

    def call(self, task_name: str, **kwargs: Any) -> dict[str, Any]:
        """Send ``task_name`` and return its result, resending the same request on timeout.

        Raises the typed rejection for a ``rejected`` result.
        """
        return self._answer(task_name, self._call_with_retries(task_name, kwargs))

    def _answer(self, task_name: str, result: dict[str, Any]) -> dict[str, Any]:
        """The one place every task's answer passes through: a rejection raises, anything else is returned.

        The tests check each answer here against ``contract/``.
        """
        return _raise_if_rejected(result)

    def _call_with_retries(self, task_name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Up to ``retries`` resends after a timeout; a broken connection is retried with a fresh app
        for as long as the outage stays within the client timeout, then ``BrokerUnavailable``."""
        outage_started: float | None = None
        for attempt in range(self.retries + 1):
            started = time.monotonic()
            try:
                answer = self._call_once(task_name, kwargs)
            except _StoreOutage as outage:
                if self.stop_at_store_outage or attempt == self.retries:
                    raise StoreUnavailable(str(outage)) from outage
                answer = None
            except _TransportFault as exc:
                outage_started = started if outage_started is None else outage_started
                backoff = min(0.5 * 2 ** attempt, 5.0)
                if attempt == self.retries or (
                        2 * time.monotonic() - started + backoff > outage_started + self.timeout_seconds):
                    raise self._redis_unreachable(task_name, exc) from exc  # another try would end past the timeout
                self._reconnect(backoff)
                continue
            outage_started = None
            if answer is not None:
                return answer
        raise RequestTimedOut(f"{task_name}: no answer after {self.retries + 1} attempts "
                              f"of {self.timeout_seconds:g}s")

    def _reconnect(self, backoff_seconds: float) -> None:
        """Back off, then start over with a fresh app and fresh connections."""
        time.sleep(backoff_seconds)
        self.app.close()
        self.app = create_app(self.settings, include_tasks=False)

    def _redis_unreachable(self, task_name: str, fault: "_TransportFault") -> BrokerUnavailable:
        """What a person can act on: the Redis URLs tried (password masked), why, and what to check."""
        return BrokerUnavailable(
            f"{task_name}: cannot reach Redis ({fault.reason}). Check that redis-server is running at "
            f"{redacted_url(self.settings.broker_url)} (CELERY_BROKER_URL) and "
            f"{redacted_url(self.settings.result_backend)} (CELERY_RESULT_BACKEND), and that these variables "
            "name the callqueue deployment you mean")

    def _call_once(self, task_name: str, kwargs: dict[str, Any]) -> dict[str, Any] | None:
        """One send and wait; None when it timed out or the message expired unrun.

        ``_StoreOutage`` when it timed out while the workers were retrying it
        because MongoDB is unreachable (not a failover, which is short), with
        their reason: the caller resends, or says so (``stop_at_store_outage``,
        or after the last attempt) rather than just "no answer".
        """
        outage: Any = None
        with _transport_faults():
            message = self.app.send_task(task_name, kwargs=kwargs, expires=self.timeout_seconds,
                                         retry=True, retry_policy=PUBLISH_RETRY_POLICY)
            try:
                result = message.get(timeout=self.timeout_seconds, propagate=False, interval=0.05)
            except CeleryTimeout:
                outage = message.info if message.state == states.RETRY else None
                result = None
            finally:
                message.backend.remove_pending_result(message)
        if isinstance(outage, StoreUnavailable) and not isinstance(outage, FailoverInProgress):
            raise _StoreOutage(
                f"{task_name}: no answer within {self.timeout_seconds:g} s: the workers are retrying it because "
                f"{outage}. Check that mongod is running there and the workers' MONGO_URL "
                "(python -m producers health checks every server)")
        if result is None:
            return None
        with _transport_faults():
            state = message.state
        if self.forget_answers:
            _forget(message)
        if state == states.REVOKED:
            return None
        if state == states.FAILURE:
            raise TaskFailed(f"{task_name} failed: {type(result).__name__}: {result}")
        return result


class _StoreOutage(Exception):
    """A wait ended while the workers were retrying the request because MongoDB is unreachable."""


class _TransportFault(Exception):
    """Sending a message or waiting for its result failed inside Celery, kombu or redis-py."""

    @property
    def reason(self) -> str:
        """The connection error at the root of the failure (``Error 111 connecting to host:port. Connection
        refused.``), rather than the wrapper Celery raised around it; never a password."""
        error: BaseException | None = self.__cause__
        root = error
        while error is not None:
            if isinstance(error, (redis.exceptions.ConnectionError, OSError)):
                root = error
            error = error.__cause__ or error.__context__
        return f"{type(root).__name__}: {root}".strip() if root is not None else str(self)


@contextmanager
def _transport_faults() -> Iterator[None]:
    """Turn any failure of the Celery transport into ``_TransportFault``.

    While Redis restarts, Celery's result consumer fails in assorted ways
    (connection errors, RuntimeError once it gives up, AttributeError from a
    half-rebuilt pub/sub); the caller then replaces the app and resends.
    """
    try:
        yield
    except CeleryTimeout:
        raise
    except EncodeError as exc:  # the caller's arguments cannot be written as JSON: their error, not an outage
        raise InvalidArgument(f"arguments cannot be sent as JSON: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - see docstring
        raise _TransportFault(f"{type(exc).__name__}: {exc}") from exc


def _raise_if_rejected(result: dict[str, Any]) -> dict[str, Any]:
    if result.get("status") == "rejected":
        raise rejection_from_error(result.get("error") or {})
    return result


def _follow(message: AsyncResult, on_progress: ProgressCallback, timeout_seconds: float,
            forget: bool = True) -> dict[str, Any]:
    """Poll a job's state, reporting progress, until it is ready or the timeout passes."""
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        with _transport_faults():
            state, info = message.state, message.info
        if state == "PROGRESS" and isinstance(info, dict):
            on_progress(int(info.get("done", 0)), int(info.get("total", 0)))
        elif state in states.READY_STATES:
            if state != states.SUCCESS:
                raise TaskFailed(f"{message.id} ended in {state}: {info}")
            result = message.result
            if forget:
                _forget(message)
            return result
        time.sleep(JOB_POLL_SECONDS)
    raise RequestTimedOut(f"job {message.id} did not finish within {timeout_seconds:g}s")


def _forget(message: AsyncResult) -> None:
    """Delete an answer that has been read from the result backend (it would stay for the result expiry).

    Best effort: the answer is already in hand, and a key left behind by a
    Redis hiccup still expires on its own, so a failure here must not turn
    into a resend.
    """
    try:
        message.forget()
    except Exception:  # noqa: BLE001 - see docstring
        pass


def _callback(callback_at: datetime | str | None, callback_assistant: str | None) -> dict[str, Any]:
    """The callback arguments of a completion, as the tasks take them (only those given)."""
    extra: dict[str, Any] = {}
    if callback_at is not None:
        extra["callback_at"] = iso_moment(callback_at)
    if callback_assistant is not None:
        extra["callback_assistant"] = callback_assistant
    return extra


def _entries(numbers: Iterable[str] | None, student_ids: Iterable[str] | None,
             call_session_id: str | None) -> dict[str, Any]:
    """The arguments of ``suppress``/``unsuppress``: lists, and only those given."""
    return {"call_session_id": call_session_id,
            "numbers": None if numbers is None else list(numbers),
            "student_ids": None if student_ids is None else list(student_ids)}


def iso_moment(moment: datetime | str) -> str:
    """``moment`` as the ISO-8601 text the tasks take; a datetime must carry its time zone."""
    if isinstance(moment, datetime):
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise InvalidArgument("callback_at must carry a time zone (a datetime with tzinfo)",
                                  argument="callback_at")
        return moment.isoformat()
    return moment


def new_request_id() -> str:
    """A fresh id for one "Get Next" press."""
    return uuid.uuid4().hex
