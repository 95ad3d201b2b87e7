"""The benchmark's own mongod, redis-server and Celery workers, always stopped by PID.

Built from the devstack classes. Nothing here reads ``MONGO_URL`` or
``CELERY_BROKER_URL`` from the environment: the benchmark never touches a
server it did not start (in particular not a Redis already on port 6379).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from bench.cpu import CpuMeter, with_descendants
from config import Settings
from devstack.servers import CeleryWorker, MongoServer, RedisServer
from workers.app import ASSIGNMENTS_QUEUE, create_app

BENCH_DATABASE = "callqueue_bench"
OVERRIDDEN = ("MONGO_URL", "MONGO_DB", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND")


@dataclass(frozen=True)
class WorkerOptions:
    """How the benchmark's assignment workers run (the knobs the tuning explored)."""

    pool: str = "prefork"
    concurrency: int = 2
    prefetch_multiplier: int | None = None
    loglevel: str | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    def argv(self) -> list[str]:
        """Extra worker arguments: always the no-op task, optionally another log level."""
        args = ["--include", "bench.tasks"]
        return args + (["--loglevel", self.loglevel] if self.loglevel else [])

    def env(self) -> dict[str, str]:
        """Environment overrides read by ``config.Settings`` in the worker."""
        overrides = dict(self.extra_env)
        if self.prefetch_multiplier is not None:
            overrides["CALLQUEUE_WORKER_PREFETCH_MULTIPLIER"] = str(self.prefetch_multiplier)
        return overrides


class BenchServers:
    """mongod and redis-server on free loopback ports, for the length of a ``with`` block."""

    def __init__(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="callqueue-bench-"))
        self.mongo = MongoServer(self.workdir)
        self.redis = RedisServer(self.workdir)
        self._exit = contextlib.ExitStack()

    def __enter__(self) -> "BenchServers":
        try:
            for server in (self.mongo, self.redis):
                self._exit.callback(server.stop)
                server.start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._exit.close()
        finally:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def environ(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """The process environment with every URL pointing at these servers."""
        env = {key: value for key, value in os.environ.items() if key not in OVERRIDDEN}
        env.update({"MONGO_URL": self.mongo.url, "MONGO_DB": BENCH_DATABASE,
                    "CELERY_BROKER_URL": self.redis.url(0), "CELERY_RESULT_BACKEND": self.redis.url(1)})
        return {**env, **(extra or {})}

    def settings(self) -> Settings:
        return Settings.from_env(self.environ())

    @contextlib.contextmanager
    def workers(self, options: WorkerOptions, queue: str = ASSIGNMENTS_QUEUE,
                extra_env: dict[str, str] | None = None) -> Iterator[CeleryWorker]:
        """A worker on ``queue`` (with the benchmark's tasks) for the block, ready when yielded, always stopped."""
        env = self.environ({**options.env(), **(extra_env or {})})
        app = create_app(Settings.from_env(env), include_tasks=False)
        worker = CeleryWorker(self.workdir, env, queue, options.concurrency, options.pool,
                              name=f"bench-{queue}", extra_args=options.argv())
        try:
            worker.start(app)
            yield worker
        finally:
            try:
                worker.stop()
            finally:
                app.close()

    def cpu_meter(self, worker: CeleryWorker, callers: Callable[[], list[int]]) -> CpuMeter:
        """CPU of the worker (with its pool children), the callers, Redis and mongod."""
        return CpuMeter({
            "worker": lambda: with_descendants([worker.process.pid]),
            "callers": callers,
            "redis": lambda: [self.redis.process.pid],
            "mongod": lambda: [self.mongo.process.pid],
        })

    def worker_log_tail(self, lines: int = 20) -> str:
        """The end of the newest worker log (for error messages)."""
        logs = sorted(self.workdir.glob("worker-*.log"), key=lambda path: path.stat().st_mtime)
        return "" if not logs else "\n".join(logs[-1].read_text(errors="replace").splitlines()[-lines:])
