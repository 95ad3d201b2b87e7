"""Workers on separate test hosts, servers in the root namespace: a stack that can be partitioned.

``PartitionStack`` starts a MongoDB replica set and a redis-server that listen
on the bridge address of a ``TestHosts`` network, one ``assignments`` worker
on each test host (reaching the servers through its own veth only) and a
``batch`` worker in the root namespace. ``TestHosts.cut`` then drops one
host's traffic to one member, e.g. the primary, while the other host keeps
serving. Callers in the root namespace talk to Redis on 127.0.0.1.

Each worker logs one JSON line per claim, so ``claims_of`` tells which host
handed out which (student, token); ``claim_times`` reads when each claim
happened from the students' history.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping

from pymongo.database import Database

from callqueue.config import Settings
from devstack.netns import TestHosts
from devstack.replicaset import ReplicaSet
from devstack.servers import CeleryWorker, RedisServer
from callqueue.workers.app import ASSIGNMENTS_QUEUE, BATCH_QUEUE, CallqueueCelery, create_app
from callqueue.workers.store import STUDENTS

Claim = tuple[str, int]


class PartitionStack:
    """Replica set and Redis on the bridge; an assignments worker per test host; a batch worker at home."""

    def __init__(self, workdir: Path, hosts: TestHosts, environ: Mapping[str, str],
                 assignment_concurrency: int = 2, members: int = 3) -> None:
        self.workdir = workdir
        self.hosts = hosts
        self.environ = dict(environ)
        self.assignment_concurrency = assignment_concurrency
        bridge = hosts.bridge_address
        self.replica_set = ReplicaSet(workdir, members=members, advertised_host=bridge, bind_ips=(bridge,))
        self.redis = RedisServer(workdir, bind_ips=(bridge,))
        self.workers: dict[str, CeleryWorker] = {}
        self.batch_worker: CeleryWorker | None = None
        self.app: CallqueueCelery | None = None
        self._started: list[Any] = []

    # -- lifecycle ------------------------------------------------------------

    def __enter__(self) -> "PartitionStack":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._launch(self.replica_set)
        self._launch(self.redis)
        self.app = create_app(self.settings, include_tasks=False)
        for host in self.hosts.hosts:
            self.workers[host] = self._launch(CeleryWorker(
                self.workdir, self.env_on(host), ASSIGNMENTS_QUEUE, self.assignment_concurrency,
                name=f"{ASSIGNMENTS_QUEUE}-{host}", host_prefix=self.hosts.exec_prefix(host)))
        self.batch_worker = self._launch(CeleryWorker(self.workdir, self.env, BATCH_QUEUE, concurrency=1))
        for worker in [*self.workers.values(), self.batch_worker]:
            worker.wait_ready(self.app)

    def _launch(self, component: Any) -> Any:
        """Start ``component``, tracked first so that a failed start is still stopped."""
        self._started.append(component)
        component.start()
        return component

    def stop(self) -> None:
        """Stop everything started here, newest first, by PID."""
        while self._started:
            self._started.pop().stop()
        if self.app is not None:
            self.app.close()
            self.app = None

    # -- settings -------------------------------------------------------------

    @property
    def env(self) -> dict[str, str]:
        """Environment for the root namespace: Redis on loopback, the replica set by its bridge addresses."""
        return self._env("127.0.0.1")

    def env_on(self, host: str) -> dict[str, str]:
        """Environment for a process on ``host``: every server by its bridge address."""
        self.hosts.namespace(host)
        return self._env(self.hosts.bridge_address)

    def _env(self, redis_host: str) -> dict[str, str]:
        return {**self.environ, "MONGO_URL": self.replica_set.url,
                "CELERY_BROKER_URL": self.redis.url(0, redis_host),
                "CELERY_RESULT_BACKEND": self.redis.url(1, redis_host)}

    @property
    def settings(self) -> Settings:
        return Settings.from_env(self.env)

    # -- who served what --------------------------------------------------------

    def claims_of(self, host: str, session_id: str) -> set[Claim]:
        """(student, token) of every claim that ``host``'s worker logged for the session."""
        return claims_in_log(self.workers[host].process.log_path, session_id)


def claims_in_log(log_path: Path, session_id: str) -> set[Claim]:
    """(student, token) of each ``claimed`` JSON line of the session in a worker log."""
    claims: set[Claim] = set()
    for line in log_path.read_text(errors="replace").splitlines():
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("event") == "claimed" and record.get("session") == session_id:
            claims.add((record["student"], int(record["token"])))
    return claims


def claim_times(database: Database, session_id: str) -> dict[Claim, datetime]:
    """When each claim of the session happened, by (student, token), from the students' history."""
    times: dict[Claim, datetime] = {}
    for document in database[STUDENTS].find({"call_session_id": session_id}, {"history": 1}):
        for entry in document.get("history", []):
            if entry.get("event") == "claimed":
                times[(document["_id"], int(entry["token"]))] = entry["at"]
    return times
