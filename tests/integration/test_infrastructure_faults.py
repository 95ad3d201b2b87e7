"""Unreachable MongoDB or Redis: retried with backoff, then a visible failure."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from callqueue.config import Settings
from devstack.processes import free_port
from devstack.servers import PROJECT_ROOT, CeleryWorker, RedisServer
from callqueue.producers.client import AssignmentClient
from callqueue.workers.app import ASSIGNMENTS_QUEUE, create_app
from callqueue.workers.exceptions import BrokerUnavailable, TaskFailed


@pytest.fixture()
def worker_without_mongo(tmp_path: Path, server_env: dict[str, str],
                         redis_server: RedisServer) -> Iterator[tuple[Settings, CeleryWorker]]:
    """A worker on its own Redis databases whose MongoDB URL points at a closed port.

    Each run of a task gives up after the operation deadline (``CALLQUEUE_MONGO_OPERATION_TIMEOUT_SECONDS``,
    2 s); with two retries, a task ends in FAILURE no sooner than 6 s after it was received.
    """
    env = {**server_env, "MONGO_URL": f"mongodb://127.0.0.1:{free_port()}/",
           "CELERY_BROKER_URL": redis_server.url(4), "CELERY_RESULT_BACKEND": redis_server.url(5),
           "CALLQUEUE_MONGO_SERVER_SELECTION_TIMEOUT_SECONDS": "0.5"}
    settings = Settings.from_env(env)
    worker = CeleryWorker(tmp_path, env, ASSIGNMENTS_QUEUE, concurrency=1)
    app = create_app(settings, include_tasks=False)
    try:
        worker.start(app)
        yield settings, worker
    finally:
        worker.stop()
        app.close()


def test_unreachable_mongodb_is_retried_then_fails_visibly(
        worker_without_mongo: tuple[Settings, CeleryWorker]) -> None:
    settings, worker = worker_without_mongo
    with AssignmentClient(settings, timeout_seconds=30, retries=0) as client:
        with pytest.raises(TaskFailed, match="StoreUnavailable"):
            client.assign_next("any-session", "alice")
        message = client.app.send_task("callqueue.session_stats", kwargs={"call_session_id": "x"})
        message.get(timeout=30, propagate=False)
    assert message.state == "FAILURE"
    retries = [line for line in worker.process.log_path.read_text().splitlines()
               if message.id in line and "Retry in" in line]
    assert len(retries) == settings.task_max_retries


def test_the_cli_reports_an_unreachable_mongodb_at_the_first_timeout_naming_it(
        worker_without_mongo: tuple[Settings, CeleryWorker]) -> None:
    """No resend behind the same outage: the command line says what the workers met when its first wait ends."""
    settings, _worker = worker_without_mongo
    address = settings.mongo_url.split("//", 1)[1].strip("/")
    env = {**os.environ, "PYTHONPATH": PROJECT_ROOT, "CELERY_BROKER_URL": settings.broker_url,
           "CELERY_RESULT_BACKEND": settings.result_backend}
    started = time.monotonic()
    failed = subprocess.run([sys.executable, "-m", "producers", "--timeout", "4", "stats", "--session", "any"],
                            capture_output=True, text=True, timeout=120, cwd=PROJECT_ROOT, env=env)
    seconds = time.monotonic() - started
    assert failed.returncode == 3, failed.stdout + failed.stderr
    error = json.loads(failed.stdout)["error"]
    assert error["code"] == "StoreUnavailable"
    assert (f"no answer within 4 s: the workers are retrying it because MongoDB at {address} is unreachable: "
            "ServerSelectionTimeoutError. Check that mongod is running there") in error["message"]
    assert seconds < 2 * 4  # the first retry comes at about 2 s; resending would wait another 4 s


def test_unreachable_redis_raises_broker_unavailable(server_env: dict[str, str]) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    settings = Settings.from_env({**server_env, "CELERY_BROKER_URL": dead, "CELERY_RESULT_BACKEND": dead})
    with AssignmentClient(settings, timeout_seconds=1, retries=1) as client:
        with pytest.raises(BrokerUnavailable):
            client.assign_next("any-session", "alice")
