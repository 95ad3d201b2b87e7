"""Every error callqueue raises, under one base class.

Two families matter to callers:

* ``Rejected`` and its subclasses: the request itself is wrong or no longer
  valid. Nothing was changed. They travel over the wire as a plain
  ``{"code", "message"}`` pair inside a ``rejected`` result, never as a
  pickled exception, and the producer client turns them back into these
  classes with ``rejection_from_error``.
* ``InfrastructureError``: MongoDB or Redis could not be reached. Tasks retry
  these with backoff and then fail visibly (task state FAILURE).

Driver errors (pymongo, redis, kombu) are converted into these once, at the
boundary, with ``raise ... from exc``.
"""

from __future__ import annotations

from typing import Any


class CallqueueError(Exception):
    """Base class of every error raised by callqueue."""


class ConfigurationError(CallqueueError):
    """A setting is missing or malformed.

    Fix the environment variable named in the message and start again.
    """


class Rejected(CallqueueError):
    """The request was refused and changed nothing.

    ``code`` is a stable machine-readable string; ``message`` says what to do.
    """

    code = "rejected"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_error(self) -> dict[str, Any]:
        """The JSON form carried in a ``rejected`` task result."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            error["details"] = self.details
        return error


class InvalidArgument(Rejected):
    """An argument has the wrong type, is empty, too long or looks like a query operator.

    Send plain strings for ids (no leading ``$``), integers for tokens, and
    keep sizes within the documented limits.
    """

    code = "invalid_argument"


class MissingArgument(InvalidArgument):
    """A required argument was not sent, or an unknown one was.

    Call the task with exactly the arguments listed in the task contract.
    """

    code = "missing_argument"


class TooLarge(InvalidArgument):
    """A string, list or payload exceeds its size limit.

    Split the request (imports) or shorten the value.
    """

    code = "too_large"


class UnknownSession(Rejected):
    """No call session has this id.

    Import students into it first (``callqueue.import_students`` creates it).
    """

    code = "unknown_session"


class SessionClosed(Rejected):
    """The call session is closed, so nothing in it can be claimed or changed.

    Reopen the session if work should continue.
    """

    code = "session_closed"


class UnknownStudent(Rejected):
    """No student with this id exists in this call session.

    Use the ``student_id`` returned by ``assign_next_student``.
    """

    code = "unknown_student"


class NotHolder(Rejected):
    """Another assistant holds this student now.

    Only the assistant the student was handed to may complete or release it.
    """

    code = "not_holder"


class NotAssigned(Rejected):
    """Nobody holds this student now (it was released or never claimed).

    Ask for the next student instead.
    """

    code = "not_assigned"


class StaleToken(Rejected):
    """The assignment token is not the current one: the student was handed out again since.

    The assistant's copy is out of date; ask for the next student.
    """

    code = "stale_token"


class AlreadyCompleted(Rejected):
    """The student already has an outcome.

    Nothing to do; each student is completed once.
    """

    code = "already_completed"


class RequestConflict(Rejected):
    """This request_id was already used for a different session or assistant.

    Make a fresh request_id per "Get Next" press and reuse it only to retry that press.
    """

    code = "request_id_conflict"


class RequestAlreadyServed(Rejected):
    """This request_id already got a student, who has since been completed or released.

    A retried request never claims a second student; make a new request_id.
    """

    code = "request_already_served"


REJECTIONS: dict[str, type[Rejected]] = {
    cls.code: cls
    for cls in (
        Rejected, InvalidArgument, MissingArgument, TooLarge, UnknownSession,
        SessionClosed, UnknownStudent, NotHolder, NotAssigned, StaleToken,
        AlreadyCompleted, RequestConflict, RequestAlreadyServed,
    )
}


def rejection_from_error(error: dict[str, Any]) -> Rejected:
    """Rebuild the typed exception from a ``rejected`` result's ``error``."""
    cls = REJECTIONS.get(str(error.get("code")), Rejected)
    exc = cls(str(error.get("message", "")), **dict(error.get("details") or {}))
    exc.code = str(error.get("code", cls.code))
    return exc


class InfrastructureError(CallqueueError):
    """A server callqueue depends on could not be reached or failed."""


class StoreUnavailable(InfrastructureError):
    """MongoDB could not be reached or lost its primary.

    Check MONGO_URL and that mongod is up; tasks retry this with backoff.
    """


class FailoverInProgress(StoreUnavailable):
    """The replica set has no primary this worker can use right now: an election, a lost or cut-off primary.

    Such an outage normally lasts about one election timeout, so tasks retry it
    after a short fixed delay (``CALLQUEUE_TASK_FAILOVER_RETRY_DELAY_SECONDS``)
    for up to ``CALLQUEUE_TASK_FAILOVER_RETRY_WINDOW_SECONDS``, not with the
    exponential backoff meant for a server that is down.
    """


class BrokerUnavailable(InfrastructureError):
    """Redis (broker or result backend) could not be reached.

    Check CELERY_BROKER_URL / CELERY_RESULT_BACKEND and that redis-server is up.
    """


class TaskFailed(CallqueueError):
    """A task ended in FAILURE after its retries (for example MongoDB stayed down).

    The message carries the worker's error type and text; check the worker logs
    and Flower, fix the outage, then send the request again.
    """


class RequestTimedOut(CallqueueError):
    """No answer arrived in time, even after the client's retries.

    Workers may be down or overloaded: check ``python -m producers health``.
    Resending with the same request_id is always safe.
    """
