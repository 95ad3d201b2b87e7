"""MongoDB with --auth and Redis with requirepass: the contract works through the URLs, no password leaks.

The servers, worker pools and Flower here are this module's own. Passwords
are random per run and reach the processes only through environment
variables; the tests then look for them everywhere a person or another
program could read them: worker and Flower logs, task results in Redis,
Flower's task API, and the process list.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import pytest
import redis
import requests
from pymongo import MongoClient

from callqueue.config import Settings
from devstack.servers import CeleryWorker, MongoServer, RedisServer
from devstack.stack import Stack, StackOptions
from callqueue.producers.client import AssignmentClient
from callqueue.workers.app import ASSIGNMENTS_QUEUE
from callqueue.workers.exceptions import BrokerUnavailable, TaskFailed

DATABASE = "callqueue_credentials"
DEADLINE_SECONDS = 30.0
T = TypeVar("T")


@dataclass
class Secured:
    """Servers that require credentials, and a stack (workers and Flower) given them in its environment."""

    mongo: MongoServer
    redis: RedisServer
    stack: Stack
    env: dict[str, str]
    mongo_user: str
    mongo_password: str
    admin_password: str
    redis_password: str
    flower_user: str
    flower_password: str

    def __repr__(self) -> str:  # never the passwords
        return f"Secured(mongo={self.mongo.port}, redis={self.redis.port})"

    @property
    def passwords(self) -> dict[str, str]:
        return {"mongo": self.mongo_password, "mongo admin": self.admin_password, "redis": self.redis_password,
                "flower": self.flower_password}

    @property
    def settings(self) -> Settings:
        return Settings.from_env(self.env)

    def flower_get(self, path: str, **params: Any) -> requests.Response:
        assert self.stack.flower is not None
        return requests.get(f"{self.stack.flower.url}{path}", params=params,
                            auth=(self.flower_user, self.flower_password), timeout=10)

    def mongo_client(self) -> MongoClient:
        return MongoClient(self.env["MONGO_URL"], serverSelectionTimeoutMS=5000, tz_aware=True)


def poll(read: Callable[[], T], done: Callable[[T], bool], what: str) -> T:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        value = read()
        if done(value):
            return value
        assert time.monotonic() < deadline, f"{what} not reached within {DEADLINE_SECONDS:.0f}s"
        time.sleep(0.25)


def create_users(mongo: MongoServer, admin_password: str, user: str, password: str) -> None:
    """The first user (an administrator) through mongod's localhost exception, then the application's user.

    The administrator is made before anything else needs to log in; it then
    creates the user the workers log in as, allowed to read and write only
    the callqueue database.
    """
    with MongoClient(mongo.url, directConnection=True, serverSelectionTimeoutMS=5000) as anonymous:
        anonymous.admin.command("createUser", "admin", pwd=admin_password, roles=[{"role": "root", "db": "admin"}])
    with MongoClient(mongo.url, directConnection=True, serverSelectionTimeoutMS=5000, username="admin",
                     password=admin_password, authSource="admin") as admin:
        admin.admin.command("createUser", user, pwd=password, roles=[{"role": "readWrite", "db": DATABASE}])


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    workdir = tmp_path_factory.mktemp("credentials")
    mongo_user, mongo_password = f"callqueue-{uuid.uuid4().hex[:6]}", secrets.token_hex(16)
    admin_password, redis_password, flower_password = (secrets.token_hex(16) for _ in range(3))
    with ExitStack() as cleanup:
        mongo = MongoServer(workdir, auth=True)
        cleanup.callback(mongo.stop)
        mongo.start()
        create_users(mongo, admin_password, mongo_user, mongo_password)
        redis_server = RedisServer(workdir, password=redis_password)
        cleanup.callback(redis_server.stop)
        redis_server.start()
        env = {
            **{key: value for key, value in os.environ.items() if not key.startswith(("MONGO_", "CELERY_"))},
            "MONGO_URL": f"mongodb://{mongo_user}:{mongo_password}@127.0.0.1:{mongo.port}/?authSource=admin",
            "MONGO_DB": DATABASE,
            "CELERY_BROKER_URL": redis_server.url(0),
            "CELERY_RESULT_BACKEND": redis_server.url(1),
            "FLOWER_BASIC_AUTH": f"ops:{flower_password}",
            "CALLQUEUE_TASK_MAX_RETRIES": "1",
            "CALLQUEUE_TASK_RETRY_BACKOFF_MAX_SECONDS": "1",
            "CALLQUEUE_MONGO_SERVER_SELECTION_TIMEOUT_SECONDS": "2",
        }
        stack = cleanup.enter_context(Stack(StackOptions(beat=False, flower=True, assignment_concurrency=1),
                                            environ=env))
        running = Secured(mongo, redis_server, stack, env, mongo_user, mongo_password, admin_password,
                          redis_password, "ops", flower_password)
        names = {worker.hostname for worker in stack.workers}
        poll(lambda: running.flower_get("/api/workers", status="true").json(),
             lambda alive: all(alive.get(name) for name in names), "Flower seeing both workers")
        yield running


@pytest.fixture(scope="module")
def worked(secured: Secured) -> dict[str, Any]:
    """The whole contract once through the authenticated servers: import, assign, complete, release, stats."""
    session = f"secured-{uuid.uuid4().hex[:12]}"
    # The answers stay in the result backend (forget_answers=False) for test_no_password_in_task_results.
    with AssignmentClient(secured.settings, timeout_seconds=20, retries=0, forget_answers=False) as client:
        imported = client.import_students(session, [{"student_id": f"s{n}", "name": f"Student {n}"}
                                                    for n in range(3)])
        first = client.assign_next(session, "alice")
        second = client.assign_next(session, "bob")
        assert first is not None and second is not None
        completed = client.complete(session, first.student_id, "alice", "reached", first.assignment_token)
        released = client.release(session, second.student_id, "bob", second.assignment_token)
        stats = client.stats(session)
    return {"session": session, "imported": imported, "first": first, "completed": completed,
            "released": released, "stats": stats}


def test_the_task_contract_works_through_authenticated_mongodb_and_redis(secured: Secured,
                                                                          worked: dict[str, Any]) -> None:
    assert worked["imported"].inserted == 3 and worked["imported"].session_created
    assert worked["completed"].status == "completed" and worked["released"].status == "released"
    stats = worked["stats"]
    assert (stats.total, stats.pending, stats.assigned, stats.completed) == (3, 2, 0, 1)
    assert stats.completed_by_outcome == {"reached": 1}
    with secured.mongo_client() as mongo:
        stored = mongo[DATABASE]["call_session_students"].find_one({"_id": worked["first"].student_id})
    assert stored is not None and stored["filter_status"] == "reached" and stored["completed_by"] == "alice"


def test_the_servers_really_require_the_credentials(secured: Secured) -> None:
    """Control for everything else here: without the passwords, neither server serves."""
    with MongoClient(secured.mongo.url, directConnection=True, serverSelectionTimeoutMS=5000) as anonymous:
        with pytest.raises(Exception, match="(?i)auth|unauthorized"):
            anonymous[DATABASE]["call_session_students"].find_one()
    anonymous_redis = redis.Redis(host="127.0.0.1", port=secured.redis.port, socket_timeout=5)
    try:
        with pytest.raises(redis.exceptions.AuthenticationError):
            anonymous_redis.ping()
    finally:
        anonymous_redis.close()


def logs(secured: Secured) -> dict[str, str]:
    """Every log the stack's workers and Flower wrote."""
    paths = [worker.process.log_path for worker in secured.stack.workers]
    assert secured.stack.flower is not None
    paths.append(secured.stack.flower.process.log_path)
    return {path.name: path.read_text(errors="replace") for path in paths}


