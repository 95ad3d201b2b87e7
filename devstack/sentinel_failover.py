"""A Redis Sentinel failover with callers pressing "Get Next" throughout.

``SentinelStack`` is a mongod, a Sentinel group (``devstack.sentinel``: a
Redis master, one replica, three sentinels) and the worker pools, all on
``sentinel://`` URLs. ``run_master_kill`` seeds a session, lets the callers
work through it, SIGKILLs the Redis master once a share of the students is
completed, waits for the sentinels to promote the replica, waits for the
callers and audits the session. The old master stays dead: whatever it had
not yet passed to the replica (queued requests, stored answers) is gone, and
the producer client resends those requests under the same ``request_id``.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from pymongo import MongoClient
from pymongo.collection import Collection

from devstack.assistants import Behaviour, run_in_background
from devstack.audit import AuditReport, audit_session
from devstack.failover import FailoverRun, FaultWindow, Timeline, seed_students
from devstack.processes import StartupError
from devstack.sentinel import SentinelGroup
from devstack.servers import MongoServer
from devstack.stack import ServersStack, StackOptions
from callqueue.workers.models import PENDING
from callqueue.workers.store import STUDENTS

SENTINEL_ENV = {
    "CALLQUEUE_TASK_MAX_RETRIES": "12",
    "CALLQUEUE_TASK_RETRY_BACKOFF_MAX_SECONDS": "2",
    "CALLQUEUE_MONGO_SERVER_SELECTION_TIMEOUT_SECONDS": "2",
    "CALLQUEUE_REDIS_MAX_RETRIES": "10",
    "CALLQUEUE_CLIENT_RETRIES": "25",
}
KILL_NAME = "redis master killed"
POLL_SECONDS = 0.2


class SentinelStack(ServersStack):
    """A mongod, a Sentinel group, worker pools and (optionally) beat and Flower on ``sentinel://`` URLs.

    Everything is stopped by PID on exit.
    """

    def __init__(self, workdir: Path, base_env: dict[str, str], assignment_concurrency: int = 3,
                 database: str = "sentinel", beat: bool = True, flower: bool = True) -> None:
        self.sentinel = SentinelGroup(workdir)
        env = {**base_env, **SENTINEL_ENV, "MONGO_DB": database,
               "CALLQUEUE_REDIS_SENTINEL_MASTER": self.sentinel.master_name}
        super().__init__(MongoServer(workdir), self.sentinel, env,
                         StackOptions(assignment_concurrency=assignment_concurrency, flower=flower, beat=beat))


def run_master_kill(stack: SentinelStack, session_id: str, students: int = 2000, processes: int = 2,
                    threads_each: int = 16, behaviour: Behaviour | None = None,
                    kill_at_completed: float = 0.25) -> FailoverRun:
    """Seed, start the callers, kill the master once ``kill_at_completed`` of the students are done, audit."""
    settings = stack.settings
    seed_students(settings, session_id, students)
    behaviour = behaviour or Behaviour(call_seconds=0.02, timeout_seconds=8)
    timeline = Timeline()
    callers, logs = run_in_background(settings, session_id, processes, threads_each, behaviour)
    with MongoClient(settings.mongo_url) as mongo:
        students_collection = mongo[settings.mongo_db][STUDENTS]
        wait_for_completed(students_collection, session_id, int(kill_at_completed * students), callers)
        window = kill_master(stack.sentinel, timeline)
        outlived = callers.is_alive()
        timeline.note(f"fault over; callers still running: {outlived}")
        callers.join(timeout=900)
        timeline.note("callers done")
        run = FailoverRun(KILL_NAME, logs, AuditReport(), timeline, [window], outlived,
                          time.time() - timeline.started)
        run.report = audit_session(mongo[settings.mongo_db], session_id, run.handouts)
    return run


def wait_for_completed(students_collection: Collection, session_id: str, count: int, callers: threading.Thread) -> None:
    """Block until ``count`` students of the session are completed (or the callers have finished)."""
    query = {"call_session_id": session_id, "filter_status": {"$ne": PENDING}}
    while callers.is_alive() and students_collection.count_documents(query) < count:
        time.sleep(POLL_SECONDS)
    if not callers.is_alive():
        raise StartupError("the callers finished before the Redis master was killed")


def kill_master(sentinel: SentinelGroup, timeline: Timeline) -> FaultWindow:
    """SIGKILL the master and wait for the sentinels to promote the replica; the window records both times."""
    old = sentinel.master_address()
    window = FaultWindow(KILL_NAME, timeline.note(f"SIGKILL redis master at {old}"))
    killed = sentinel.kill_master()
    new = sentinel.wait_for_promotion(killed)
    window.primary_again_at = window.ended_at = timeline.note(f"sentinels promoted {new[0]}:{new[1]}")
    return window


def presses_resumed_after(run: FailoverRun, window: FaultWindow) -> float | None:
    """Seconds from the fault until the first press begun after it was answered; None if none was."""
    ends = [started + seconds for log in run.logs
            for started, seconds in zip(log.press_started_at, log.press_seconds) if started >= window.began_at]
    return min(ends) - window.began_at if ends else None
