"""The benchmark's own mongod, redis-server and Celery workers: a ``devstack`` stack, stopped by PID.

Nothing here reads ``MONGO_URL`` or ``CELERY_BROKER_URL`` from the
environment: the benchmark never touches a server it did not start (in
particular not a Redis already on port 6379). Workers are started per part,
with that part's pool, concurrency and environment.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from typing import Callable, Iterator

from bench.harness.cpu import CpuMeter, with_descendants
from config import Settings
from devstack.servers import CeleryWorker
from devstack.stack import Stack, StackOptions
from workers.app import ASSIGNMENTS_QUEUE

BENCH_DATABASE = "callqueue_bench"
OVERRIDDEN = ("MONGO_URL", "MONGO_DB", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND")


@dataclass(frozen=True)
class WorkerOptions:
    """How the benchmark's workers run (the knobs the tuning explored)."""

    pool: str = "prefork"
    concurrency: int = 2
    prefetch_multiplier: int | None = None
    loglevel: str | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    def argv(self) -> list[str]:
        """Extra worker arguments: always the benchmark's tasks, optionally another log level."""
        return ["--include", "bench.tasks", *(["--loglevel", self.loglevel] if self.loglevel else [])]

    def env(self) -> dict[str, str]:
        """Environment overrides read by ``config.Settings`` in the worker."""
        prefetch = self.prefetch_multiplier
        return {**self.extra_env, **({} if prefetch is None else {"CALLQUEUE_WORKER_PREFETCH_MULTIPLIER": str(prefetch)})}


class BenchServers(Stack):
    """mongod and redis-server on free loopback ports (no workers, beat or Flower) for a ``with`` block."""

    def __init__(self) -> None:
        environ = {key: value for key, value in os.environ.items() if key not in OVERRIDDEN}
        super().__init__(StackOptions(workers=False, beat=False, flower=False),
                         {**environ, "MONGO_DB": BENCH_DATABASE})

    def env_with(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """The process environment with every URL pointing at these servers."""
        return {**self.env, **(extra or {})}

    @contextlib.contextmanager
    def worker(self, options: WorkerOptions, queue: str = ASSIGNMENTS_QUEUE,
                extra_env: dict[str, str] | None = None) -> Iterator[CeleryWorker]:
        """A worker on ``queue`` (with the benchmark's tasks), ready when yielded, always stopped."""
        worker = CeleryWorker(self.workdir, self.env_with({**options.env(), **(extra_env or {})}), queue,
                              options.concurrency, options.pool, name=f"bench-{queue}", extra_args=options.argv())
        try:
            worker.start(self.app)
            yield worker
        finally:
            worker.stop()

    def settings_for(self, extra: dict[str, str] | None = None) -> Settings:
        return Settings.from_env(self.env_with(extra))

    def cpu_meter(self, worker: CeleryWorker | None, callers: Callable[[], list[int]]) -> CpuMeter:
        """CPU of mongod, the callers, and with a worker also its pool children and Redis."""
        groups = {"mongod": lambda: [self.mongo.pid], "clients": callers}
        if worker is not None:
            groups = {"worker": lambda: with_descendants([worker.process.pid]), "callers": callers,
                      "redis": lambda: [self.redis.process.pid], "mongod": lambda: [self.mongo.pid]}
        return CpuMeter(groups)
