"""Shared helpers for tests that go through real workers."""

from __future__ import annotations

import hashlib
import re
import time
from typing import TYPE_CHECKING, Any, Callable

import bson
from kombu import Connection, Queue
from pymongo.database import Database

from callqueue.producers.client import AssignmentClient

if TYPE_CHECKING:
    from devstack.failover import FailoverRun


def students(count: int, prefix: str = "s") -> list[dict[str, Any]]:
    """``count`` import rows with ids ``<prefix>00000``..."""
    return [{"student_id": f"{prefix}{n:05d}", "name": f"Student {n}", "phone": f"+1555{n:07d}"}
            for n in range(count)]


def seed(client: AssignmentClient, session_id: str, count: int) -> None:
    for start in range(0, count, 1000):
        client.import_students(session_id, students(count)[start:start + 1000], "test session")


def poll(read: Callable[[], Any], done: Callable[[Any], bool], seconds: float,
         interval_seconds: float = 0.25) -> Any:
    """Call ``read`` until ``done`` accepts its value or ``seconds`` pass; the last value either way."""
    deadline = time.monotonic() + seconds
    value = read()
    while not done(value) and time.monotonic() < deadline:
        time.sleep(interval_seconds)
        value = read()
    return value


def fingerprint(database: Database) -> str:
    """A digest of every document in every collection, byte for byte (BSON)."""
    digest = hashlib.sha256()
    for name in sorted(database.list_collection_names()):
        digest.update(name.encode())
        for document in database[name].find(sort=[("_id", 1)]):
            digest.update(bson.encode(document))
    return digest.hexdigest()


def session_fingerprint(database: Database, session_id: str) -> str:
    """A digest of one session (its document and its students, byte for byte) and of which documents exist.

    For tests on the shared stack, whose beat may move other tests' scheduled
    students at any moment: nothing in this session may change, and no
    document may appear or vanish anywhere.
    """
    digest = hashlib.sha256()
    for name in sorted(database.list_collection_names()):
        digest.update(name.encode())
        for document in database[name].find({}, {"_id": 1}, sort=[("_id", 1)]):
            digest.update(bson.encode(document))
    for document in database.call_sessions.find({"_id": session_id}):
        digest.update(bson.encode(document))
    for document in database.call_session_students.find({"call_session_id": session_id}, sort=[("_id", 1)]):
        digest.update(bson.encode(document))
    return digest.hexdigest()


def beat_job_succeeded(worker_log: str, task_name: str, after: str = "") -> bool:
    """Did the worker whose log this is run beat's ``task_name`` to success (after the last line holding
    ``after``, when given)? Flower does not list beat's jobs, which send no task events; the log does."""
    since = worker_log.rsplit(after, 1)[-1] if after else worker_log
    return re.search(rf"Task {re.escape(task_name)}\[[^\]]+\] succeeded", since) is not None


def hold_unacked_message(connect: Callable[[str], Connection], transport: str, queue_name: str) -> Connection:
    """A broker connection whose channel holds one unacknowledged message and whose transport is detached.

    The state a Redis restart or a Sentinel failover leaves the worker's
    consumer in: closing the transport came before closing its channel.
    """
    held = connect(transport)
    queue = Queue(queue_name, routing_key=queue_name)
    with held.Producer(serializer="json") as producer:
        producer.publish({"press": 1}, routing_key=queue_name, declare=[queue])
    message = held.default_channel.basic_get(queue_name, no_ack=False)
    assert message is not None
    held.transport.client = None
    return held


def take_message(connect: Callable[[str], Connection], transport: str, queue_name: str) -> dict | None:
    """Restore messages past their visibility timeout, then take one from the queue."""
    with connect(transport) as taker:
        channel = taker.default_channel
        channel.qos.restore_visible()
        message = channel.basic_get(queue_name, no_ack=True)
        return None if message is None else message.decode()


def assert_nothing_lost_or_doubled(run: "FailoverRun", callers: int, students: int,
                                   faults_outlived: bool = True) -> None:
    """Every press answered; no student handed to two assistants, lost, or completed twice.

    ``faults_outlived=False`` accepts callers that finished while the faults went on (a run that waited
    long for something that did not come)."""
    report = run.report
    if faults_outlived:
        assert run.callers_outlived_faults, f"the callers finished before the faults did: {run.timeline.lines()}"
    assert run.errors == [], run.timeline.lines()
    assert len(run.logs) == callers and all(log.exhausted for log in run.logs)  # every press answered
    assert report.clean, (report.double_handouts[:5], report.answers_not_in_history[:5],
                          report.tokens_given_twice[:5], report.completed_twice[:5],
                          report.assistants_holding_two[:5])
    assert (report.students, report.completed, report.pending, report.held) == (students, students, 0, 0)
    assert len({handout.student_id for handout in run.handouts}) == students
