"""The whole path over TLS: a mongod that requires TLS and a redis-server with a TLS port only.

A throw-away CA and server certificate are made for this module in its
temporary directory (``devstack.tls``); nothing of them is committed. The
stack's mongod runs with ``--tlsMode requireTLS`` and its redis-server with
``port 0`` and a ``tls-port``; the worker pools, beat, Flower, the producer
client, ``health`` and the metrics exporter get nothing but the URLs
(``mongodb://...?tls=true&tlsCAFile=...``, ``rediss://...?ssl_cert_reqs=required&ssl_ca_certs=...``).
Neither server answers a plaintext client, so whatever works here went over
TLS: import, claim, complete, two batch jobs, beat's schedule, Flower's API,
``health`` and a scrape of the exporter. Clients check the server's
certificate: one that trusts another CA is refused.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path
from typing import Iterator

import pytest
import redis
import requests
from kombu import Connection
from pymongo import MongoClient
from pymongo.errors import ServerSelectionTimeoutError

from devstack.processes import ManagedProcess, free_port, wait_until
from devstack.servers import MongoServer, RedisServer, project_env
from devstack.stack import ServersStack, StackOptions
from devstack.tls import TlsFiles, make_certificates
from callqueue.producers.client import AssignmentClient
from tests.integration.helpers import beat_job_succeeded, hold_unacked_message, poll, students, take_message
from callqueue.workers.app import ASSIGNMENTS_QUEUE, BATCH_QUEUE
from callqueue.workers.transport import TLS_TRANSPORT

TLS_ENV = {
    "MONGO_DB": "callqueue_tls",
    "CALLQUEUE_TASK_MAX_RETRIES": "2",
    "CALLQUEUE_TASK_RETRY_BACKOFF_MAX_SECONDS": "1",
    "CALLQUEUE_MONGO_SERVER_SELECTION_TIMEOUT_SECONDS": "2",
    "CALLQUEUE_RECLAIM_INTERVAL_SECONDS": "1",  # beat sends reclaim_expired every second
    "FLOWER_UNAUTHENTICATED_API": "true",  # Flower on loopback, read by this module only
}
RECLAIM_TASK = "callqueue.reclaim_expired"
BROKER_DB = 7  # a database of its own on the module's redis-server
DEADLINE_SECONDS = 30.0
COUNTER = re.compile(r'^callqueue_events_total\{event="(\w+)"\} (\S+)$', re.MULTILINE)
SESSION_GAUGE = 'callqueue_session_students{{call_session_id="{}",state="{}"}} (\\S+)'


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_certificates(tmp_path_factory.mktemp("tls-certificates"))


@pytest.fixture(scope="module")
def tls_stack(tmp_path_factory: pytest.TempPathFactory, tls_files: TlsFiles) -> Iterator[ServersStack]:
    """mongod (requireTLS), a TLS-only redis-server, both worker pools, beat and Flower, all on TLS URLs."""
    workdir = tmp_path_factory.mktemp("tls-stack")
    servers = ServersStack(MongoServer(workdir, tls=tls_files), RedisServer(workdir, tls=tls_files),
                           {**os.environ, **TLS_ENV}, StackOptions(assignment_concurrency=1))
    with servers as running:
        yield running


@pytest.fixture(scope="module")
def env(tls_stack: ServersStack) -> dict[str, str]:
    """The environment every component of the stack was started with."""
    assert tls_stack.stack is not None
    return tls_stack.stack.env


@pytest.fixture(scope="module")
def worked_session(tls_stack: ServersStack) -> str:
    """A session taken through import, claim, complete and two batch jobs (``complete_batch``, ``close_session``)."""
    session_id = f"tls-{uuid.uuid4().hex[:8]}"
    with AssignmentClient(tls_stack.settings, timeout_seconds=15) as client:
        imported = client.import_students(session_id, students(4), "tls session")
        assert imported.inserted == 4
        first = client.assign_next(session_id, "alice")
        assert first is not None
        done = client.complete(session_id, first.student_id, "alice", "reached", first.assignment_token)
        assert (done.status, done.outcome) == ("completed", "reached")
        second = client.assign_next(session_id, "bob")
        assert second is not None and second.student_id != first.student_id
        batch = client.complete_batch([{"call_session_id": session_id, "student_id": second.student_id,
                                        "outcome": "voicemail", "assistant_id": "bob",
                                        "assignment_token": second.assignment_token}])
        assert (batch["completed"], batch["rejected"]) == (1, 0), batch
        closed = client.close_session(session_id, outcome="session_closed")
        assert closed["status"] == "closed", closed
        stats = client.stats(session_id)
        assert (stats.session_status, stats.pending, stats.assigned) == ("closed", 0, 0)
        assert stats.completed_by_outcome == {"reached": 1, "voicemail": 1, "session_closed": 2}
    return session_id


@pytest.fixture(scope="module")
def exporter(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``python -m producers metrics`` on the TLS URLs; its /metrics URL."""
    port = free_port()
    process = ManagedProcess("exporter", [sys.executable, "-m", "producers", "metrics", "--port", str(port)],
                             tmp_path_factory.mktemp("tls-exporter") / "exporter.log", project_env(env))
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        process.start()
        wait_until(lambda: bool(scrape(url)), DEADLINE_SECONDS, "metrics exporter", process.alive)
        yield url
    finally:
        process.stop()


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()


