"""Durability on a replica set: what every store operation asks of MongoDB, and what health reports.

Uses the session's 3-member replica set (``replica_set`` fixture) and, for the
standalone case, the suite's standalone mongod.
"""

from __future__ import annotations

import uuid
from contextlib import contextmanager
from typing import Iterator

import pymongo
import pytest
from pymongo import MongoClient
from pymongo.database import Database

from devstack.replicaset import ReplicaSet
from tests.integration.test_health import checks_by_component, run_health
from callqueue.workers.exceptions import FailoverInProgress
from callqueue.workers.store import AssignmentStore, NewStudent, ensure_indexes
from callqueue.workers.store.durability import can_fail_over

MAJORITY_JOURNALED = {"w": "majority", "j": True}
# Deadline for setting up and checking outside the fault (a loaded machine can take more than a second).
SETUP_TIMEOUT_SECONDS = 30


@pytest.fixture()
def rs_database(replica_set: ReplicaSet) -> Iterator[Database]:
    """A fresh database on the replica set, with a client whose operations time out after 1 s."""
    name = f"durability_{uuid.uuid4().hex[:8]}"
    with MongoClient(replica_set.url, tz_aware=True, timeoutMS=1000) as client:
        with pymongo.timeout(SETUP_TIMEOUT_SECONDS):
            ensure_indexes(client[name])
        yield client[name]
        with pymongo.timeout(SETUP_TIMEOUT_SECONDS):
            client.drop_database(name)


@contextmanager
def secondaries_frozen(replica_set: ReplicaSet) -> Iterator[None]:
    """Both secondaries frozen (SIGSTOP): the primary is up, but no majority can acknowledge a write."""
    primary = replica_set.wait_for_primary(30)
    secondaries = [member for member in replica_set.members if member is not primary]
    for member in secondaries:
        replica_set.freeze(member)
    try:
        yield
    finally:
        for member in secondaries:
            replica_set.thaw(member)
        replica_set.wait_until_healthy(60)


def test_every_store_write_waits_for_a_journaled_majority_and_reads_are_majority_from_the_primary(
        rs_database: Database) -> None:
    store = AssignmentStore(rs_database)
    for collection in (store.students, store.sessions, store.students_recheck):
        assert collection.write_concern.document == MAJORITY_JOURNALED
        assert collection.read_preference.mongos_mode == "primary"
    assert store.students.read_concern.level == "majority"
    assert store.sessions.read_concern.level == "majority"
    assert store.students_recheck.read_concern.level == "linearizable"
    assert can_fail_over(rs_database.client)


def test_rechecks_on_a_standalone_read_majority_because_it_has_no_linearizable(engine_database: Database) -> None:
    store = AssignmentStore(engine_database)
    assert store.students_recheck.read_concern.level == "majority"
    assert store.students.write_concern.document == MAJORITY_JOURNALED
    assert not can_fail_over(engine_database.client)


def test_a_claim_no_majority_acknowledges_is_never_answered_and_its_retry_gets_the_same_student(
        rs_database: Database, replica_set: ReplicaSet) -> None:
    store = AssignmentStore(rs_database, bulk_timeout_seconds=SETUP_TIMEOUT_SECONDS)
    store.import_students("s", None, [NewStudent({"name": "Ada"}, key="ada"), NewStudent({"name": "Bo"}, key="bo")])
    with pymongo.timeout(SETUP_TIMEOUT_SECONDS):
        session = store.open_session("s")
    with secondaries_frozen(replica_set):
        with pytest.raises(FailoverInProgress):
            store.assign_next(session, "alice", "press-1")  # applied on the primary, never acknowledged
        with pytest.raises(FailoverInProgress):
            store.assign_next(session, "alice", "press-1")  # the recheck will not answer from it either
    with pymongo.timeout(SETUP_TIMEOUT_SECONDS):
        answer = store.assign_next(session, "alice", "press-1")
    assert (answer.student_id, answer.assignment_token, answer.already_held) == ("s:ada", 1, False)
    with pymongo.timeout(SETUP_TIMEOUT_SECONDS):
        assert store.students.count_documents({"assigned_to": "alice"}) == 1


def test_health_reports_majority_acknowledged_writes_on_the_replica_set(
        replica_set: ReplicaSet, server_env: dict[str, str]) -> None:
    result = run_health({**server_env, "MONGO_URL": replica_set.url}, "--json", "--no-workers")
    durability = checks_by_component(result)["mongodb durability"]
    assert result.exit_code == 0, result.output
    assert durability["ok"] and not durability["warning"]
    assert "majority-acknowledged write" in durability["detail"] and "3 members" in durability["detail"]


def test_health_warns_that_a_standalone_cannot_give_majority_writes(server_env: dict[str, str]) -> None:
    result = run_health(server_env, "--json", "--no-workers")
    durability = checks_by_component(result)["mongodb durability"]
    assert result.exit_code == 0, result.output
    assert durability["ok"] and durability["warning"]
    assert "cannot give majority-acknowledged writes" in durability["detail"]


def test_health_warns_about_a_url_that_asks_for_w1(replica_set: ReplicaSet, server_env: dict[str, str]) -> None:
    result = run_health({**server_env, "MONGO_URL": f"{replica_set.url}&w=1"}, "--json", "--no-workers")
    durability = checks_by_component(result)["mongodb durability"]
    assert result.exit_code == 0, result.output
    assert durability["warning"] and "w=1" in durability["detail"]


def test_health_fails_when_no_majority_acknowledges_a_write(
        replica_set: ReplicaSet, server_env: dict[str, str]) -> None:
    with secondaries_frozen(replica_set):
        result = run_health({**server_env, "MONGO_URL": replica_set.url}, "--json", "--no-workers",
                            "--timeout", "1")
    durability = checks_by_component(result)["mongodb durability"]
    assert result.exit_code == 1, result.output
    assert not durability["ok"] and "no majority-acknowledged write" in durability["detail"]