def assert_no_password(where: str, text: str, secured: Secured) -> None:
    leaked = [name for name, password in secured.passwords.items() if password in text]
    assert not leaked, f"{', '.join(leaked)} password found in {where}"


def test_no_password_in_worker_or_flower_logs(secured: Secured, worked: dict[str, Any]) -> None:
    texts = logs(secured)
    worker_logs = [text for name, text in texts.items() if name.startswith("worker-")]
    assert len(worker_logs) == 2 and all("redis://:**@127.0.0.1" in text for text in worker_logs)
    assert any(f"event=\"completed\" session=\"{worked['session']}\"" in text for text in worker_logs)
    for name, text in texts.items():
        assert_no_password(name, text, secured)


def test_no_password_in_task_results(secured: Secured, worked: dict[str, Any]) -> None:
    backend = redis.Redis.from_url(secured.env["CELERY_RESULT_BACKEND"], socket_timeout=5)
    try:
        keys = [key for key in backend.scan_iter(match="celery-task-meta-*")]
        values = [backend.get(key) or b"" for key in keys]
    finally:
        backend.close()
    assert len(values) >= 6  # import, two assignments, complete, release, stats
    assert any(worked["session"].encode() in value for value in values)
    for key, value in zip(keys, values):
        assert_no_password(key.decode(), value.decode(errors="replace"), secured)


