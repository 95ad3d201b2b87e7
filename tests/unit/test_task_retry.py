"""A task whose retry cannot be published is requeued, never recorded as a terminal FAILURE."""

from __future__ import annotations

from typing import Any

import pytest
from celery import Task
from celery.exceptions import Reject, Retry

from workers.tasks import assign_next_student


def test_a_retry_that_cannot_be_published_requeues_the_message(monkeypatch: pytest.MonkeyPatch) -> None:
    def unpublishable(self: Task, *args: Any, **kwargs: Any) -> Any:
        raise Reject(ConnectionError("Error 111 connecting to redis"), requeue=False)  # what Celery raises

    monkeypatch.setattr(Task, "retry", unpublishable)
    with pytest.raises(Reject) as raised:
        assign_next_student.retry(exc=RuntimeError("store unavailable"), countdown=0.25)
    assert raised.value.requeue is True
    assert isinstance(raised.value.reason, ConnectionError)


def test_a_published_retry_is_left_to_celery(monkeypatch: pytest.MonkeyPatch) -> None:
    def published(self: Task, *args: Any, **kwargs: Any) -> Any:
        raise Retry("Task can be retried", None)

    monkeypatch.setattr(Task, "retry", published)
    with pytest.raises(Retry):
        assign_next_student.retry(exc=RuntimeError("store unavailable"))
