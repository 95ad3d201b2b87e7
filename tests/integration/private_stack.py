"""A worker stack of its own on the session's mongod and redis-server.

Tests that compare the whole database byte for byte, or read a worker's log,
must not share workers, queues or a database with the rest of the suite. A
private stack gets its own MongoDB database and its own two Redis databases
(broker and results), both emptied before and after, and its worker pools
start without beat and Flower, so nothing writes unless a test asks.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import redis
from celery.result import AsyncResult
from kombu import Connection
from pymongo import MongoClient
from pymongo.database import Database

from callqueue.config import Settings
from devstack.servers import CeleryWorker, RedisServer
from devstack.stack import Stack, StackOptions
from callqueue.producers.client import AssignmentClient
from callqueue.workers.app import ASSIGNMENTS_QUEUE, BATCH_QUEUE

ANSWER_TIMEOUT_SECONDS = 60.0


class WorkerDied(AssertionError):
    """A worker process of the private stack exited while a test was using it."""


@dataclass
class PrivateStack:
    """The running stack, its settings and database, and the worker PIDs it started with."""

    stack: Stack
    settings: Settings
    database: Database
    env: dict[str, str]
    pool_pids: dict[str, list[int]] = field(default_factory=dict)

    def __repr__(self) -> str:  # short, and never the environment (it may hold credentials)
        return f"PrivateStack(database={self.database.name!r}, broker={self.settings.broker_url.rsplit('/', 1)[-1]})"

    def worker(self, queue: str) -> CeleryWorker:
        return next(worker for worker in self.stack.workers if worker.queue == queue)

    @property
    def assignments_worker(self) -> CeleryWorker:
        return self.worker(ASSIGNMENTS_QUEUE)

    @property
    def batch_worker(self) -> CeleryWorker:
        return self.worker(BATCH_QUEUE)

    def client(self) -> AssignmentClient:
        return AssignmentClient(self.settings, timeout_seconds=15, retries=1)

    def check_alive(self, queue: str | None = None) -> None:
        """Raise ``WorkerDied`` with the log tail of each exited worker (of ``queue``, or any)."""
        dead = [worker for worker in self.stack.workers
                if not worker.process.alive() and queue in (None, worker.queue)]
        if dead:
            raise WorkerDied("; ".join(f"worker {worker.hostname} exited; log tail:\n"
                                       f"{worker.process.log_tail(30)}" for worker in dead))

    def check_intact(self) -> None:
        """Every worker alive, with the same pool children it started with (none crashed)."""
        self.check_alive()
        current = {worker.hostname: sorted(worker.child_pids()) for worker in self.stack.workers}
        assert current == self.pool_pids, "a worker pool child was replaced (it crashed)"

    def wait_for_log_record(self, queue: str, marker: str, timeout_seconds: float = 30.0) -> str:
        """The log record (first line and continuation lines) of ``queue``'s worker that mentions ``marker``."""
        log = self.worker(queue).process.log_path
        deadline = time.monotonic() + timeout_seconds
        while True:
            text = log.read_text(errors="replace")
            at = text.find(marker)
            if at >= 0:
                start, end = text.rfind("\n[", 0, at), text.find("\n[", at)
                return text[start + 1: end if end >= 0 else len(text)]
            self.check_alive(queue)
            assert time.monotonic() < deadline, f"{marker!r} never appeared in {log}"
            time.sleep(0.1)

    def send(self, client: AssignmentClient, task: str, args: Sequence[Any] = (),
             kwargs: dict[str, Any] | None = None) -> AsyncResult:
        self.check_alive()
        return client.app.send_task(task, args=list(args), kwargs=dict(kwargs or {}))

    def wait(self, message: AsyncResult, timeout_seconds: float = ANSWER_TIMEOUT_SECONDS,
             queue: str | None = None) -> tuple[str, Any]:
        """(state, result) once the task is ready; fails fast when a worker process (of ``queue``) exits."""
        deadline = time.monotonic() + timeout_seconds
        while not message.ready():
            self.check_alive(queue)
            if time.monotonic() > deadline:
                raise AssertionError(f"no answer to task {message.id} within {timeout_seconds:.0f}s")
            time.sleep(0.02)
        return message.state, message.result

    def call(self, client: AssignmentClient, task: str, args: Sequence[Any] = (),
             kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send one task by name and return its answer, which must be a SUCCESS with a JSON object."""
        message = self.send(client, task, args, kwargs)
        try:
            state, result = self.wait(message)
        finally:
            message.backend.remove_pending_result(message)
        assert state == "SUCCESS", f"{task} ended in {state}: {result!r}"
        assert isinstance(result, dict), f"{task} answered {result!r}"
        return result


def publish_raw(broker_url: str, queue: str, task: str, task_id: str, body: bytes | str,
                content_type: str, content_encoding: str, protocol_headers: bool = True) -> None:
    """Put one hand-built task message on ``queue``, bypassing Celery's serializer.

    With ``protocol_headers`` the message carries Celery protocol-2 headers
    naming ``task``; without, it looks like a protocol-1 message whose body
    alone would name the task.
    """
    headers: dict[str, Any] = {}
    if protocol_headers:
        headers = {
            "lang": "py", "task": task, "id": task_id, "shadow": None, "eta": None, "expires": None,
            "group": None, "group_index": None, "retries": 0, "timelimit": [None, None],
            "root_id": task_id, "parent_id": None, "argsrepr": "()", "kwargsrepr": "{}",
            "origin": "hand-built@test", "ignore_result": False,
        }
    with Connection(broker_url) as connection:
        connection.Producer().publish(
            body, exchange="", routing_key=queue, headers=headers, content_type=content_type,
            content_encoding=content_encoding, correlation_id=task_id, delivery_mode=2,
        )


def queue_length(broker_url: str, queue: str) -> int:
    """Messages waiting in ``queue`` (kombu keeps each Redis queue as a list under its name)."""
    connection = redis.Redis.from_url(broker_url)
    try:
        return int(connection.llen(queue))
    finally:
        connection.close()


def _flush(redis_server: RedisServer, databases: Sequence[int]) -> None:
    for number in databases:
        connection = redis.Redis.from_url(redis_server.url(number))
        try:
            connection.flushdb()
        finally:
            connection.close()


@contextmanager
def private_stack(server_env: dict[str, str], redis_server: RedisServer, mongo_client: MongoClient,
                  database: str, broker_db: int, backend_db: int,
                  assignment_concurrency: int = 1) -> Iterator[PrivateStack]:
    """Start assignment and batch pools on their own database and Redis databases; stop them after."""
    env = {**server_env, "MONGO_DB": database, "CELERY_BROKER_URL": redis_server.url(broker_db),
           "CELERY_RESULT_BACKEND": redis_server.url(backend_db)}
    mongo_client.drop_database(database)
    _flush(redis_server, (broker_db, backend_db))
    options = StackOptions(flower=False, beat=False, assignment_concurrency=assignment_concurrency)
    try:
        with Stack(options, environ=env) as stack:
            running = PrivateStack(stack, stack.settings, mongo_client[database], env)
            running.pool_pids = {worker.hostname: sorted(worker.child_pids()) for worker in stack.workers}
            yield running
    finally:
        mongo_client.drop_database(database)
        _flush(redis_server, (broker_db, backend_db))
