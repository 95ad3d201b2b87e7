"""No student lost or doubled while workers die and Redis and MongoDB restart.

64 callers (two processes of 32 threads, each with its own producer client)
spending 0.8 s on a call on average work through 2,400 students (for at least
30 s however fast the presses are: longer than the faults take) while, in turn,
a worker child is SIGKILLed every two seconds, redis-server is stopped and started again, and mongod is stopped
and started again on the same data directory. Then 32 callers pressing "save
and next" (``complete_and_next``: one request records a call and claims the
next student) drain 2,000 students while a worker child is SIGKILLed every
second and redis-server restarts once. Everything runs on servers of this
module's own, so the restarts touch no other test.
"""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
from pymongo import MongoClient

from devstack.assistants import Behaviour, run_in_background
from devstack.audit import CompletionAnswer, Handout, audit_session
from devstack.servers import MongoServer, RedisServer
from devstack.stack import ServersStack, StackOptions
from callqueue.producers.client import AssignmentClient
from tests.integration.helpers import poll, seed

STUDENTS = 2_400
CALL_SECONDS = 1.6  # a call lasts up to this long, half of it on average
KILLS = 6
ONE_TRIP_STUDENTS = 2_000
ONE_TRIP_KILL_EVERY_SECONDS = 1.0
ONE_TRIP_BROKER_RESTART_AFTER_KILLS = 3
HELD_CLAIM_MS = 4000
FAULT_ENV = {
    "MONGO_DB": "faults",
    "CALLQUEUE_TASK_MAX_RETRIES": "12",
    "CALLQUEUE_TASK_RETRY_BACKOFF_MAX_SECONDS": "2",
    "CALLQUEUE_MONGO_SERVER_SELECTION_TIMEOUT_SECONDS": "2",
    "CALLQUEUE_REDIS_MAX_RETRIES": "10",
    "CALLQUEUE_CLIENT_RETRIES": "25",
    "CALLQUEUE_LOG_FORMAT": "json",
}


