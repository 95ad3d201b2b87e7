"""Unreachable MongoDB or Redis: retried with backoff, then a visible failure."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from config import Settings
from devstack.processes import free_port
from devstack.servers import CeleryWorker, RedisServer
from producers.client import AssignmentClient
from workers.app import ASSIGNMENTS_QUEUE, create_app
from workers.exceptions import BrokerUnavailable, TaskFailed


@pytest.fixture()
def worker_without_mongo(tmp_path: Path, server_env: dict[str, str],
                         redis_server: RedisServer) -> Iterator[tuple[Settings, CeleryWorker]]:
    """A worker on its own Redis databases whose MongoDB URL points at a closed port."""
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


def test_unreachable_redis_raises_broker_unavailable(server_env: dict[str, str]) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    settings = Settings.from_env({**server_env, "CELERY_BROKER_URL": dead, "CELERY_RESULT_BACKEND": dead})
    with AssignmentClient(settings, timeout_seconds=1, retries=1) as client:
        with pytest.raises(BrokerUnavailable):
            client.assign_next("any-session", "alice")
