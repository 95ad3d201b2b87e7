"""Simulated assistants pressing "Get Next Student" at the same time.

Each assistant is a thread with its own ``AssignmentClient``; it takes a
student, "calls" them, then completes (or now and then releases) and asks
again until the session is exhausted. ``run_in_processes`` spreads the
threads over several processes, so the callers really race.

In a campaign (``Behaviour.no_answer_rate``, ``callback_every``,
``drain_seconds``) some calls go unanswered, so the session's retry rule
calls those students again later, and now and then an assistant asks to call
a student back personally; an assistant told "exhausted" keeps pressing while
students are still waiting for a retry or a callback.

With ``Behaviour.one_trip`` an assistant records each outcome and gets the
next student in one request (``complete_and_next``), and when told
"exhausted" it waits for the next student with the client's
``wait_for_next`` (until the answer's ``next_due_at``) instead of polling the
session's counts.
"""

from __future__ import annotations

import multiprocessing
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable, TypeVar

from callqueue.config import Settings
from devstack.audit import CompletionAnswer, Handout
from callqueue.producers.client import AssignmentClient
from callqueue.producers.results import Assigned, Completed, CompletedAndNext, Exhausted, Press
from callqueue.workers.exceptions import InvalidArgument, Rejected

OUTCOMES = ("reached", "voicemail", "no_answer", "wrong_number")
NO_ANSWER = "no_answer"
FINAL_OUTCOMES = tuple(outcome for outcome in OUTCOMES if outcome != NO_ANSWER)
CALLBACK_OUTCOME = "call_back_later"
T = TypeVar("T")


@dataclass(frozen=True)
class Behaviour:
    """How the simulated assistants work."""

    call_seconds: float = 0.0
    release_every: int = 0
    timeout_seconds: float = 15.0
    max_presses: int = 100_000
    # None: each outcome drawn evenly from OUTCOMES; else "no_answer" this often, a final outcome otherwise.
    no_answer_rate: float | None = None
    # Every n-th completion of an assistant asks for a personal callback after callback_delay_seconds (0: never).
    callback_every: int = 0
    callback_delay_seconds: float = 2.0
    # 0: stop at the first "exhausted". Else, while students still wait for a retry or a callback (or are
    # pending or held), press again every recheck_seconds, for up to drain_seconds after the first one.
    drain_seconds: float = 0.0
    recheck_seconds: float = 0.5
    # Record the outcome and get the next student in one request (complete_and_next) instead of two.
    one_trip: bool = False


@dataclass
class AssistantLog:
    """Everything one assistant was told."""

    assistant_id: str
    handouts: list[Handout] = field(default_factory=list)
    # Every completion answer received (what the assistant was told was recorded).
    completions: list[CompletionAnswer] = field(default_factory=list)
    completed: int = 0
    released: int = 0
    already_held: int = 0
    presses: int = 0
    exhausted: bool = False
    # Completions whose answer said the student will be called again: by the retry rule, or as asked.
    retries_scheduled: int = 0
    callbacks_asked: int = 0
    # "Exhausted" answers while students were still waiting (the assistant pressed again).
    waits: int = 0
    errors: list[str] = field(default_factory=list)
    # Wall time of each press as the caller saw it, resends included: assign_next, or with one_trip the
    # complete_and_next that also recorded the previous call.
    press_seconds: list[float] = field(default_factory=list)
    # When each of those presses started (seconds since the epoch), to place it against a fault.
    press_started_at: list[float] = field(default_factory=list)


def work_through(settings: Settings, session_id: str, assistant_id: str, behaviour: Behaviour) -> AssistantLog:
    """One assistant's loop until the session has nobody left (or an error stops it)."""
    log = AssistantLog(assistant_id)
    rng = random.Random(assistant_id)
    with AssignmentClient(settings, timeout_seconds=behaviour.timeout_seconds) as client:
        try:
            _loop(client, session_id, log, rng, behaviour)
        except Exception as exc:  # noqa: BLE001 - recorded and reported by the caller
            log.errors.append(f"{type(exc).__name__}: {exc}")
    return log


def _loop(client: AssignmentClient, session_id: str, log: AssistantLog, rng: random.Random,
          behaviour: Behaviour) -> None:
    if behaviour.one_trip:
        _one_trip_loop(client, session_id, log, rng, behaviour)
        return
    drain_until: float | None = None
    while log.presses < behaviour.max_presses:
        assigned = _press(client, session_id, log)
        if assigned is None:
            drain_until = drain_until or time.monotonic() + behaviour.drain_seconds
            if time.monotonic() < drain_until and client.stats(session_id).coming_soon:
                log.waits += 1
                time.sleep(behaviour.recheck_seconds)
                continue
            log.exhausted = True
            return
        log.handouts.append(Handout(assigned.student_id, log.assistant_id, assigned.assignment_token))
        log.already_held += assigned.already_held
        if behaviour.call_seconds:
            time.sleep(rng.uniform(0, behaviour.call_seconds))
        if behaviour.release_every and log.presses % behaviour.release_every == 0:
            client.release(session_id, assigned.student_id, log.assistant_id, assigned.assignment_token)
            log.released += 1
        else:
            _complete(client, session_id, assigned, log, rng, behaviour)


