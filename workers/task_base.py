"""What every callqueue task shares: registration, rejections, retries, logging and counting, the store.

``callqueue_task`` registers a task body under its stable ``callqueue.*``
name: it binds the caller's JSON arguments to the body's signature (missing
or unknown ones are a rejection), turns ``Rejected`` into a ``rejected``
answer, and retries infrastructure faults with backoff (failovers with a
short fixed countdown). The task modules (``workers.tasks``,
``workers.calling_tasks``) hold only the bodies.
"""

from __future__ import annotations

import functools
import inspect
import math
import time
from typing import Any, Callable

from celery import Task
from celery.exceptions import Reject, Retry
from celery.signals import worker_process_shutdown

from callqueue.workers.app import app
from callqueue.workers.eventlog import log_event
from callqueue.workers.exceptions import FailoverInProgress, InfrastructureError, MissingArgument, Rejected
from callqueue.workers.metrics import counter_buffer, flush_all
from callqueue.workers.mongo import get_database
from callqueue.workers.session_cache import OpenSessionCache
from callqueue.workers.store import AssignmentStore
from callqueue.workers.validation import require_id, require_token

Result = dict[str, Any]


class CallqueueTask(Task):
    """Celery's Task whose call passes a caller's keyword named ``self`` on to the wrapper as data.

    Celery's own ``__call__`` names its first parameter ``self``, so a message
    with ``kwargs={"self": ...}`` raised TypeError before the wrapper ran.
    Its messages pass ``workers.wire``'s envelope check before Celery reads them.
    """

    Strategy = "callqueue.workers.wire:json_only_strategy"

    def __call__(self, /, *args: Any, **kwargs: Any) -> Any:
        if self.request_stack.top is not None and not self.request.called_directly:
            return self.run(*args, **kwargs)
        return super().__call__(*args, **kwargs)

    def retry(self, *args: Any, **kwargs: Any) -> Any:
        """Celery's retry, except that a retry that cannot be published puts the message back.

        When publishing the next run fails (Redis restarting), Celery rejects
        the message without requeueing and records a terminal FAILURE, which
        would fail a caller over a short broker outage. Every callqueue task is
        safe to run again, so the message is requeued instead (late-acked
        messages also come back when the worker reconnects).
        """
        try:
            return super().retry(*args, **kwargs)
        except Reject as exc:
            if exc.requeue:
                raise
            raise Reject(exc.reason, requeue=True) from exc


def callqueue_task(name: str, **options: Any) -> Callable[[Callable[..., Result]], Task]:
    """Register ``body`` as task ``name``, turning bad calls into ``rejected`` results.

    The wrapper binds the caller's arguments to ``body``'s signature itself, so
    missing or unknown arguments are a rejection, not a crashed task.
    ``InfrastructureError`` is retried with exponential backoff, then raised.
    """
    settings = app.settings

    def register(body: Callable[..., Result]) -> Task:
        signature = inspect.signature(body)

        @app.task(name=name, base=CallqueueTask, bind=True, typing=False, autoretry_for=(InfrastructureError,),
                  retry_backoff=True, retry_backoff_max=settings.task_retry_backoff_max_seconds,
                  retry_jitter=True, max_retries=settings.task_max_retries, **options)
        @functools.wraps(body)
        def run(self: Task, /, *args: Any, **kwargs: Any) -> Result:
            started = time.perf_counter()
            try:
                bound = signature.bind(*args, **kwargs)
            except TypeError as exc:
                return _rejected(name, self, MissingArgument(f"{name}: {exc}"), started)
            try:
                return body(*bound.args, **bound.kwargs)
            except Rejected as exc:
                return _rejected(name, self, exc, started, **_ids(bound.arguments))
            except FailoverInProgress as exc:
                raise _retry_failover(name, self, exc) from exc

        return run

    return register


def _retry_failover(name: str, task: Task, exc: FailoverInProgress) -> BaseException:
    """Run the task again after a short fixed countdown while the replica set elects a primary.

    Up to ``task_failover_retry_window_seconds / task_failover_retry_delay_seconds``
    times; past that the error goes on to the outage retries and then FAILURE.
    A message that expires meanwhile (the caller gave up and resent) is dropped.
    """
    settings = app.settings
    delay = settings.task_failover_retry_delay_seconds
    allowed = settings.task_max_retries + math.ceil(settings.task_failover_retry_window_seconds / delay)
    report("failover_retry", task=name, request_id=task.request.id, attempt=task.request.retries + 1)
    try:
        return task.retry(exc=exc, countdown=delay, max_retries=allowed)
    except Retry as retry:
        return retry


def flush_counters(**_: Any) -> None:
    """A pool process that stops normally writes its buffered domain counts first.

    Pool children leave without running ``atexit`` handlers; the main process
    (solo and thread pools) is covered by ``workers.metrics``' own ``atexit``.
    """
    flush_all()


worker_process_shutdown.connect(flush_counters, weak=False)


def report(event: str, amount: int = 1, code: str | None = None, also_count: tuple[str, ...] = (),
           **fields: Any) -> None:
    """Log the event as one structured line and add it (and ``also_count``) to the domain counters."""
    log_event(event, code=code, **fields)
    counters = counter_buffer(app.settings.broker_url, app.settings.redis_sentinel_master)
    counters.add(event, amount, code)
    for name in also_count:
        counters.add(name, amount)


def _rejected(name: str, task: Task, exc: Rejected, started: float, **fields: Any) -> Result:
    report("rejected", code=exc.code, task=name, request_id=task.request.id, duration_ms=elapsed_ms(started), **fields)
    return {"status": "rejected", "error": exc.to_error()}


def _ids(arguments: dict[str, Any]) -> dict[str, Any]:
    """Loggable identifiers from the arguments (plain strings only)."""
    keys = ("call_session_id", "assistant_id", "student_id")
    return {key: arguments[key] for key in keys if isinstance(arguments.get(key), str)}


def elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


def task_store() -> AssignmentStore:
    """The store, with students leaving the pool two promotion intervals before their window's last call."""
    return AssignmentStore(get_database(app.settings), app.settings.mongo_batch_operation_timeout_seconds,
                           window_lead_seconds=2 * app.settings.promote_interval_seconds)


def current_request_id() -> str:
    return str(app.current_worker_task.request.id)


open_sessions = OpenSessionCache(app.settings.session_cache_seconds)


def id_limit() -> int:
    return app.settings.max_id_length


def student_id_limit() -> int:
    """A student id as handed out: the session id (escaped, up to twice as long), ':', the row's id."""
    return 3 * app.settings.max_id_length + 1


def holder_arguments(call_session_id: Any, student_id: Any, assistant_id: Any,
                      assignment_token: Any) -> tuple[str, str, str, int]:
    """The four arguments that name one hold: session, student, assistant, token."""
    return (require_id("call_session_id", call_session_id, id_limit()),
            require_id("student_id", student_id, student_id_limit()),
            require_id("assistant_id", assistant_id, id_limit()),
            require_token("assignment_token", assignment_token))
