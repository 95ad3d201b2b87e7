"""Simulated assistants pressing "Get Next Student" at the same time.

Each assistant is a thread with its own ``AssignmentClient``; it takes a
student, "calls" them, then completes (or now and then releases) and asks
again until the session is exhausted. ``run_in_processes`` spreads the
threads over several processes, so the callers really race.
"""

from __future__ import annotations

import multiprocessing
import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from config import Settings
from devstack.audit import Handout
from producers.client import AssignmentClient
from producers.results import Assigned

OUTCOMES = ("reached", "voicemail", "no_answer", "wrong_number")


@dataclass(frozen=True)
class Behaviour:
    """How the simulated assistants work."""

    call_seconds: float = 0.0
    release_every: int = 0
    timeout_seconds: float = 15.0
    max_presses: int = 100_000


@dataclass
class AssistantLog:
    """Everything one assistant was told."""

    assistant_id: str
    handouts: list[Handout] = field(default_factory=list)
    completed: int = 0
    released: int = 0
    already_held: int = 0
    presses: int = 0
    exhausted: bool = False
    errors: list[str] = field(default_factory=list)
    # Wall time of each assign_next call as the caller saw it, resends included.
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
    while log.presses < behaviour.max_presses:
        log.presses += 1
        assigned = _press(client, session_id, log)
        if assigned is None:
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
            client.complete(session_id, assigned.student_id, log.assistant_id, rng.choice(OUTCOMES),
                            assigned.assignment_token)
            log.completed += 1


def _press(client: AssignmentClient, session_id: str, log: AssistantLog) -> Assigned | None:
    """One "Get Next" press, timed (also when it fails)."""
    started = time.monotonic()
    log.press_started_at.append(time.time())
    try:
        return client.assign_next(session_id, log.assistant_id)
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

