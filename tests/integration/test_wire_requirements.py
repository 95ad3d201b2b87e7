"""What a Celery client in any language must send, and what happens when it does not.

Each message here is pushed onto Redis by hand, in the envelope kombu's Redis
transport reads (the same JSON a Node.js, Go or Java client writes), so the
test controls every field: content type, protocol headers, queue, expires.
The workers run in a private stack (own database, own Redis databases, no
beat), so "nothing ran" is checked byte for byte.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator

import pytest
import redis
from celery.result import AsyncResult
from pymongo import MongoClient

from devstack.servers import RedisServer
from callqueue.producers.client import AssignmentClient
from tests.integration.helpers import fingerprint
from tests.integration.private_stack import PrivateStack, private_stack, queue_length
from callqueue.workers.app import ASSIGNMENTS_QUEUE, BATCH_QUEUE

TASK = "callqueue.assign_next_student"
EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
INVALID = "Received invalid task message"


@pytest.fixture(scope="module")
def wire(server_env: dict[str, str], redis_server: RedisServer,
         mongo_client: MongoClient) -> Iterator[PrivateStack]:
    with private_stack(server_env, redis_server, mongo_client, "wire", broker_db=2, backend_db=3) as running:
        yield running


@pytest.fixture()
def client(wire: PrivateStack) -> Iterator[AssignmentClient]:
    with wire.client() as assignment_client:
        yield assignment_client


@pytest.fixture()
def session(client: AssignmentClient) -> str:
    """A session of three pending students nobody holds."""
    name = f"wire-{uuid.uuid4().hex[:12]}"
    client.import_students(name, [{"student_id": f"s{n}", "name": f"Student {n}"} for n in range(3)])
    return name


def push(broker_url: str, queue: str, body: bytes, headers: dict[str, Any],
         content_type: str | None = "application/json", task_id: str | None = None) -> None:
    """LPUSH one message in kombu's Redis envelope; ``content_type=None`` leaves the field out."""
    envelope: dict[str, Any] = {
        "body": base64.b64encode(body).decode(), "content-encoding": "utf-8", "headers": headers,
        "properties": {"body_encoding": "base64", "delivery_mode": 2, "delivery_tag": str(uuid.uuid4()),
                       "correlation_id": task_id, "delivery_info": {"exchange": "", "routing_key": queue}},
    }
    if content_type is not None:
        envelope["content-type"] = content_type
    with redis.Redis.from_url(broker_url) as connection:
        connection.lpush(queue, json.dumps(envelope))


def drop_queue(broker_url: str, queue: str) -> None:
    with redis.Redis.from_url(broker_url) as connection:
        connection.delete(queue)


def v2_headers(task_id: str, **extra: Any) -> dict[str, Any]:
    """The protocol-2 headers a minimal client sends: language, task name, id (as celery-node does)."""
    return {"lang": "js", "task": TASK, "id": task_id, **extra}


def claim_body(session: str, assistant: str, embed: Any = EMBED) -> bytes:
    return json.dumps([[session, assistant, None], {}, embed]).encode()


def holders(client: AssignmentClient, session: str) -> tuple[str, ...]:
    return client.stats(session).holders


def wait_state(wire: PrivateStack, client: AssignmentClient, task_id: str) -> tuple[str, Any]:
    return wire.wait(AsyncResult(task_id, app=client.app), timeout_seconds=30)


def assert_dropped_unrun(wire: PrivateStack, client: AssignmentClient, session: str, task_id: str,
                         before: str) -> None:
    """Gone from the queue, no answer, database unchanged, the same workers still serving."""
    assert queue_length(wire.settings.broker_url, ASSIGNMENTS_QUEUE) == 0
    assert AsyncResult(task_id, app=client.app).state == "PENDING"
    assert fingerprint(wire.database) == before
    wire.check_intact()
    assert client.assign_next(session, "alice") is not None


def test_minimal_protocol_2_json_message_is_served(wire: PrivateStack, client: AssignmentClient,
                                                   session: str) -> None:
    """Three headers (lang, task, id), JSON content type and an empty embed are all a client needs."""
    task_id = str(uuid.uuid4())
    push(wire.settings.broker_url, ASSIGNMENTS_QUEUE, claim_body(session, "minimal", {}), v2_headers(task_id),
         task_id=task_id)
    state, answer = wait_state(wire, client, task_id)
    assert state == "SUCCESS" and answer["status"] == "assigned" and answer["assigned_to"] == "minimal"
    assert holders(client, session) == ("minimal",)


@pytest.mark.parametrize("content_type", [None, "application/text", "application/data"])
def test_message_without_json_content_type_is_dropped_unread_and_the_worker_lives(
        wire: PrivateStack, client: AssignmentClient, session: str, content_type: str | None) -> None:
    marker = f"untyped-{uuid.uuid4().hex}"
    task_id = str(uuid.uuid4())
    before = fingerprint(wire.database)

    push(wire.settings.broker_url, ASSIGNMENTS_QUEUE, claim_body(session, marker), v2_headers(task_id),
         content_type=content_type, task_id=task_id)

    record = wire.wait_for_log_record(ASSIGNMENTS_QUEUE, marker)
    assert INVALID in record and "not application/json" in record
    assert_dropped_unrun(wire, client, session, task_id, before)


