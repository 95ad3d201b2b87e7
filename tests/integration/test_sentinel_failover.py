"""Get Next through a Redis Sentinel failover: the master SIGKILLed, the replica promoted.

A Redis master, one replica and three sentinels (``devstack.sentinel``, short
``down-after-milliseconds``) with a mongod, worker pools, beat, Flower and the
metrics exporter of this module's own, every component on ``sentinel://``
URLs. 32 callers (two processes of 16 threads, each with its own producer
client) work through 1,200 students; when a quarter of them are completed the
Redis master is SIGKILLed and stays dead while the sentinels promote the
replica. Afterwards:

* every press was answered (no caller error, every caller saw the session exhausted);
* no student was handed to two assistants, and every answer is in the history;
* every student was completed exactly once, none pending or held;
* the workers rode the failover out in the same processes (same PIDs, alive,
  no unrecoverable error in their logs);
* beat, Flower, ``health`` and the exporter, all started before the kill,
  work against the new master.

What was queued or stored only on the old master is gone; the client resent
those requests under the same ``request_id``. Latency bounds here are
generous; the test prints what it measured.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Iterator

import pytest
import requests

from devstack.assistants import Behaviour
from devstack.failover import FailoverRun, FaultWindow
from devstack.processes import ManagedProcess, free_port, wait_until
from devstack.sentinel_failover import SentinelStack, presses_resumed_after, run_master_kill
from devstack.servers import project_env
from callqueue.producers.client import AssignmentClient
from tests.integration.helpers import assert_nothing_lost_or_doubled, beat_job_succeeded, poll
from callqueue.workers.app import ASSIGNMENTS_QUEUE

STUDENTS = 1_200
CALLERS = 32
# A call lasts up to 0.4 s (0.2 s on average): the 900 students left at the kill take the 32 callers at
# least 5.6 s however fast the presses are, longer than the sentinels take to promote the replica (2.4 s).
CALL_SECONDS = 0.4
CLIENT_TIMEOUT_SECONDS = 8.0
ASSIGN_TASK = "callqueue.assign_next_student"
RECLAIM_TASK = "callqueue.reclaim_expired"
CLAIMED = re.compile(r'^callqueue_events_total\{event="claimed"\} (\S+)$', re.MULTILINE)

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Observed:
    """The run, and what the test recorded around it."""

    run: FailoverRun
    session_id: str
    worker_pids: list[int]
    first_master: tuple[str, int] | None

    @property
    def window(self) -> FaultWindow:
        return self.run.windows[0]

    @property
    def promoted_at(self) -> float:
        assert self.window.primary_again_at is not None
        return self.window.primary_again_at


@pytest.fixture(scope="module")
def sentinel_stack(tmp_path_factory: pytest.TempPathFactory, server_env: dict[str, str]) -> Iterator[SentinelStack]:
    env = {**server_env, "FLOWER_UNAUTHENTICATED_API": "true"}  # Flower on loopback, read by this test only
    with SentinelStack(tmp_path_factory.mktemp("sentinel"), env) as running:
        yield running


@pytest.fixture(scope="module")
def exporter(sentinel_stack: SentinelStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``python -m producers metrics`` on the stack's sentinel:// URLs; its /metrics URL."""
    port = free_port()
    assert sentinel_stack.stack is not None
    process = ManagedProcess("exporter", [sys.executable, "-m", "producers", "metrics", "--port", str(port)],
                             tmp_path_factory.mktemp("exporter") / "exporter.log",
                             project_env(sentinel_stack.stack.env))
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        process.start()
        wait_until(lambda: claimed_count(url) >= 0, 30, "metrics exporter", process.alive)
        yield url
    finally:
        process.stop()


@pytest.fixture(scope="module")
def observed(sentinel_stack: SentinelStack, exporter: str) -> Observed:
    """Run the scenario once for every test of this module: 32 callers, 1,200 students, one master SIGKILLed."""
    assert sentinel_stack.stack is not None
    worker_pids = [worker.process.pid for worker in sentinel_stack.stack.workers]
    session_id = f"sentinel-{uuid.uuid4().hex[:8]}"
    first_master = sentinel_stack.sentinel.master_address()
    run = run_master_kill(sentinel_stack, session_id, students=STUDENTS,
                          behaviour=Behaviour(call_seconds=CALL_SECONDS, timeout_seconds=CLIENT_TIMEOUT_SECONDS))
    window = run.windows[0]
    resumed = presses_resumed_after(run, window)
    print(f"\nsentinel failover: replica promoted {window.primary_again_at - window.began_at:.2f}s after the kill; "
          f"first press begun after the kill answered {resumed}s after it; longest press "
          f"{run.longest_press:.2f}s, p99 {run.percentile(0.99):.2f}s, {len(run.presses)} presses in "
          f"{run.seconds:.0f}s\n" + "\n".join(run.timeline.lines()))
    return Observed(run, session_id, worker_pids, first_master)


