"""One structured log line per claim, completion and rejection; JSON when asked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import pytest

from callqueue.config import Settings
from devstack.servers import CeleryWorker, RedisServer
from callqueue.producers.client import AssignmentClient
from tests.integration.helpers import seed
from callqueue.workers.app import ASSIGNMENTS_QUEUE, BATCH_QUEUE, create_app
from callqueue.workers.exceptions import StaleToken


@pytest.fixture()
def json_logging_workers(tmp_path: Path, server_env: dict[str, str],
                         redis_server: RedisServer) -> Iterator[tuple[Settings, list[CeleryWorker]]]:
    """Workers on their own Redis databases with CALLQUEUE_LOG_FORMAT=json."""
    env = {**server_env, "CALLQUEUE_LOG_FORMAT": "json", "CELERY_BROKER_URL": redis_server.url(8),
           "CELERY_RESULT_BACKEND": redis_server.url(9)}
    settings = Settings.from_env(env)
    app = create_app(settings, include_tasks=False)
    workers = [CeleryWorker(tmp_path, env, ASSIGNMENTS_QUEUE, concurrency=1),
               CeleryWorker(tmp_path, env, BATCH_QUEUE, concurrency=1)]
    try:
        for worker in workers:
            worker.start(app)
        yield settings, workers
    finally:
        for worker in workers:
            worker.stop()
        app.close()


def test_each_claim_completion_and_rejection_is_one_json_line(json_logging_workers, session_id: str) -> None:
    settings, workers = json_logging_workers
    with AssignmentClient(settings, timeout_seconds=15) as client:
        seed(client, session_id, 2)
        request_id = f"press-{session_id}"
        held = client.assign_next(session_id, "alice", request_id=request_id)
        with pytest.raises(StaleToken):
            client.complete(session_id, held.student_id, "alice", "reached", held.assignment_token + 1)
        client.complete(session_id, held.student_id, "alice", "reached", held.assignment_token)

    lines = workers[0].process.log_path.read_text().splitlines()
    records = [json.loads(line) for line in lines if line.startswith("{")]
    assert not [line for line in lines if 'event="' in line], "event lines must all be JSON"
    events = {record.get("event"): record for record in records if record.get("session") == session_id
              or record.get("call_session_id") == session_id}
    claimed, completed, rejected = events["claimed"], events["completed"], events["rejected"]
    assert (claimed["assistant"], claimed["student"], claimed["token"], claimed["request_id"]) == \
        ("alice", held.student_id, held.assignment_token, request_id)
    assert completed["student"] == held.student_id and completed["outcome"] == "reached"
    assert rejected["code"] == "stale_token" and rejected["assistant_id"] == "alice"
    assert all(isinstance(record["duration_ms"], (int, float)) for record in (claimed, completed, rejected))
