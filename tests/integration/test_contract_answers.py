"""Answers from the real workers against ``contract/``, and the check that watches every other test."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from celery.result import AsyncResult

from callqueue.producers.client import AssignmentClient
from tests.contract import TASKS, ContractViolation, check_progress
from tests.integration.helpers import seed
from callqueue.workers.exceptions import InvalidArgument, MissingArgument


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


def test_campaign_answers_fit_the_contract(client: AssignmentClient, session_id: str) -> None:
    """set_campaign, a press with skills, completions that retry, call back and end, stats, promote_due, a batch."""
    client.call("callqueue.import_students", call_session_id=session_id, route_by="language", students=[
        {"student_id": "ann", "name": "Ann", "language": "es", "priority": 1},
        {"student_id": "bob", "name": "Bob"},
        {"student_id": "cy", "name": "Cy"},
    ])
    campaign = client.call("callqueue.set_campaign", call_session_id=session_id, callback_grace_seconds=600,
                           retry_rules={"no_answer": {"delay_seconds": 3600, "max_attempts": 2}})
    assert campaign["retry_rules"] == {"no_answer": {"delay_seconds": 3600, "max_attempts": 2}}

    def press(assistant: str, skills: list[str] | None = None) -> dict[str, Any]:
        extra = {} if skills is None else {"skills": skills}
        return client.call("callqueue.assign_next_student", call_session_id=session_id, assistant_id=assistant,
                           **extra)

    def complete(held: dict[str, Any], outcome: str, **extra: Any) -> dict[str, Any]:
        return client.call("callqueue.complete_student", call_session_id=session_id,
                           student_id=held["student_id"], assistant_id=held["assigned_to"], outcome=outcome,
                           assignment_token=held["assignment_token"], **extra)

    retried = complete(press("maria", ["es"]), "no_answer")
    assert (retried["attempt"], retried["next"], retried["final"]) == (1, "retry", False)
    past = (datetime.now(timezone.utc) - timedelta(seconds=1)).isoformat()
    called_back = complete(press("maria", ["es"]), "call_later", callback_at=past, callback_assistant="maria")
    assert (called_back["next"], called_back["callback_assistant"]) == ("callback", "maria")
    final = complete(press("tom"), "reached")
    assert (final["next"], final["final"], final["next_attempt_at"]) == ("final", True, None)
    assert client.call("callqueue.session_stats", call_session_id=session_id)["scheduled_retries"] == 1
    client.call("callqueue.promote_due")  # beat may have moved the callback already: any count fits
    deadline = time.monotonic() + 30
    while (held := press("maria", ["es"]))["status"] == "exhausted" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert held["status"] == "assigned", held
    done = client.run_job("callqueue.complete_batch", None, items=[{
        "call_session_id": session_id, "student_id": held["student_id"], "assistant_id": "maria",
        "assignment_token": held["assignment_token"], "outcome": "call_later", "callback_at": past}])
    assert done["completed"] == 1, done


def test_assistant_stats_answers_each_assistants_hold_and_calls_in_the_contract_shape(
        client: AssignmentClient, session_id: str) -> None:
    seed(client, session_id, 3)
    first = client.assign_next(session_id, "ann")
    client.complete(session_id, first.student_id, "ann", "reached", first.assignment_token)
    held = client.assign_next(session_id, "bob")
    answer = client.assistant_stats(session_id)  # checked against contract/ on its way (autouse)
    rows = {row["assistant_id"]: row for row in answer["assistants"]}
    assert set(rows) == {"ann", "bob"} and answer["time_zone"] == "UTC"
    assert (rows["ann"]["calls_today"], rows["ann"]["calls_last_hour"], rows["ann"]["holding"]) == (1, 1, None)
    assert rows["ann"]["outcomes_today"] == {"reached": 1} and rows["ann"]["average_call_seconds"] >= 0
    assert rows["bob"]["holding"]["student_id"] == held.student_id and rows["bob"]["calls_today"] == 0


def test_calling_hours_and_do_not_call_answers_fit_the_contract(client: AssignmentClient, session_id: str) -> None:
    """set_calling_hours (set and removed), stats with students waiting for their window, a callback refused
    outside the hours, suppress, list_suppressed page by page, unsuppress, and an import that skips."""
    rows = [{"student_id": f"s{n}", "tz": zone, "phone": f"+1 212 555 010{n}"}
            for n, zone in enumerate(["Pacific/Kiritimati", "Etc/GMT+12", "America/Chicago"])]
    imported = client.call("callqueue.import_students", call_session_id=session_id, students=rows,
                           zone_by="tz", phone_by="phone")
    assert (imported["inserted"], imported["suppressed"]) == (3, 0)
    hours = {"days": {day: ["00:00-24:00"] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")},
             "default_zone": "UTC", "holidays": [
                 (datetime.now(timezone.utc) + timedelta(days=offset)).date().isoformat() for offset in (-1, 0, 1)]}
    answer = client.call("callqueue.set_calling_hours", call_session_id=session_id, calling_hours=hours)
    assert answer["calling_hours"]["default_zone"] == "UTC"
    stats = client.call("callqueue.session_stats", call_session_id=session_id)
    assert stats["waiting_for_window"] >= 1 and stats["pending"] + stats["waiting_for_window"] == 3
    assert client.call("callqueue.set_calling_hours", call_session_id=session_id, calling_hours=None)[
        "calling_hours"] is None
    held = client.call("callqueue.assign_next_student", call_session_id=session_id, assistant_id="maria")
    client.call("callqueue.set_calling_hours", call_session_id=session_id, calling_hours=hours)
    time.sleep(1.5)  # completions read the session's hours from the workers' session cache (1 s here)
    with pytest.raises(InvalidArgument) as refused:
        client.call("callqueue.complete_student", call_session_id=session_id, student_id=held["student_id"],
                    assistant_id="maria", outcome="call_later", assignment_token=held["assignment_token"],
                    callback_at=(datetime.now(timezone.utc) + timedelta(hours=1)).isoformat())
    assert datetime.fromisoformat(refused.value.details["next_allowed"]) > datetime.now(timezone.utc)
    suppressed = client.call("callqueue.suppress", call_session_id=session_id,
                             numbers=["+12125550101", "+1 212 555 0102"], student_ids=[held["student_id"]])
    assert (suppressed["added"], suppressed["still_held"]) == (3, 1)
    pages, after = [], None
    while True:
        page = client.call("callqueue.list_suppressed", call_session_id=session_id, after=after, limit=2)
        pages.append(page["entries"])
        if (after := page["next"]) is None:
            break
    assert [len(entries) for entries in pages] == [2, 1]
    assert [entry["kind"] for entries in pages for entry in entries] == ["number", "number", "student"]
    assert client.call("callqueue.unsuppress", call_session_id=session_id, numbers=["+12125550101"])["removed"] == 1
    again = client.call("callqueue.import_students", call_session_id=session_id, students=rows, phone_by="phone")
    assert (again["inserted"], again["duplicates"], again["suppressed"]) == (0, 1, 2)