def test_no_password_in_flower_task_arguments(secured: Secured, worked: dict[str, Any]) -> None:
    tasks = poll(lambda: secured.flower_get("/api/tasks").json(),
                 lambda found: sum(worked["session"] in str(task.get("kwargs")) for task in found.values()) >= 6,
                 "the contract's tasks in Flower's /api/tasks")
    assert {task["state"] for task in tasks.values() if worked["session"] in str(task.get("kwargs"))} == {"SUCCESS"}
    assert_no_password("Flower /api/tasks", secured.flower_get("/api/tasks").text, secured)
    for task_id in tasks:
        assert_no_password(f"Flower /api/task/info/{task_id}", secured.flower_get(f"/api/task/info/{task_id}").text,
                           secured)


def test_no_password_in_the_process_list(secured: Secured) -> None:
    listing = subprocess.run(["ps", "-eww", "-o", "args"], capture_output=True, text=True, check=True).stdout
    assert all(worker.hostname in listing for worker in secured.stack.workers)
    assert f"--port {secured.mongo.port}" in listing and f"127.0.0.1:{secured.redis.port}" in listing
    assert_no_password("ps -eww -o args", listing, secured)


def test_client_without_the_redis_password_fails_visibly(secured: Secured) -> None:
    for url in (f"redis://127.0.0.1:{secured.redis.port}/0", f"redis://:{'0' * 32}@127.0.0.1:{secured.redis.port}/0"):
        settings = Settings.from_env({**secured.env, "CELERY_BROKER_URL": url, "CELERY_RESULT_BACKEND": url})
        with AssignmentClient(settings, timeout_seconds=5, retries=0) as client:
            with pytest.raises(BrokerUnavailable) as failure:
                client.stats("anything")
        assert "0" * 32 not in str(failure.value) and "0" * 32 not in repr(failure.value.__cause__)


def test_worker_without_the_mongodb_credentials_fails_the_task_visibly(secured: Secured, tmp_path: Path) -> None:
    """A worker given a MONGO_URL without user and password: each task ends in FAILURE, not in a silent answer."""
    broker, backend = secured.redis.url(2), secured.redis.url(3)
    env = {**secured.env, "MONGO_URL": secured.mongo.url, "CELERY_BROKER_URL": broker,
           "CELERY_RESULT_BACKEND": backend}
    settings = Settings.from_env(env)
    worker = CeleryWorker(tmp_path, env, ASSIGNMENTS_QUEUE, concurrency=1, name="anonymous")
    with AssignmentClient(settings, timeout_seconds=30, retries=0) as client:
        try:
            worker.start(client.app)
            with pytest.raises(TaskFailed, match="(?i)auth|unauthorized"):
                client.stats("anything")
        finally:
            worker.stop()
    assert_no_password("the anonymous worker's log", worker.process.log_path.read_text(errors="replace"), secured)
