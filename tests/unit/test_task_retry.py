"""A task whose retry cannot be published is requeued, never recorded as a terminal FAILURE.

Celery's own ``Task.retry`` runs here for real, inside a worker-like request
context; only the publish of the next run (``Signature.apply_async``) is
replaced, by one that fails as a publish to a restarting Redis does, or by
one that records the message it would have sent.
"""

from __future__ import annotations

from typing import Any, Iterator

import pytest
from celery.canvas import Signature
from celery.exceptions import Reject, Retry

from callqueue.workers.tasks import assign_next_student

KWARGS = {"call_session_id": "s", "assistant_id": "a", "request_id": "r"}


@pytest.fixture()
def in_a_worker() -> Iterator[None]:
    """The task runs as a delivered message would (not called directly)."""
    assign_next_student.push_request(id="task-1", args=[], kwargs=KWARGS, retries=0, called_directly=False,
                                     delivery_info={"routing_key": "assignments"})
    try:
        yield
    finally:
        assign_next_student.pop_request()


def test_a_retry_that_cannot_be_published_requeues_the_message(
        in_a_worker: None, monkeypatch: pytest.MonkeyPatch) -> None:
    def unpublishable(self: Signature, *args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("Error 111 connecting to redis")

    monkeypatch.setattr(Signature, "apply_async", unpublishable)
    with pytest.raises(Reject) as raised:
        assign_next_student.retry(exc=RuntimeError("store unavailable"), countdown=0.25)
    assert raised.value.requeue is True
    assert isinstance(raised.value.reason, ConnectionError)
    assert isinstance(raised.value.__cause__, Reject) and raised.value.__cause__.requeue is False


def test_a_published_retry_is_sent_by_celery_with_its_countdown(
        in_a_worker: None, monkeypatch: pytest.MonkeyPatch) -> None:
    published: list[Signature] = []

    def publish(self: Signature, *args: Any, **kwargs: Any) -> Any:
        published.append(self)

    monkeypatch.setattr(Signature, "apply_async", publish)
    with pytest.raises(Retry) as raised:
        assign_next_student.retry(exc=RuntimeError("store unavailable"), countdown=0.25)
    assert len(published) == 1
    assert published[0].task == "callqueue.assign_next_student"
    assert published[0].kwargs == KWARGS
    assert published[0].options["countdown"] == 0.25 and published[0].options["task_id"] == "task-1"
    assert raised.value.when == 0.25