def test_the_stack_is_configured_by_tls_urls_only(tls_stack: ServersStack, tls_files: TlsFiles) -> None:
    settings = tls_stack.settings
    assert settings.mongo_url.endswith(f"/?tls=true&tlsCAFile={tls_files.ca_file}")
    for url in (settings.broker_url, settings.result_backend):
        assert url.startswith("rediss://127.0.0.1:")
        assert url.endswith(f"?ssl_cert_reqs=required&ssl_ca_certs={tls_files.ca_file}")


def test_plaintext_clients_are_refused(tls_stack: ServersStack) -> None:
    assert isinstance(tls_stack.mongo, MongoServer) and isinstance(tls_stack.redis, RedisServer)
    with MongoClient(f"mongodb://127.0.0.1:{tls_stack.mongo.port}/", serverSelectionTimeoutMS=1000,
                     directConnection=True) as plain:
        with pytest.raises(ServerSelectionTimeoutError):
            plain.admin.command("ping")
    plain_redis = redis.Redis.from_url(f"redis://127.0.0.1:{tls_stack.redis.port}/0", socket_timeout=2)
    with pytest.raises(redis.ConnectionError):
        plain_redis.ping()
    plain_redis.close()


def test_clients_check_the_servers_certificate(tls_stack: ServersStack, tmp_path: Path) -> None:
    """A client that trusts another CA does not talk to these servers: the certificate is checked, not just used."""
    assert isinstance(tls_stack.mongo, MongoServer) and isinstance(tls_stack.redis, RedisServer)
    stranger = make_certificates(tmp_path / "another-ca")
    with MongoClient(f"mongodb://127.0.0.1:{tls_stack.mongo.port}/?{stranger.mongo_query()}",
                     serverSelectionTimeoutMS=1000, directConnection=True) as mistrusting:
        with pytest.raises(ServerSelectionTimeoutError):
            mistrusting.admin.command("ping")
    mistrusting_redis = redis.Redis.from_url(
        f"rediss://127.0.0.1:{tls_stack.redis.port}/0?{stranger.redis_query()}", socket_timeout=2)
    with pytest.raises(redis.ConnectionError):
        mistrusting_redis.ping()
    mistrusting_redis.close()


def test_our_transport_closes_a_detached_tls_channel_cleanly_and_the_message_is_not_lost(
        tls_stack: ServersStack) -> None:
    """The broker transport's fix (see test_broker_transport) holds on ``rediss://`` too."""
    assert isinstance(tls_stack.redis, RedisServer)
    url, queue_name = tls_stack.redis.url(BROKER_DB), f"q-{uuid.uuid4().hex}"

    def connect(transport: str) -> Connection:
        return Connection(url, transport=transport, transport_options={"visibility_timeout": 0})
    held = hold_unacked_message(connect, TLS_TRANSPORT, queue_name)
    held.release()  # no exception: the worker's consumer would reconnect
    assert take_message(connect, TLS_TRANSPORT, queue_name) == {"press": 1}
    assert take_message(connect, TLS_TRANSPORT, queue_name) is None  # exactly once


