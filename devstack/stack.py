"""The whole stack as one context manager: servers, worker pools, Flower and the dashboard.

MongoDB (a standalone, or a replica set with ``replica_set_members``) and
Redis are started here unless ``MONGO_URL`` or
``CELERY_BROKER_URL`` point at servers of their own, which are then used.
Flower gets a login of its own (``Stack.flower_login``) unless the
environment says who may use it.
Leaving the ``with`` block, by any exit including Ctrl-C and SIGTERM, stops
every process this stack started, by PID, in reverse order.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from callqueue.config import Settings
from devstack.replicaset import ReplicaSet
from devstack.sentinel import SentinelGroup
from devstack.servers import CeleryBeat, CeleryWorker, Dashboard, Flower, MongoServer, RedisServer
from callqueue.workers.app import ASSIGNMENTS_QUEUE, BATCH_QUEUE, CallqueueCelery, create_app

FLOWER_USER = "callqueue"
# Flower's own settings that say who may use it; when one is set, the stack leaves Flower's access alone.
FLOWER_ACCESS_VARIABLES = ("FLOWER_BASIC_AUTH", "FLOWER_UNAUTHENTICATED_API", "FLOWER_AUTH", "FLOWER_AUTH_PROVIDER")


@dataclass(frozen=True)
class StackOptions:
    """What to start, and how big."""

    assignment_concurrency: int = 2
    assignment_pool: str = "prefork"
    batch_concurrency: int = 1
    # The batch pool runs at a lower CPU priority so bulk jobs yield to "Get Next" on a shared host.
    batch_niceness: int = 10
    beat: bool = True
    flower: bool = True
    # 0: one standalone mongod; N: an N-member replica set (devstack.replicaset), when MONGO_URL is unset.
    replica_set_members: int = 0
    flower_port: int | None = None
    workers: bool = True
    # The supervisor dashboard beside Flower, without login on 127.0.0.1 (as Flower is here).
    dashboard: bool = False


class Stack:
    """Start what is needed, hand out settings and an app, stop it all on exit."""

    def __init__(self, options: StackOptions | None = None, environ: dict[str, str] | None = None) -> None:
        self.options = options or StackOptions()
        self.environ = dict(os.environ if environ is None else environ)
        self.workdir = Path(tempfile.mkdtemp(prefix="callqueue-stack-"))
        self.started: list[Any] = []
        self.mongo: MongoServer | None = None
        self.replica_set: ReplicaSet | None = None
        self.redis: RedisServer | None = None
        self.workers: list[CeleryWorker] = []
        self.flower: Flower | None = None
        self.dashboard: Dashboard | None = None
        # Flower's user and password when this stack made them (see _flower_env).
        self.flower_login: tuple[str, str] | None = None
        self.beat: CeleryBeat | None = None
        self.env: dict[str, str] = {}
        self._previous_sigterm: Any = None

    def __enter__(self) -> "Stack":
        self._previous_sigterm = signal.signal(signal.SIGTERM, _raise_interrupt)
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self.env = self._server_env()
        self.settings = Settings.from_env(self.env)
        self.app: CallqueueCelery = create_app(self.settings, include_tasks=False)
        if self.options.workers:
            self._start_workers()
        if self.options.beat:
            self.beat = self._launch(CeleryBeat(self.workdir, self.env))
        if self.options.flower:
            self.flower = self._launch(Flower(self.workdir, self._flower_env(), self.options.flower_port))
        if self.options.dashboard:
            self.dashboard = self._launch(Dashboard(self.workdir, self.env, no_login=True))

    def _flower_env(self) -> dict[str, str]:
        """Flower's environment: a login of its own unless the environment configures Flower's access.

        Flower answers its API only with a login (or with ``FLOWER_UNAUTHENTICATED_API``), so a stack
        started without either gets user ``FLOWER_USER`` with a fresh random password (``flower_login``),
        given to Flower alone, in its environment: never on a command line, never to the workers.
        """
        if any(self.env.get(name) for name in FLOWER_ACCESS_VARIABLES):
            return self.env
        self.flower_login = (FLOWER_USER, secrets.token_urlsafe(12))
        return {**self.env, "FLOWER_BASIC_AUTH": ":".join(self.flower_login)}

    def _server_env(self) -> dict[str, str]:
        env = dict(self.environ)
        if not env.get("MONGO_URL") and self.options.replica_set_members:
            self.replica_set = self._launch(ReplicaSet(self.workdir, self.options.replica_set_members))
            env["MONGO_URL"] = self.replica_set.url
        elif not env.get("MONGO_URL"):
            self.mongo = self._launch(MongoServer(self.workdir))
            env["MONGO_URL"] = self.mongo.url
        if not env.get("CELERY_BROKER_URL"):
            self.redis = self._launch(RedisServer(self.workdir))
            env["CELERY_BROKER_URL"] = self.redis.url(0)
            env["CELERY_RESULT_BACKEND"] = self.redis.url(1)
        env.setdefault("CELERY_RESULT_BACKEND", env["CELERY_BROKER_URL"])
        return env

    def _start_workers(self) -> None:
        pools = [
            CeleryWorker(self.workdir, self.env, ASSIGNMENTS_QUEUE, self.options.assignment_concurrency,
                         self.options.assignment_pool),
            CeleryWorker(self.workdir, self.env, BATCH_QUEUE, self.options.batch_concurrency,
                         niceness=self.options.batch_niceness),
        ]
        for worker in pools:
            self.workers.append(self._launch(worker))
        for worker in pools:
            worker.wait_ready(self.app)

    def _launch(self, component: Any) -> Any:
        """Start ``component``, tracked first so that a failed start is still cleaned up."""
        self.started.append(component)
        component.start()
        return component

    def stop(self) -> None:
        """Stop everything this stack started, newest first, and remove its files."""
        while self.started:
            self.started.pop().stop()
        if getattr(self, "app", None) is not None:
            self.app.close()
        if self._previous_sigterm is not None:
            signal.signal(signal.SIGTERM, self._previous_sigterm)
            self._previous_sigterm = None
        shutil.rmtree(self.workdir, ignore_errors=True)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


class ServersStack:
    """A MongoDB (standalone or replica set) and a redis-server (or a Sentinel group) of its own, with a ``Stack``.

    For tests and benchmarks that stop, kill or freeze servers, which nothing
    else may share. A MongoDB passed in ``started`` state (``owns_mongo=False``)
    is left running on exit; everything else is stopped by PID, also when
    starting fails part-way.
    """

    def __init__(self, mongo: MongoServer | ReplicaSet, redis: RedisServer | SentinelGroup, environ: dict[str, str],
                 options: StackOptions, owns_mongo: bool = True) -> None:
        self.mongo = mongo
        self.redis = redis
        self.environ = environ
        self.options = options
        self.owns_mongo = owns_mongo
        self.stack: Stack | None = None

    def __enter__(self) -> "ServersStack":
        try:
            if self.owns_mongo:
                self.mongo.start()
            self.redis.start()
            env = {**self.environ, "MONGO_URL": self.mongo.url, "CELERY_BROKER_URL": self.redis.url(0),
                   "CELERY_RESULT_BACKEND": self.redis.url(1)}
            self.stack = Stack(self.options, environ=env)
            self.stack.__enter__()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.stack is not None:
            self.stack.__exit__()
        self.redis.stop()
        if self.owns_mongo:
            self.mongo.stop()

    @property
    def settings(self) -> Settings:
        assert self.stack is not None, "the stack is not running"
        return self.stack.settings
