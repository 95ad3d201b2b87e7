"""Only JSON crosses the wire: a pickled (or YAML) task message is refused by the worker and nothing in it runs.

Each message is built by hand with kombu, with Celery's protocol-2 headers
naming a real task, and carries a payload that would create a canary file
the moment anything unpickled it. The workers run in a private stack (own
database, own Redis databases, no beat), so "nothing changed" is checked
byte for byte and the log read is that of the worker that got the message.
"""

from __future__ import annotations

import os
import pickle
import shlex
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
from celery.result import AsyncResult
from pymongo import MongoClient

from devstack.servers import RedisServer
from callqueue.producers.client import AssignmentClient
from tests.integration.helpers import fingerprint
from tests.integration.private_stack import PrivateStack, private_stack, publish_raw, queue_length
from callqueue.workers.app import ASSIGNMENTS_QUEUE, BATCH_QUEUE

PICKLE = "application/x-python-serialize"
YAML = "application/x-yaml"
REFUSAL = "Refusing to deserialize untrusted content of type"
EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


class Canary:
    """Pickles to ``os.system("touch <path>")``: unpickling it anywhere creates the file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return os.system, (f"touch {shlex.quote(str(self.path))}",)


@pytest.fixture(scope="module")
def transport(server_env: dict[str, str], redis_server: RedisServer,
              mongo_client: MongoClient) -> Iterator[PrivateStack]:
    with private_stack(server_env, redis_server, mongo_client, "transport", broker_db=10, backend_db=11) as running:
        yield running


@pytest.fixture()
def client(transport: PrivateStack) -> Iterator[AssignmentClient]:
    with transport.client() as assignment_client:
        yield assignment_client


@pytest.fixture()
def pending_session(client: AssignmentClient) -> str:
    """A session of three pending students nobody holds."""
    session = f"transport-{uuid.uuid4().hex[:12]}"
    client.import_students(session, [{"student_id": f"s{n}", "name": f"Student {n}"} for n in range(3)])
    return session


def pickled_calls(session: str, canary: Path) -> dict[str, tuple[str, tuple[Any, ...], dict[str, Any]]]:
    """Per task: (queue, args, kwargs) whose run would claim a student or import one, plus the canary."""
    return {
        "callqueue.assign_next_student": (ASSIGNMENTS_QUEUE, (session, "mallory", Canary(canary)), {}),
        "callqueue.import_students": (BATCH_QUEUE, (session, [{"student_id": "smuggled", "name": Canary(canary)}]), {}),
    }


def test_the_canary_payload_is_live_when_unpickled(tmp_path: Path) -> None:
    """The payload used below really would run: unpickling it in a throwaway process creates the file."""
    canary = tmp_path / "proof"
    payload = pickle.dumps(((Canary(canary),), {}, EMBED))
    subprocess.run([sys.executable, "-c", "import pickle, sys; pickle.loads(sys.stdin.buffer.read())"],
                   input=payload, check=True, timeout=30)
    assert canary.exists()


@pytest.mark.parametrize("task", ["callqueue.assign_next_student", "callqueue.import_students"])
def test_pickled_message_is_refused_and_nothing_runs(transport: PrivateStack, client: AssignmentClient,
                                                     pending_session: str, tmp_path: Path, task: str) -> None:
    canary = tmp_path / f"canary-{uuid.uuid4().hex}"
    queue, args, kwargs = pickled_calls(pending_session, canary)[task]
    task_id = str(uuid.uuid4())
    before = fingerprint(transport.database)

    publish_raw(transport.settings.broker_url, queue, task, task_id, pickle.dumps((args, kwargs, EMBED)),
                PICKLE, "binary")

    record = transport.wait_for_log_record(queue, canary.name)
    assert f"{REFUSAL} pickle ({PICKLE})" in record
    assert "Received invalid task message" in record
    assert queue_length(transport.settings.broker_url, queue) == 0  # discarded, not requeued
    assert not canary.exists()
    assert fingerprint(transport.database) == before
    assert AsyncResult(task_id, app=client.app).state == "PENDING"
    transport.check_intact()
    served = client.assign_next(pending_session, "alice")
    assert served is not None and client.stats(pending_session).holders == ("alice",)
    assert not canary.exists()


def test_pickled_message_without_protocol_headers_is_refused_too(transport: PrivateStack, client: AssignmentClient,
                                                                 pending_session: str, tmp_path: Path) -> None:
    """An old-style (protocol 1) message names its task in the body; the worker must not unpickle that either."""
    canary = tmp_path / f"canary-{uuid.uuid4().hex}"
    task_id = str(uuid.uuid4())
    body = {"task": "callqueue.assign_next_student", "id": task_id, "kwargs": {}, "retries": 0, "eta": None,
            "args": [pending_session, "mallory", Canary(canary)]}
    before = fingerprint(transport.database)

    publish_raw(transport.settings.broker_url, ASSIGNMENTS_QUEUE, "callqueue.assign_next_student", task_id,
                pickle.dumps(body), PICKLE, "binary", protocol_headers=False)

    record = transport.wait_for_log_record(ASSIGNMENTS_QUEUE, canary.name)
    assert f"{REFUSAL} pickle ({PICKLE})" in record
    assert_nothing_ran(transport, client, canary, before, task_id, pending_session)


def test_yaml_message_is_refused_and_nothing_runs(transport: PrivateStack, client: AssignmentClient,
                                                  pending_session: str, tmp_path: Path) -> None:
    canary = tmp_path / f"canary-{uuid.uuid4().hex}"
    task_id = str(uuid.uuid4())
    command = f"touch {shlex.quote(str(canary))}"
    body = (f'- ["{pending_session}", "mallory", !!python/object/apply:os.system ["{command}"]]\n'
            "- {}\n- {callbacks: null, errbacks: null, chain: null, chord: null}\n")
    before = fingerprint(transport.database)

    publish_raw(transport.settings.broker_url, ASSIGNMENTS_QUEUE, "callqueue.assign_next_student", task_id,
                body, YAML, "utf-8")

    record = transport.wait_for_log_record(ASSIGNMENTS_QUEUE, canary.name)
    assert REFUSAL in record and YAML in record
    assert_nothing_ran(transport, client, canary, before, task_id, pending_session)


def test_the_same_call_sent_as_json_is_served(transport: PrivateStack, client: AssignmentClient,
                                              pending_session: str) -> None:
    """Control: the hand-built message itself is well-formed; only the content type made it unacceptable."""
    task_id = str(uuid.uuid4())
    body = ('[["%s", "mallory", null], {}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}]'
            % pending_session)

    publish_raw(transport.settings.broker_url, ASSIGNMENTS_QUEUE, "callqueue.assign_next_student", task_id,
                body, "application/json", "utf-8")

    state, answer = transport.wait(AsyncResult(task_id, app=client.app))
    assert state == "SUCCESS" and answer["status"] == "assigned" and answer["assigned_to"] == "mallory"
    assert client.stats(pending_session).holders == ("mallory",)


def assert_nothing_ran(transport: PrivateStack, client: AssignmentClient, canary: Path, before: str,
                       task_id: str, pending_session: str) -> None:
    """The refused message is gone, ran nothing, changed nothing, and the worker still serves."""
    assert queue_length(transport.settings.broker_url, ASSIGNMENTS_QUEUE) == 0
    assert not canary.exists()
    assert fingerprint(transport.database) == before
    assert AsyncResult(task_id, app=client.app).state == "PENDING"
    transport.check_intact()
    assert client.assign_next(pending_session, "alice") is not None