class FaultyStack(ServersStack):
    """Own mongod and redis-server plus worker pools, with the knobs to break them."""

    def __init__(self, workdir: Path, base_env: dict[str, str]) -> None:
        # Test commands on: a fail point can hold one operation inside mongod, to kill a worker mid-task.
        super().__init__(MongoServer(workdir, extra_args=("--setParameter", "enableTestCommands=1")),
                         RedisServer(workdir), {**base_env, **FAULT_ENV},
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
    timeline: list[str] = []
    killed: list[int] = []

    callers, logs = run_in_background(settings, session_id, processes=2, threads_each=32,
                                      behaviour=Behaviour(call_seconds=CALL_SECONDS, timeout_seconds=8))
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


def kill_every_second_and_restart_the_broker_once(faulty: FaultyStack, callers: threading.Thread,
                                                  timeline: list[str], killed: list[int]) -> None:
    """While the callers work: SIGKILL a worker child every second; after the third, restart redis-server."""
    rng = random.Random(11)
    started = time.monotonic()
    restarted = False
    while callers.is_alive():
        time.sleep(ONE_TRIP_KILL_EVERY_SECONDS)
        victim = faulty.kill_a_worker_child(rng)
        if victim is not None and callers.is_alive():
            killed.append(victim)
            timeline.append(f"{time.monotonic() - started:5.1f}s killed worker child {victim}")
        if len(killed) == ONE_TRIP_BROKER_RESTART_AFTER_KILLS and not restarted:
            faulty.redis.restart(down_seconds=1)
            restarted = True
            timeline.append(f"{time.monotonic() - started:5.1f}s restarted redis-server")


def pair_records(log_text: str, session_id: str) -> list[dict]:
    """The ``completed_and_next`` log records of the session (one per run of the task, repeats included)."""
    records = [json.loads(line) for line in log_text.splitlines() if line.startswith("{")]
    return [record for record in records
            if record.get("event") == "completed_and_next" and record.get("session") == session_id]


def test_one_trip_presses_lose_and_double_nothing_through_kills_every_second_and_a_broker_restart(
        faulty: FaultyStack) -> None:
    settings = faulty.settings
    session_id = "one-trip-session"
    with AssignmentClient(settings, timeout_seconds=30) as client:
        seed(client, session_id, ONE_TRIP_STUDENTS)
    worker = faulty.stack.workers[0]
    log_offset = worker.process.log_path.stat().st_size
    timeline: list[str] = []
    killed: list[int] = []

    callers, logs = run_in_background(settings, session_id, processes=2, threads_each=16,
                                      behaviour=Behaviour(call_seconds=0.01, timeout_seconds=8, one_trip=True))
    kill_every_second_and_restart_the_broker_once(faulty, callers, timeline, killed)
    callers.join(timeout=120)

    assert not callers.is_alive(), "callers did not finish"
    assert worker.process.alive(), worker.process.log_tail(40)
    assert "restarted redis-server" in "".join(timeline) and len(set(killed)) >= 5, timeline
    assert [log.errors for log in logs if log.errors] == [], timeline
    assert len(logs) == 32 and all(log.exhausted for log in logs)  # every caller ran until nobody was left
    handouts: list[Handout] = [handout for log in logs for handout in log.handouts]
    completions: list[CompletionAnswer] = [answer for log in logs for answer in log.completions]
    with MongoClient(settings.mongo_url) as mongo:
        report = audit_session(mongo[settings.mongo_db], session_id, handouts, completions=completions)
    assert report.clean, (report.double_handouts[:5], report.answers_not_in_history[:5],
                          report.tokens_given_twice[:5], report.completions_not_in_history[:5],
                          report.requests_claiming_twice[:5], report.completed_twice[:5])
    assert (report.students, report.completed, report.final_completions) == (ONE_TRIP_STUDENTS,) * 3
    assert (report.pending, report.held, report.claims) == (0, 0, ONE_TRIP_STUDENTS)  # each claimed once
    assert len(completions) == ONE_TRIP_STUDENTS and len({h.student_id for h in handouts}) == ONE_TRIP_STUDENTS
    # A press the workers ran twice (a redelivery after a killed child, a resend across the broker restart)
    # answered the same pair both times: the same completion and the same next student under the same token;
    # a run that came after the caller had moved on and completed that student too was refused
    # (request_already_served), never handed out another student.
    runs: dict[str, list[dict]] = {}
    for record in pair_records(worker.process.log_path.read_text()[log_offset:], session_id):
        runs.setdefault(record["request_id"], []).append(record)
    repeated = {request: records for request, records in runs.items() if len(records) > 1}
    same_pair = [request for request, records in repeated.items()
                 if len({(r["student"], r["token"], r["next"], r.get("next_student"), r.get("next_token"))
                         for r in records}) == 1]
    print(f"one-trip faults: {timeline}; {len(runs)} presses logged, {len(repeated)} run more than once, "
          f"{len(same_pair)} of them with the same pair every time")
    for records in repeated.values():
        assert len({(r["student"], r["token"]) for r in records}) == 1, records  # one completion
        given = {(r["next_student"], r["next_token"]) for r in records if r["next"] == "assigned"}
        assert len(given) <= 1, records  # never a second student
        assert {r.get("next_code") for r in records if r["next"] == "rejected"} <= {"request_already_served"}, records


def test_a_one_trip_press_whose_worker_died_between_its_steps_is_redelivered_and_answers_one_pair(
        faulty: FaultyStack) -> None:
    """The claim (the press's second ``findAndModify``, after the completion's) is held in mongod by a fail
    point while every child of the pool is SIGKILLed: the message comes back, runs again, and its answer is
    the completion and one student; the held claim, let go later, claims nobody else."""
    settings, session_id, request = faulty.settings, "one-trip-redelivery", "press-redelivered"
    worker = faulty.stack.workers[0]
    log_offset = worker.process.log_path.stat().st_size
    answers: list = []
    with AssignmentClient(settings, timeout_seconds=30) as client, MongoClient(settings.mongo_url) as mongo:
        seed(client, session_id, 3)
        held = client.assign_next(session_id, "alice")
        students = mongo[settings.mongo_db]["call_session_students"]
        mongo.admin.command("configureFailPoint", "failCommand", mode={"skip": 1, "times": 1},
                            data={"failCommands": ["findAndModify"], "blockConnection": True,
                                  "blockTimeMS": HELD_CLAIM_MS})
        try:
            caller = threading.Thread(target=lambda: answers.append(client.complete_and_next(
                session_id, held.student_id, "alice", "reached", held.assignment_token, request_id=request)))
            caller.start()
            assert poll(lambda: students.find_one({"_id": held.student_id})["filter_status"],
                        lambda status: status == "reached", 10), "the completion did not land"
            time.sleep(0.3)  # the claim is now held in mongod
            victims = worker.child_pids()
            for victim in victims:
                os.kill(victim, signal.SIGKILL)
            caller.join(timeout=60)
        finally:
            mongo.admin.command("configureFailPoint", "failCommand", mode="off")
        time.sleep(HELD_CLAIM_MS / 1000)  # the held claim has run (or failed) by now
        again = client.complete_and_next(session_id, held.student_id, "alice", "reached", held.assignment_token,
                                         request_id=request)
        claims = [(document["_id"], entry["token"]) for document in students.find({"call_session_id": session_id})
                  for entry in document["history"] if entry["event"] == "claimed" and entry["request_id"] == request]

    assert answers and answers[0] == again, (answers, again)  # the redelivered run and a resend: one pair
    done = answers[0]
    assert done.completion.student_id == held.student_id and done.completion.outcome == "reached"
    assert done.student is not None and claims == [(done.student.student_id, done.student.assignment_token)]
    completed = [record for record in map(json.loads, filter(
        lambda line: line.startswith("{"), worker.process.log_path.read_text()[log_offset:].splitlines()))
                 if record.get("event") == "completed" and record.get("student") == held.student_id]
    assert len(completed) >= 2, completed  # the first run got past the completion before its child died
    assert victims and not any(pid_alive(pid) for pid in victims)