def _one_trip_loop(client: AssignmentClient, session_id: str, log: AssistantLog, rng: random.Random,
                   behaviour: Behaviour) -> None:
    """Press once, then record each call and get the next student in one request, until nobody is left."""
    drain_until: float | None = None
    answer: Press = _timed(log, lambda: client.next_student(session_id, log.assistant_id))
    while True:
        if isinstance(answer, Exhausted):
            drain_until = drain_until or time.monotonic() + behaviour.drain_seconds
            if answer.someone_may_come and time.monotonic() < drain_until:
                log.waits += 1
                answer = client.wait_for_next(session_id, log.assistant_id, after=answer,
                                              max_wait_seconds=drain_until - time.monotonic())
            if isinstance(answer, Exhausted):
                log.exhausted = True
                return
        assigned = answer
        log.handouts.append(Handout(assigned.student_id, log.assistant_id, assigned.assignment_token))
        log.already_held += assigned.already_held
        if behaviour.call_seconds:
            time.sleep(rng.uniform(0, behaviour.call_seconds))
        more = log.presses < behaviour.max_presses
        if behaviour.release_every and log.presses % behaviour.release_every == 0:
            client.release(session_id, assigned.student_id, log.assistant_id, assigned.assignment_token)
            log.released += 1
            if not more:
                return
            answer = _timed(log, lambda: client.next_student(session_id, log.assistant_id))
            continue
        done = _complete(client, session_id, assigned, log, rng, behaviour, save_and_next=more)
        if not isinstance(done, CompletedAndNext):
            return
        if isinstance(done.next, Rejected):
            raise done.next  # the press after the completion was refused (the session closed)
        answer = done.next


def _complete(client: AssignmentClient, session_id: str, assigned: Assigned, log: AssistantLog,
              rng: random.Random, behaviour: Behaviour, save_and_next: bool = False) -> Completed | CompletedAndNext:
    """Complete the call: now and then with a personal callback, else with an outcome (maybe no answer).

    With ``save_and_next`` the same request also presses for the next
    student (``complete_and_next``, timed as the press).
    """
    def record(outcome: str, **callback: object) -> Completed | CompletedAndNext:
        if save_and_next:
            return _timed(log, lambda: client.complete_and_next(
                session_id, assigned.student_id, log.assistant_id, outcome, assigned.assignment_token, **callback))
        return client.complete(session_id, assigned.student_id, log.assistant_id, outcome,
                               assigned.assignment_token, **callback)

    done = None
    if behaviour.callback_every and (log.completed + 1) % behaviour.callback_every == 0:
        callback_at = datetime.now(timezone.utc) + timedelta(seconds=behaviour.callback_delay_seconds)
        try:
            done = record(CALLBACK_OUTCOME, callback_at=callback_at, callback_assistant=log.assistant_id)
        except InvalidArgument as exc:
            if "next_allowed" not in exc.details:
                raise  # not a callback outside the student's calling hours (its window closes meanwhile)
    if done is None:
        done = record(_outcome(rng, behaviour))
    completion = done.completion if isinstance(done, CompletedAndNext) else done
    log.completions.append(CompletionAnswer(completion.student_id, log.assistant_id, completion.assignment_token,
                                            completion.outcome or ""))
    log.completed += 1
    log.retries_scheduled += completion.next == "retry"
    log.callbacks_asked += completion.next == "callback"
    return done


def _outcome(rng: random.Random, behaviour: Behaviour) -> str:
    if behaviour.no_answer_rate is None:
        return rng.choice(OUTCOMES)
    return NO_ANSWER if rng.random() < behaviour.no_answer_rate else rng.choice(FINAL_OUTCOMES)


def _press(client: AssignmentClient, session_id: str, log: AssistantLog) -> Assigned | None:
    """One "Get Next" press, timed (also when it fails)."""
    return _timed(log, lambda: client.assign_next(session_id, log.assistant_id))


def _timed(log: AssistantLog, press: Callable[[], T]) -> T:
    """Make one press (of either kind), counted and timed (also when it fails)."""
    log.presses += 1
    started = time.monotonic()
    log.press_started_at.append(time.time())
    try:
        return press()
    finally:
        log.press_seconds.append(time.monotonic() - started)


def run_assistants(settings: Settings, session_id: str, assistant_ids: list[str],
                   behaviour: Behaviour) -> list[AssistantLog]:
    """All assistants at once, one thread each."""
    with ThreadPoolExecutor(max_workers=len(assistant_ids)) as pool:
        return list(pool.map(lambda a: work_through(settings, session_id, a, behaviour), assistant_ids))


def run_in_processes(settings: Settings, session_id: str, processes: int, threads_each: int,
                     behaviour: Behaviour) -> list[AssistantLog]:
    """``processes`` x ``threads_each`` assistants racing from separate processes."""
    groups = [[f"assistant-{p}-{t}" for t in range(threads_each)] for p in range(processes)]
    context = multiprocessing.get_context("spawn")
    with context.Pool(processes) as pool:
        results = pool.starmap(run_assistants, [(settings, session_id, ids, behaviour) for ids in groups])
    return [log for group in results for log in group]


def run_in_background(settings: Settings, session_id: str, processes: int, threads_each: int,
                      behaviour: Behaviour) -> tuple[threading.Thread, list[AssistantLog]]:
    """``run_in_processes`` on a thread of its own, already started, while the caller injects faults: the
    thread (alive while any assistant works) and the list that holds every assistant's log once it ends."""
    logs: list[AssistantLog] = []
    callers = threading.Thread(target=lambda: logs.extend(run_in_processes(
        settings, session_id, processes=processes, threads_each=threads_each, behaviour=behaviour)),
        name="callers")
    callers.start()
    return callers, logs

