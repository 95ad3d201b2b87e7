"""What the benchmark counts as a call, a press, a callback or a fault measured: failures never pass for results.

Pure unit tests: the desk pool and the producer client are replaced by
objects that hand back what a real one would have recorded.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import datetime, timezone
from typing import Any

import pytest

from bench.harness.callers import (
    ASSIGN_TASK, NOOP_PAIR, ONE_TRIP, PRESS, CallRun, PressRecord, WindowResult, check_window, measure_calls, values,
)
from bench.harness.desks import BenchError, Measurement
from bench.harness.presses import CLAIMS, HOLDS, PAIR_TASK, Arrival, Presser
from bench.harness.integrity import Answer, IntegrityReport, combine
from bench.parts.campaigns import CampaignsConfig, _poll
from bench.parts.failover import EventResult
from bench.parts.open_loop import Capacity, OpenLoopConfig, OpenLoopPart, OpenLoopResults, RateResult


class RecordedPool:
    """A desk pool whose desks already ran: ``run`` hands back their records."""

    def __init__(self, *results: Any) -> None:
        self.results = list(results)

    def run(self, jobs: list[Any], on_go: Any = None) -> Measurement:
        return Measurement(0.0, self.results[:len(jobs)])


def calls(statuses: dict[str, int]) -> CallRun:
    count = sum(statuses.values())
    return CallRun(latencies_ms=[5.0] * count, statuses=Counter(statuses), finished=2.0)


# -- Celery callers: only the expected answer is a call ---------------------------------------

def test_an_exhausted_answer_is_not_a_call_and_stops_the_window() -> None:
    pool = RecordedPool(calls({"assigned": 30, "exhausted": 12}))
    with pytest.raises(BenchError, match=r"12 answers were not 'assigned'.*exhausted"):
        measure_calls(pool, {}, ASSIGN_TASK, "assigned", "s", 4, 1, 2.0, "assign-w0")


def test_a_window_of_assigned_answers_counts_each_as_a_call() -> None:
    result = measure_calls(RecordedPool(calls({"assigned": 30})), {}, ASSIGN_TASK, "assigned", "s", 4, 1, 2.0, "w")
    assert (result.calls, result.per_second) == (30, 15.0)
    noop = measure_calls(RecordedPool(calls({"noop": 10})), {}, "bench.noop", "noop", "s", 4, 1, 2.0, "w")
    assert noop.calls == 10


@pytest.mark.parametrize("answer, status", [
    ({"status": "exhausted"}, "exhausted"),
    ({"status": "assigned", "assigned_to": "a1", "already_held": True, "student_id": "x", "assignment_token": 1},
     "already_held"),
    ({"status": "assigned", "assigned_to": "someone-else", "student_id": "x", "assignment_token": 1},
     "wrong_assistant"),
])
def test_a_caller_records_what_is_not_a_fresh_claim_under_its_own_status(answer: dict[str, Any], status: str) -> None:
    run = CallRun()
    run.record(answer, "a1", "s")
    assert run.statuses == Counter({status: 1}) and run.answers == []


# -- open loop: a failed press stops the part ---------------------------------------------------

def press(assign: str, complete: str | None, assign_ms: float | None = 10.0) -> PressRecord:
    return PressRecord(1.0, assign_ms, assign_ms, None, None, assign, complete, False, False, None)


def window(*records: PressRecord) -> WindowResult:
    return WindowResult("assign_complete-10-turn0", 10.0, 2.0, 2.1, list(records))


def test_a_window_with_a_failed_press_is_no_measurement() -> None:
    failed = window(press("assigned", "completed"), press("assigned", "completed"),
                    press("error:TimeoutError", None, assign_ms=None))
    assert values(failed.records, "assign_ms") == [10.0, 10.0]  # what the percentiles alone would have seen
    with pytest.raises(BenchError, match=r"1 of 3 presses failed.*error:TimeoutError"):
        check_window(failed)


@pytest.mark.parametrize("record", [press("exhausted", None), press("assigned", "error:RuntimeError"),
                                    press("already_held", "completed"), press("assigned", "refused")])
def test_a_press_that_did_not_assign_and_complete_fails_its_window(record: PressRecord) -> None:
    with pytest.raises(BenchError):
        check_window(window(press("assigned", "completed"), record))


def test_a_window_of_answered_presses_stands() -> None:
    check_window(window(press("assigned", "completed"), press("noop", "noop")))


def test_open_loop_targets_without_presses_fail() -> None:
    results = OpenLoopResults(OpenLoopConfig(), Capacity(), [RateResult(0.1, 10.0, "s", 100)])
    goals = OpenLoopPart().targets(results)
    assert len(goals) == 1 + 3 and not any(goal.passed for goal in goals)
    assert all("no samples" in goal.line() for goal in goals)
    assert set(results.rates[0].windows) == {NOOP_PAIR, PRESS, ONE_TRIP}


# -- callbacks: the assistant's own student, nobody else's --------------------------------------

class ScriptedClient:
    """Answers "Get Next" from a script and accepts every completion."""

    def __init__(self, *answers: dict[str, Any]) -> None:
        self.answers = list(answers)
        self.completed: list[str] = []

    def call(self, task: str, **arguments: Any) -> dict[str, Any]:
        if task == ASSIGN_TASK:
            return self.answers.pop(0)
        self.completed.append(arguments["student_id"])
        return {"status": "completed"}


def assigned(student: str, assistant: str) -> dict[str, Any]:
    return {"status": "assigned", "student_id": student, "assigned_to": assistant, "assignment_token": 2,
            "assigned_at": datetime.now(timezone.utc).isoformat()}


FAST = CampaignsConfig(poll_seconds=0.0, early_seconds=0.0, give_up_seconds=2.0)


def test_a_callback_poller_handed_another_student_fails() -> None:
    client = ScriptedClient({"status": "exhausted"}, assigned("someone-elses-callback", "a1"))
    with pytest.raises(BenchError, match="someone-elses-callback"):
        _poll(client, "my-callback", "a1", datetime.now(timezone.utc), FAST)
    assert client.completed == []


def test_a_callback_poller_takes_its_own_callback_and_completes_it() -> None:
    client = ScriptedClient({"status": "exhausted"}, assigned("my-callback", "a1"))
    claim, answer = _poll(client, "my-callback", "a1", datetime.now(timezone.utc), FAST)
    assert (claim.student_id, claim.presses, claim.claimed_at is not None) == ("my-callback", 2, True)
    assert answer == Answer("bench-callbacks", "my-callback", "a1", 2, "completed")
    assert client.completed == ["my-callback"]


# -- failover: a longest press counts only when presses fell in the window ------------------------

def event(presses_in_window: int = 50, outlived: bool = True, errors: int = 0, longest: float = 1.2) -> EventResult:
    return EventResult("planned step-down", 10_000, longest, 0.4, 0.1, 1, 0, 1, 2.0, presses_in_window, outlived,
                       errors, 0)


def test_a_fault_window_with_no_press_fails() -> None:
    goal = event(presses_in_window=0, longest=0.0).target()
    assert not goal.passed and "no samples" in goal.line()


def test_callers_that_finished_before_the_fault_ended_fail_the_event() -> None:
    goal = event(outlived=False).target()
    assert not goal.passed and "finished before the fault ended" in goal.line()


def test_caller_errors_fail_the_event() -> None:
    assert "3 caller errors" in event(errors=3).target().line()


def test_a_fault_measured_with_presses_and_callers_at_work_is_judged_by_its_bound() -> None:
    assert event().target().passed
    assert not event(longest=2.5).target().passed


# -- integrity: combining reports keeps every count -------------------------------------------

def test_combining_integrity_reports_keeps_students_not_completed_once() -> None:
    total = combine("all", [IntegrityReport("a", 10, not_completed_once=1), IntegrityReport("b", 5, 0, 0, 0, 2, 3)])
    assert (total.answers, total.claimed_without_answer, total.not_completed_once) == (15, 2, 4)
    assert not total.ok
    assert combine("clean", [IntegrityReport("a", 10), IntegrityReport("b", 5)]).ok


# -- one trip: an assistant completes what it holds and holds the next ---------------------------

class PairClient:
    """Answers complete_and_next with a scripted next answer, recording what it was asked to complete."""

    def __init__(self, following: dict[str, Any]) -> None:
        self.following = following
        self.calls: list[dict[str, Any]] = []

    def call(self, task: str, **arguments: Any) -> dict[str, Any]:
        self.calls.append({"task": task, **arguments})
        return {"status": "completed_and_next", "call_session_id": "s", "next": self.following,
                "completion": {"status": "completed", "student_id": arguments["student_id"]}}


def test_a_one_trip_press_completes_the_held_student_and_holds_the_next() -> None:
    cache: dict[str, Any] = {HOLDS: {("s", "a1"): ("s:x", 3)}}
    client = PairClient({"status": "assigned", "student_id": "s:y", "assignment_token": 1, "assigned_to": "a1",
                         "already_held": False})
    record = Presser(ONE_TRIP, "s", "no_answer", ASSIGN_TASK, cache).press(client, Arrival(0, time.monotonic(), "a1"))
    assert record.answered and record.total_ms == record.assign_ms and record.complete_ms is None
    assert [(call["task"], call["student_id"], call["assignment_token"]) for call in client.calls] == [
        (PAIR_TASK, "s:x", 3)]
    assert cache[HOLDS] == {("s", "a1"): ("s:y", 1)} and cache[CLAIMS] == [Answer("s", "s:y", "a1", 1)]


def test_a_one_trip_press_that_finds_nobody_fails_and_holds_nothing() -> None:
    cache: dict[str, Any] = {HOLDS: {("s", "a1"): ("s:x", 3)}}
    record = Presser(ONE_TRIP, "s", "no_answer", ASSIGN_TASK, cache).press(
        PairClient({"status": "exhausted", "call_session_id": "s"}), Arrival(0, time.monotonic(), "a1"))
    assert not record.answered and record.assign_status == "exhausted" and cache[HOLDS] == {}
    with pytest.raises(BenchError):
        check_window(window(record))
