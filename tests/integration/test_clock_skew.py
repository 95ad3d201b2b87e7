"""One clock: workers and beat an hour ahead and an hour behind (libfaketime), beside a worker on the true clock.

Before, a worker an hour behind wrote leases that had already run out (and
the other workers' reclaim took its students within seconds), and a worker an
hour ahead discarded every message with an expiry as revoked. Here:

* the skewed workers stop taking messages before their first one, say so in
  their log, in Redis, in ``health`` and in the exporter, and every press is
  answered by the true-clock worker, without a single resend;
* two beats, one an hour ahead and one an hour behind (and none on the true
  clock), keep reclaiming and promoting: no lease of 10 minutes is reclaimed,
  a retry and a callback come back neither early nor late;
* a skewed worker whose check is turned off, made the only one to take
  messages, still writes and compares the database's times only.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator

import pytest
import redis
from click.testing import CliRunner
from pymongo import MongoClient

from devstack.faketime import PREFIX, skewed_env
from devstack.servers import CeleryBeat, CeleryWorker, RedisServer
from devstack.processes import wait_until
from callqueue.producers.client import AssignmentClient
from callqueue.producers.exporter import CallqueueCollector
from callqueue.producers.ops import health_command
from tests.integration.private_stack import PrivateStack, private_stack
from callqueue.workers.app import ASSIGNMENTS_QUEUE
from callqueue.workers.clock import WorkerClock, worker_clocks
from callqueue.workers.store import STUDENTS

HOUR = 3600


@dataclass
class SkewedStack:
    running: PrivateStack
    ahead: CeleryWorker
    behind: CeleryWorker
    beats: list[CeleryBeat]
    broker: redis.Redis

    def clocks(self) -> dict[str, WorkerClock]:
        return {record.worker: record for record in worker_clocks(self.broker)}

    def server_now(self) -> datetime:
        return self.running.database.client.admin.command("hello")["localTime"].replace(tzinfo=timezone.utc)

    def worker(self, offset_seconds: int, name: str, **env: str) -> CeleryWorker:
        """Start an assignments worker on a clock ``offset_seconds`` off (stopped by the caller)."""
        worker = CeleryWorker(self.running.stack.workdir, skewed_env({**self.running.env, **env}, offset_seconds),
                              ASSIGNMENTS_QUEUE, concurrency=1, name=name, host_prefix=PREFIX)
        worker.start()
        return worker

    def wait_for_clock(self, worker: CeleryWorker, paused: bool) -> WorkerClock:
        wait_until(lambda: (record := self.clocks().get(worker.hostname)) is not None and record.paused == paused,
                   60, f"clock record of {worker.hostname}", worker.process.alive)
        return self.clocks()[worker.hostname]


@pytest.fixture(scope="module")
def skewed(server_env: dict[str, str], redis_server: RedisServer, mongo_client: MongoClient) -> Iterator[SkewedStack]:
    with private_stack(server_env, redis_server, mongo_client, "clock_skew", broker_db=10, backend_db=11) as running:
        started: list[Any] = []
        broker = redis.Redis.from_url(running.settings.broker_url)
        try:
            stack = SkewedStack(running, None, None, [], broker)  # type: ignore[arg-type]
            stack.ahead = stack.worker(HOUR, "ahead")
            started.append(stack.ahead)
            stack.behind = stack.worker(-HOUR, "behind")
            started.append(stack.behind)
            for offset in (HOUR, -HOUR):  # no beat on the true clock
                beat = CeleryBeat(running.stack.workdir, skewed_env(running.env, offset), PREFIX,
                                  name=f"beat{offset:+d}")
                started.append(beat)
                stack.beats.append(beat.start())
            for worker in (stack.ahead, stack.behind):
                stack.wait_for_clock(worker, paused=True)
            yield stack
        finally:
            for component in reversed(started):
                component.stop()
            broker.close()


def log_of(worker: CeleryWorker) -> str:
    return worker.process.log_path.read_text(errors="replace")


def claims(stack: SkewedStack, session_id: str) -> list[dict[str, Any]]:
    return [{**entry, "student_id": document["_id"]}
            for document in stack.running.database[STUDENTS].find({"call_session_id": session_id})
            for entry in document["history"] if entry["event"] == "claimed"]


def utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment


def test_skewed_workers_stop_taking_messages_before_their_first_and_say_so_everywhere(skewed: SkewedStack) -> None:
    clocks = skewed.clocks()
    ahead, behind = clocks[skewed.ahead.hostname], clocks[skewed.behind.hostname]
    true = clocks[skewed.running.assignments_worker.hostname]
    assert ahead.skewed and abs(ahead.offset_seconds + HOUR) < 5  # the database's clock minus the worker's
    assert behind.skewed and abs(behind.offset_seconds - HOUR) < 5
    assert not true.paused and abs(true.offset_seconds) < 1
    for worker in (skewed.ahead, skewed.behind):
        assert "clock_skewed" in log_of(worker)
    result = CliRunner().invoke(health_command, ["--json"], env=skewed.running.env, catch_exceptions=False)
    assert result.exit_code == 1
    check = next(c for c in json.loads(result.output)["checks"] if c["component"] == "worker clocks")
    assert not check["ok"] and skewed.ahead.hostname in check["detail"] and skewed.behind.hostname in check["detail"]
    assert "not taking messages" in check["detail"]
    metrics = {metric.name: metric for metric in CallqueueCollector(skewed.running.settings).collect()}
    paused = {sample.labels["worker"]: (sample.labels["reason"], sample.value)
              for sample in metrics["callqueue_worker_paused"].samples}
    assert paused[skewed.ahead.hostname] == ("clock_skew", 1) and paused[skewed.behind.hostname] == ("clock_skew", 1)
    offsets = {sample.labels["worker"]: sample.value
               for sample in metrics["callqueue_worker_clock_offset_seconds"].samples}
    assert abs(offsets[skewed.ahead.hostname] - HOUR) < 5 and abs(offsets[skewed.behind.hostname] + HOUR) < 5


def test_every_press_is_answered_at_once_by_the_true_clock_worker(skewed: SkewedStack) -> None:
    session_id = f"presses-{uuid.uuid4().hex[:8]}"
    with AssignmentClient(skewed.running.settings, timeout_seconds=10, retries=0) as client:
        client.import_students(session_id, [{"student_id": f"s{n}"} for n in range(40)])
        started = skewed.server_now()
        handed = [client.assign_next(session_id, f"a{n}") for n in range(40)]  # no resend: one send each
        ended = skewed.server_now()
    assert all(handed) and len({held.student_id for held in handed}) == 40
    assert all(started - timedelta(seconds=1) <= utc(entry["at"]) <= ended + timedelta(seconds=1)
               for entry in claims(skewed, session_id))  # the server's times
    for worker in (skewed.ahead, skewed.behind):
        assert "Task callqueue." not in log_of(worker)  # it took no message (none received)


def test_skewed_beats_reclaim_no_lease_early_and_bring_a_retry_and_a_callback_back_on_time(
        skewed: SkewedStack) -> None:
    session_id = f"beats-{uuid.uuid4().hex[:8]}"
    with AssignmentClient(skewed.running.settings, timeout_seconds=10) as client:
        client.import_students(session_id, [{"student_id": f"s{n:02d}"} for n in range(12)])
        client.set_lease(session_id, 600)
        client.set_campaign(session_id, retry_rules={"no_answer": {"delay_seconds": 3, "max_attempts": 2}})
        held = [client.assign_next(session_id, f"holder{n}") for n in range(8)]
        retried = client.assign_next(session_id, "caller-r")
        retry = client.complete(session_id, retried.student_id, "caller-r", "no_answer", retried.assignment_token)
        called = client.assign_next(session_id, "caller-c")
        promised = utc(retry.completed_at) + timedelta(seconds=4)
        client.complete(session_id, called.student_id, "caller-c", "call_back", called.assignment_token,
                        callback_at=promised)
        back: dict[str, datetime] = {}
        deadline = time.monotonic() + 12
        while len(back) < 2 and time.monotonic() < deadline:
            got = client.assign_next(session_id, f"taker{len(back)}")
            if got is not None and got.student_id in (retried.student_id, called.student_id):
                back[got.student_id] = skewed.server_now()
            elif got is not None:
                client.complete(session_id, got.student_id, got.assigned_to, "reached", got.assignment_token)
            time.sleep(0.2)
        for one in held:  # two beats sent reclaim_expired every second meanwhile
            assert client.heartbeat(session_id, one.student_id, one.assigned_to, one.assignment_token).status == \
                "renewed"
    beat_logs = "".join(beat.log_path.read_text(errors="replace")[-1500:] for beat in skewed.beats)
    assert set(back) == {retried.student_id, called.student_id}, f"a retry or callback never came back: {beat_logs}"
    due = {retried.student_id: utc(retry.next_attempt_at), called.student_id: promised}
    for student, claimed_at in claims_by_student(skewed, session_id).items():
        if student in due:
            assert due[student] <= claimed_at[-1] <= due[student] + timedelta(seconds=4), student
    events = {entry["event"] for document in skewed.running.database[STUDENTS].find({"call_session_id": session_id})
              for entry in document["history"]}
    assert "reclaimed" not in events
    for beat in skewed.beats:  # both beats send their jobs, and no job of either arrives already expired
        assert "Sending due task promote-due" in beat.log_path.read_text(errors="replace")
    assert "Discarding revoked task" not in log_of(skewed.running.assignments_worker)


def claims_by_student(stack: SkewedStack, session_id: str) -> dict[str, list[datetime]]:
    found: dict[str, list[datetime]] = {}
    for entry in claims(stack, session_id):
        found.setdefault(entry["student_id"], []).append(utc(entry["at"]))
    return found


def test_a_skewed_worker_that_takes_messages_anyway_writes_and_compares_the_database_times(
        skewed: SkewedStack) -> None:
    """The gate turned off (a huge bound), and the true worker told to stop consuming: the skewed one serves."""
    session_id = f"ungated-{uuid.uuid4().hex[:8]}"
    running = skewed.running
    true_worker = running.assignments_worker.hostname
    with AssignmentClient(running.settings, timeout_seconds=10) as client:
        client.import_students(session_id, [{"student_id": f"s{n}"} for n in range(6)])
        client.app.control.cancel_consumer(ASSIGNMENTS_QUEUE, destination=[true_worker], reply=True)
        try:
            for offset in (-HOUR, HOUR):
                worker = skewed.worker(offset, f"ungated{offset:+d}", CALLQUEUE_MAX_CLOCK_SKEW_SECONDS="100000")
                try:
                    skewed.wait_for_clock(worker, paused=False)
                    served_by_skewed_worker(skewed, client, session_id, worker, offset)
                finally:
                    worker.stop()
        finally:
            client.app.control.add_consumer(ASSIGNMENTS_QUEUE, destination=[true_worker], reply=True)


def served_by_skewed_worker(stack: SkewedStack, client: AssignmentClient, session_id: str, worker: CeleryWorker,
                            offset: int) -> None:
    """Claims (lease 600 s) and a retry made through ``worker``; its reclaim and promotion take nothing early."""
    def call(task: str, **kwargs: Any) -> dict[str, Any]:
        message = client.app.send_task(task, kwargs=kwargs)  # no expiry: a worker ahead would discard it
        return message.get(timeout=30)

    call("callqueue.set_lease", call_session_id=session_id, lease_seconds=600)
    call("callqueue.set_campaign", call_session_id=session_id,
         retry_rules={"no_answer": {"delay_seconds": 30, "max_attempts": 2}})
    before = stack.server_now()
    held = call("callqueue.assign_next_student", call_session_id=session_id, assistant_id=f"h{offset}")
    retried = call("callqueue.assign_next_student", call_session_id=session_id, assistant_id=f"r{offset}")
    done = call("callqueue.complete_student", call_session_id=session_id, student_id=retried["student_id"],
                assistant_id=retried["assigned_to"], outcome="no_answer", assignment_token=retried["assignment_token"])
    after = stack.server_now()
    assert call("callqueue.reclaim_expired") == {"status": "ok", "reclaimed": 0}
    promoted = call("callqueue.promote_due")
    assert promoted["status"] == "ok"
    document = stack.running.database[STUDENTS].find_one({"_id": held["student_id"]})
    claimed_at = utc(document["history"][-1]["at"])
    assert before - timedelta(seconds=1) <= claimed_at <= after + timedelta(seconds=1)
    assert utc(document["lease_expires_at"]) - claimed_at == timedelta(seconds=600)
    waiting = stack.running.database[STUDENTS].find_one({"_id": retried["student_id"]})
    assert waiting["lane"] == "s:" and waiting["waiting_for"] == "retry"  # due in 30 s: not promoted early
    due = datetime.fromisoformat(done["next_attempt_at"])
    assert before + timedelta(seconds=29) <= due <= after + timedelta(seconds=31)
    assert "Task callqueue.assign_next_student[" in log_of(worker)
    call("callqueue.release_student", call_session_id=session_id, student_id=held["student_id"],
         assistant_id=held["assigned_to"], assignment_token=held["assignment_token"])
