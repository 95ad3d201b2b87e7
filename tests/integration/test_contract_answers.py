"""Answers from the real workers against ``contract/``, and the check that watches every other test."""

from __future__ import annotations

import time
from typing import Any

import pytest
from celery.result import AsyncResult

from producers.client import AssignmentClient
from tests.contract import TASKS, ContractViolation, check_progress
from tests.integration.helpers import seed
from workers.exceptions import MissingArgument


def test_an_answer_outside_the_contract_fails_the_test_that_received_it(
        client: AssignmentClient, answers_follow_the_contract: list[str]) -> None:
    """The autouse check raises on a bad answer and records it for the test's teardown."""
    with pytest.raises(ContractViolation, match="pending"):
        client._answer("callqueue.session_stats", {"status": "ok", "call_session_id": "s", "pending": -1})
    assert len(answers_follow_the_contract) == 1
    answers_follow_the_contract.clear()  # this one was provoked on purpose


@pytest.mark.parametrize("task", sorted(TASKS))
def test_every_task_answers_an_unknown_argument_with_a_contract_rejection(client: AssignmentClient,
                                                                          task: str) -> None:
    """The rejection passes the autouse contract check on its way to the caller."""
    with pytest.raises(MissingArgument):
        client.call(task, unexpected_argument="x")


def test_a_batch_job_reports_progress_in_the_contract_shape(client: AssignmentClient, session_id: str) -> None:
    seed(client, session_id, 2500)
    job = client.app.send_task("callqueue.close_session", kwargs={"call_session_id": session_id})
    seen: list[Any] = []
    deadline = time.monotonic() + 120
    while not job.ready() and time.monotonic() < deadline:
        meta = job.backend.get_task_meta(job.id)  # state and info from one read: the job may end between two
        if meta["status"] == "PROGRESS":
            seen.append(meta["result"])
        time.sleep(0.01)
    assert job.state == "SUCCESS", job.state
    client._answer("callqueue.close_session", job.result)
    assert seen, "no PROGRESS state was seen"
    for meta in seen:
        check_progress(meta)
    AsyncResult(job.id, app=client.app).forget()