def test_import_claim_complete_and_batch_jobs_work_over_tls(worked_session: str) -> None:
    assert worked_session.startswith("tls-")  # the fixture did the work and checked every answer


def test_flower_sees_the_workers_and_the_tasks_of_clients_and_the_workers_run_beats(tls_stack: ServersStack,
                                                                 worked_session: str) -> None:
    assert tls_stack.stack is not None and tls_stack.stack.flower is not None
    api = f"{tls_stack.stack.flower.url}/api"
    names = {worker.hostname for worker in tls_stack.stack.workers}
    alive = poll(lambda: requests.get(f"{api}/workers", params={"status": "true"}, timeout=10).json(),
                 lambda found: all(found.get(name) for name in names), DEADLINE_SECONDS)
    assert all(alive.get(name) for name in names), alive
    for task_name in ("callqueue.assign_next_student", "callqueue.complete_batch", "callqueue.close_session"):
        succeeded = poll(lambda: requests.get(f"{api}/tasks", params={"taskname": task_name, "state": "SUCCESS"},
                                              timeout=10).json(), bool, DEADLINE_SECONDS)
        assert succeeded, f"Flower saw no successful {task_name}"
    worker = next(worker for worker in tls_stack.stack.workers if worker.queue == ASSIGNMENTS_QUEUE)
    assert poll(lambda: beat_job_succeeded(worker.process.log_path.read_text(errors="replace"), RECLAIM_TASK),
                bool, DEADLINE_SECONDS), f"the worker ran no {RECLAIM_TASK} sent by beat"
    lengths = requests.get(f"{api}/queues/length", timeout=10)
    assert lengths.status_code == 200, lengths.text
    assert {queue["name"] for queue in lengths.json()["active_queues"]} == {ASSIGNMENTS_QUEUE, BATCH_QUEUE}


def test_health_runs_as_a_process_and_reports_everything_up(env: dict[str, str], worked_session: str) -> None:
    result = subprocess.run([sys.executable, "-m", "producers", "health", "--json", "--timeout", "5"],
                            env=project_env(env), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    checks = {check["component"]: check for check in json.loads(result.stdout)["checks"]}
    assert set(checks) == {"mongodb", "mongodb durability", "redis broker", "redis result backend",
                           f"queue {ASSIGNMENTS_QUEUE}", f"queue {BATCH_QUEUE}", "worker clocks"}
    assert all(check["ok"] for check in checks.values()), checks


def test_the_exporter_reads_counters_and_sessions_over_tls(exporter: str, worked_session: str,
                                                           tls_stack: ServersStack) -> None:
    """The workers' counters come from Redis, the open session's figures from MongoDB."""
    def counters() -> dict[str, float]:
        return {event: float(value) for event, value in COUNTER.findall(scrape(exporter))}
    counted = poll(counters, lambda found: found.get("claimed", 0) >= 2 and found.get("completed", 0) >= 1,
                   DEADLINE_SECONDS)
    assert counted.get("claimed", 0) >= 2 and counted.get("completed", 0) >= 1, counted
    open_session = f"tls-open-{uuid.uuid4().hex[:8]}"
    with AssignmentClient(tls_stack.settings, timeout_seconds=15) as client:
        client.import_students(open_session, students(3), "open tls session")
    pending = re.search(SESSION_GAUGE.format(open_session, "pending"), scrape(exporter))
    assert pending is not None and float(pending.group(1)) == 3


def test_component_logs_show_the_tls_broker_and_no_key(tls_stack: ServersStack, tls_files: TlsFiles,
                                                       worked_session: str) -> None:
    """Workers, beat and Flower name the broker ``rediss://`` (masked), and no private key reaches a log."""
    assert tls_stack.stack is not None
    key = tls_files.key_file.read_text().strip().splitlines()[1]
    paths = sorted(tls_stack.stack.workdir.glob("*.log"))
    assert len(paths) == 4, paths  # two worker pools, beat, Flower
    for path in paths:  # beat is not waited for at startup: its banner may still be on its way
        text = poll(lambda: path.read_text(errors="replace"), lambda found: "rediss://:**@127.0.0.1:" in found,
                    DEADLINE_SECONDS)
        assert "rediss://:**@127.0.0.1:" in text, path.name
        assert key not in text and "PRIVATE KEY" not in text, path.name
