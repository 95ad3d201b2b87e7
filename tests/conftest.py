"""Real servers for the whole test session: mongod, redis-server and Celery workers.

They start once (lazily, only for tests that ask for them) on free loopback
ports and are stopped by PID at the end, also when the run fails or is
interrupted. Tests isolate themselves by a fresh call session id, or a fresh
database for engine tests.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Iterator

import pytest
from pymongo import MongoClient
from pymongo.database import Database

from callqueue.config import Settings
from devstack.replicaset import ReplicaSet
from devstack.servers import MongoServer, RedisServer
from devstack.stack import Stack, StackOptions
from callqueue.producers.client import AssignmentClient
from callqueue.workers.store import AssignmentStore, ensure_indexes

ARTIFACTS = Path(__file__).parent / "artifacts"
# Elections in the tests' replica sets: after 4 s without a primary instead of MongoDB's 10 s, so the fault
# suites spend their time on faults, not on waiting (make bench measures with the default).
TEST_ELECTION_TIMEOUT_MS = 4_000


@pytest.fixture(scope="session")
def mongo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MongoServer]:
    server = MongoServer(tmp_path_factory.mktemp("mongo"))
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="session")
def replica_set(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReplicaSet]:
    """A 3-member replica set of the same mongod binary, for the tests that need one (started lazily)."""
    with ReplicaSet(tmp_path_factory.mktemp("replica-set"), members=3,
                    election_timeout_ms=TEST_ELECTION_TIMEOUT_MS) as running:
        yield running


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="session")
def server_env(mongo_server: MongoServer, redis_server: RedisServer) -> dict[str, str]:
    """Environment pointing every component at the test servers."""
    return {
        **os.environ,
        "MONGO_URL": mongo_server.url,
        "MONGO_DB": "callqueue_test",
        "CELERY_BROKER_URL": redis_server.url(0),
        "CELERY_RESULT_BACKEND": redis_server.url(1),
        "CALLQUEUE_TASK_MAX_RETRIES": "2",
        "CALLQUEUE_TASK_RETRY_BACKOFF_MAX_SECONDS": "1",
        "CALLQUEUE_MONGO_SERVER_SELECTION_TIMEOUT_SECONDS": "2",
        "CALLQUEUE_RECLAIM_INTERVAL_SECONDS": "1",
        "CALLQUEUE_PROMOTE_INTERVAL_SECONDS": "1",
    }


@pytest.fixture(scope="session")
def settings(server_env: dict[str, str]) -> Settings:
    return Settings.from_env(server_env)


@pytest.fixture(scope="session")
def stack(server_env: dict[str, str]) -> Iterator[Stack]:
    """Worker pools (assignments: two prefork children; batch: one) and beat on the test servers."""
    with Stack(StackOptions(assignment_concurrency=2, flower=False), environ=server_env) as running:
        yield running


@pytest.fixture()
def client(stack: Stack, settings: Settings) -> Iterator[AssignmentClient]:
    with AssignmentClient(settings, timeout_seconds=15) as assignment_client:
        yield assignment_client


@pytest.fixture()
def session_id() -> str:
    return f"session-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def mongo_client(mongo_server: MongoServer) -> Iterator[MongoClient]:
    with MongoClient(mongo_server.url, tz_aware=True) as mongo:
        yield mongo


@pytest.fixture()
def app_database(mongo_client: MongoClient, settings: Settings) -> Database:
    """The database the workers use (shared; tests isolate by session id)."""
    return mongo_client[settings.mongo_db]


@pytest.fixture()
def engine_database(mongo_client: MongoClient) -> Iterator[Database]:
    """A fresh database of its own for one engine test, dropped afterwards."""
    name = f"engine_{uuid.uuid4().hex[:12]}"
    database = mongo_client[name]
    ensure_indexes(database)
    try:
        yield database
    finally:
        mongo_client.drop_database(name)


@pytest.fixture()
def store(engine_database: Database) -> AssignmentStore:
    return AssignmentStore(engine_database)


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


# Modules that take the longest, longest first: ``make test`` runs two pytest-xdist workers, each taking
# whole modules (``--dist loadfile``, so a module's servers start once), in this order
# (``--no-loadscope-reorder``), so the long modules are not left for last.
LONGEST_FIRST = (
    "test_failover", "test_fault_injection", "test_demo", "test_hostile_input", "test_partition",
    "test_concurrent_drain", "test_sentinel_failover", "test_calling_hours", "test_batch_jobs",
    "test_compose_sentinel", "test_cli", "test_clock_skew", "test_infrastructure_faults", "test_campaigns",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Start the longest modules first."""
    rank = {name: index for index, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.module.__name__.rsplit(".", 1)[-1], len(rank)))
