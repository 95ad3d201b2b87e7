"""No student lost or doubled while workers die and Redis and MongoDB restart.

64 callers (two processes of 32 threads, each with its own producer client)
work through 5,000 students while, in turn, a worker child is SIGKILLed every
two seconds, redis-server is stopped and started again, and mongod is stopped
and started again on the same data directory. Everything runs on servers of
this module's own, so the restarts touch no other test.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
from pymongo import MongoClient

from devstack.assistants import AssistantLog, Behaviour, run_in_processes
from devstack.audit import audit_session
from devstack.servers import MongoServer, RedisServer
from devstack.stack import ServersStack, StackOptions
from producers.client import AssignmentClient
from tests.integration.helpers import seed

STUDENTS = 5_000
KILLS = 6
FAULT_ENV = {
    "MONGO_DB": "faults",
    "CALLQUEUE_TASK_MAX_RETRIES": "12",
    "CALLQUEUE_TASK_RETRY_BACKOFF_MAX_SECONDS": "2",
    "CALLQUEUE_MONGO_SERVER_SELECTION_TIMEOUT_SECONDS": "2",
    "CALLQUEUE_REDIS_MAX_RETRIES": "10",
    "CALLQUEUE_CLIENT_RETRIES": "25",
}


class FaultyStack(ServersStack):
    """Own mongod and redis-server plus worker pools, with the knobs to break them."""

    def __init__(self, workdir: Path, base_env: dict[str, str]) -> None:
        super().__init__(MongoServer(workdir), RedisServer(workdir), {**base_env, **FAULT_ENV},
                         StackOptions(assignment_concurrency=3, flower=False, beat=False))

    def kill_a_worker_child(self, rng: random.Random) -> int | None:
        """SIGKILL one live child of the assignment pool; its PID, or None when the pool had none just then.

        A child killed earlier may still be listed until the pool reaps it: only living ones are chosen.
        """
        children = [pid for pid in self.stack.workers[0].child_pids() if pid_alive(pid)]
        if not children:
            return None
        victim = rng.choice(children)
        os.kill(victim, signal.SIGKILL)
        return victim


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory, server_env: dict[str, str]) -> Iterator[FaultyStack]:
    with FaultyStack(tmp_path_factory.mktemp("faults"), server_env) as running:
        yield running


def pid_alive(pid: int) -> bool:
    """Running, not gone and not a zombie waiting to be reaped."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def inject_faults(faulty: FaultyStack, callers: threading.Thread, timeline: list[str], killed: list[int]) -> None:
    """Kill worker children for a while, then restart Redis, then restart MongoDB."""
    rng = random.Random(7)
    started = time.monotonic()
    for _ in range(KILLS):
        time.sleep(2)
        victim = faulty.kill_a_worker_child(rng)
        if victim is None:
            timeline.append(f"{time.monotonic() - started:5.1f}s found no worker child to kill")
            continue
        killed.append(victim)
        timeline.append(f"{time.monotonic() - started:5.1f}s killed worker child {victim}")
    faulty.redis.restart(down_seconds=2)
    timeline.append(f"{time.monotonic() - started:5.1f}s restarted redis-server")
    time.sleep(5)
    faulty.mongo.restart(down_seconds=2)
    timeline.append(f"{time.monotonic() - started:5.1f}s restarted mongod")
    timeline.append(f"callers still running after the last fault: {callers.is_alive()}")


def test_no_student_is_lost_or_doubled_through_kills_and_restarts(faulty: FaultyStack) -> None:
    settings = faulty.settings
    session_id = "fault-session"
    with AssignmentClient(settings, timeout_seconds=30) as client:
        seed(client, session_id, STUDENTS)
    worker_pids = [worker.process.pid for worker in faulty.stack.workers]
    logs: list[AssistantLog] = []
    callers = threading.Thread(target=lambda: logs.extend(run_in_processes(
        settings, session_id, processes=2, threads_each=32,
        behaviour=Behaviour(call_seconds=0.02, timeout_seconds=8))))
    timeline: list[str] = []
    killed: list[int] = []

    callers.start()
    inject_faults(faulty, callers, timeline, killed)
    callers.join(timeout=600)

    assert not callers.is_alive(), "callers did not finish"
    dead = [worker for worker in faulty.stack.workers if not worker.process.alive()]
    assert not dead, [(worker.hostname, worker.process.log_tail(40)) for worker in dead]  # no worker died
    assert timeline[-1].endswith("True"), timeline  # every fault hit a running workload
    assert len(set(killed)) == KILLS, timeline  # every kill found a child and killed it
    assert not any(pid_alive(pid) for pid in killed), timeline
    assert not set(killed) & set(faulty.stack.workers[0].child_pids())  # the pool replaced them
    assert [log.errors for log in logs if log.errors] == [], timeline
    assert len(logs) == 64 and all(log.exhausted for log in logs)  # every request got an answer
    handouts = [handout for log in logs for handout in log.handouts]
    with MongoClient(settings.mongo_url) as mongo:
        report = audit_session(mongo[settings.mongo_db], session_id, handouts)
    assert report.clean, (report.double_handouts[:5], report.answers_not_in_history[:5],
                          report.tokens_given_twice[:5], report.completed_twice[:5])
    assert (report.students, report.completed, report.pending, report.held) == (STUDENTS, STUDENTS, 0, 0)
    assert len({h.student_id for h in handouts}) == STUDENTS
    assert [worker.process.pid for worker in faulty.stack.workers] == worker_pids  # nobody restarted them
    with AssignmentClient(settings, timeout_seconds=15) as client:
        assert client.stats(session_id).completed == STUDENTS  # and they still answer