@pytest.mark.parametrize("body", [
    '"just a string MARK"', '{"args": ["MARK", "a"]}', '[["MARK", "a"]]', '["MARK", {}, {}]', '[[], ["MARK"], {}]',
    '[[], {}, ["MARK"]]', '[["MARK"], {}, {}, {}]',
], ids=["string", "object", "one-item", "args-not-list", "kwargs-not-object", "embed-not-object", "four-items"])
def test_json_body_that_is_not_args_kwargs_embed_is_dropped_and_the_worker_lives(
        wire: PrivateStack, client: AssignmentClient, session: str, body: str) -> None:
    marker = f"shapeless-{uuid.uuid4().hex}"
    task_id = str(uuid.uuid4())
    before = fingerprint(wire.database)

    push(wire.settings.broker_url, ASSIGNMENTS_QUEUE, body.replace("MARK", marker).encode(), v2_headers(task_id),
         task_id=task_id)

    record = wire.wait_for_log_record(ASSIGNMENTS_QUEUE, marker)
    assert INVALID in record
    assert_dropped_unrun(wire, client, session, task_id, before)


def test_protocol_1_json_message_naming_its_task_in_the_body_is_still_served(
        wire: PrivateStack, client: AssignmentClient, session: str) -> None:
    task_id = str(uuid.uuid4())
    body = {"task": TASK, "id": task_id, "args": [session, "old-protocol"], "kwargs": {}}
    push(wire.settings.broker_url, ASSIGNMENTS_QUEUE, json.dumps(body).encode(), {}, task_id=task_id)
    state, answer = wait_state(wire, client, task_id)
    assert state == "SUCCESS" and answer["assigned_to"] == "old-protocol"


def test_message_on_a_queue_no_worker_reads_waits_there_unanswered(
        wire: PrivateStack, client: AssignmentClient, session: str) -> None:
    """``celery`` is the default queue of Celery clients; our workers read only ``assignments`` and ``batch``."""
    task_id = str(uuid.uuid4())
    drop_queue(wire.settings.broker_url, "celery")
    try:
        push(wire.settings.broker_url, "celery", claim_body(session, "default-queue"), v2_headers(task_id),
             task_id=task_id)
        time.sleep(3)
        assert queue_length(wire.settings.broker_url, "celery") == 1
        assert AsyncResult(task_id, app=client.app).state == "PENDING"
        assert holders(client, session) == ()
    finally:
        drop_queue(wire.settings.broker_url, "celery")


def test_a_task_on_the_other_queue_runs_in_that_queue_s_pool(wire: PrivateStack, client: AssignmentClient,
                                                              session: str) -> None:
    task_id = str(uuid.uuid4())
    push(wire.settings.broker_url, BATCH_QUEUE, claim_body(session, "wrong-queue"), v2_headers(task_id),
         task_id=task_id)
    state, answer = wait_state(wire, client, task_id)
    assert state == "SUCCESS" and answer["assigned_to"] == "wrong-queue"
    assert "succeeded" in wire.wait_for_log_record(BATCH_QUEUE, f"[{task_id}] succeeded")
    assert f"[{task_id}]" not in wire.assignments_worker.process.log_path.read_text(errors="replace")


def test_expires_as_a_number_makes_the_message_invalid(wire: PrivateStack, client: AssignmentClient,
                                                       session: str) -> None:
    marker = f"numeric-expiry-{uuid.uuid4().hex}"
    task_id = str(uuid.uuid4())
    before = fingerprint(wire.database)
    push(wire.settings.broker_url, ASSIGNMENTS_QUEUE, claim_body(session, marker),
         v2_headers(task_id, expires=30), task_id=task_id)
    record = wire.wait_for_log_record(ASSIGNMENTS_QUEUE, marker)
    assert INVALID in record and "invalid expires value 30" in record
    assert_dropped_unrun(wire, client, session, task_id, before)


def test_a_late_message_runs_without_expires_and_is_discarded_with_it(
        wire: PrivateStack, client: AssignmentClient, session: str) -> None:
    """While no worker reads the queue, two presses wait; only the one with ``expires`` is discarded when it passed."""
    worker = [wire.assignments_worker.hostname]
    lasting, expiring = str(uuid.uuid4()), str(uuid.uuid4())
    soon = (datetime.now(timezone.utc) + timedelta(seconds=1)).isoformat(timespec="milliseconds")
    client.app.control.cancel_consumer(ASSIGNMENTS_QUEUE, destination=worker, reply=True, timeout=10)
    try:
        push(wire.settings.broker_url, ASSIGNMENTS_QUEUE, claim_body(session, "gave-up-long-ago"),
             v2_headers(lasting), task_id=lasting)
        push(wire.settings.broker_url, ASSIGNMENTS_QUEUE, claim_body(session, "gave-up-too"),
             v2_headers(expiring, expires=soon.replace("+00:00", "Z")), task_id=expiring)
        time.sleep(2.5)
        assert queue_length(wire.settings.broker_url, ASSIGNMENTS_QUEUE) == 2
    finally:
        client.app.control.add_consumer(ASSIGNMENTS_QUEUE, destination=worker, reply=True, timeout=10)
    assert wait_state(wire, client, expiring)[0] == "REVOKED"
    state, answer = wait_state(wire, client, lasting)
    assert state == "SUCCESS" and answer["assigned_to"] == "gave-up-long-ago"
    assert holders(client, session) == ("gave-up-long-ago",)