def claimed_count(url: str) -> float:
    """The exporter's ``claimed`` counter (0 before anything was claimed)."""
    with urllib.request.urlopen(url, timeout=5) as response:
        match = CLAIMED.search(response.read().decode())
    return float(match.group(1)) if match else 0.0


def succeeded_times(flower_url: str, task_name: str) -> list[float]:
    """When each SUCCESS task of ``task_name`` that Flower knows of succeeded."""
    tasks = requests.get(f"{flower_url}/api/tasks", params={"taskname": task_name, "state": "SUCCESS"},
                         timeout=10).json()
    return [float(task["succeeded"]) for task in tasks.values() if task.get("succeeded")]


def test_every_press_is_answered_and_no_student_is_lost_or_doubled(observed: Observed) -> None:
    assert_nothing_lost_or_doubled(observed.run, CALLERS, STUDENTS)


def test_the_workers_ride_the_failover_out_in_the_same_processes(observed: Observed,
                                                                 sentinel_stack: SentinelStack) -> None:
    assert sentinel_stack.stack is not None
    workers = sentinel_stack.stack.workers
    dead = [worker for worker in workers if not worker.process.alive()]
    assert not dead, [(worker.hostname, worker.process.log_tail(40)) for worker in dead]
    assert [worker.process.pid for worker in workers] == observed.worker_pids  # nobody restarted them
    for worker in workers:
        log = worker.process.log_path.read_text(errors="replace")
        assert "Unrecoverable error" not in log, worker.hostname
        assert "Connection to broker lost" in log, f"{worker.hostname} never saw the failover"
    with AssignmentClient(sentinel_stack.settings, timeout_seconds=15) as client:
        assert client.stats(observed.session_id).completed == STUDENTS  # and they answer through the new master


def test_presses_resume_soon_after_the_promotion(observed: Observed) -> None:
    """Generous bounds only: this machine is shared; the printed figures are the measurement."""
    resumed = presses_resumed_after(observed.run, observed.window)
    assert resumed is not None and resumed < 30.0
    assert observed.run.longest_press < 3 * CLIENT_TIMEOUT_SECONDS


def test_beat_and_flower_follow_the_new_master(observed: Observed, sentinel_stack: SentinelStack) -> None:
    assert sentinel_stack.stack is not None and sentinel_stack.stack.flower is not None
    flower_url = sentinel_stack.stack.flower.url
    times = poll(lambda: succeeded_times(flower_url, ASSIGN_TASK),
                 lambda found: any(at > observed.promoted_at for at in found), 30, 0.5)
    assert any(at > observed.promoted_at for at in times), f"Flower saw no {ASSIGN_TASK} after the failover"
    # Beat sends reclaim_expired every second; Flower does not list beat's jobs, the worker's log does.
    worker = next(worker for worker in sentinel_stack.stack.workers if worker.queue == ASSIGNMENTS_QUEUE)
    assert poll(lambda: beat_job_succeeded(worker.process.log_path.read_text(errors="replace"), RECLAIM_TASK,
                                           after="Connection to broker lost"), bool, 30, 0.5), \
        f"the worker ran no {RECLAIM_TASK} sent by beat after the failover"


def test_health_and_the_exporter_use_the_new_master(observed: Observed, sentinel_stack: SentinelStack,
                                                    exporter: str) -> None:
    """Health runs as its own process, as the compose healthchecks run it."""
    assert sentinel_stack.stack is not None
    result = subprocess.run([sys.executable, "-m", "producers", "health", "--json", "--timeout", "3"],
                            env=project_env(sentinel_stack.stack.env), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    checks = {check["component"]: check for check in json.loads(result.stdout)["checks"]}
    master = sentinel_stack.sentinel.master_address()
    assert master is not None and master != observed.first_master
    for component in ("redis broker", "redis result backend"):
        assert f"at {master[0]}:{master[1]} via sentinel://" in checks[component]["detail"], checks[component]
    claimed = poll(lambda: claimed_count(exporter), lambda count: count >= STUDENTS // 2, 15, 0.5)
    assert claimed >= STUDENTS // 2  # the workers' counts, read from the new master
