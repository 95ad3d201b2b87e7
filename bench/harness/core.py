"""What every part gets and gives: the run's options, the ``Part`` base, the shared ``Harness``, the run loop.

A part (``bench/parts/<name>.py``) gives its sizes (``config``, full or
``--quick``), measures (``run``) and judges (``targets``); its results carry
their integrity reports (``checks``) and ``to_json()``. The harness starts
the run's own mongod and redis-server (a ``devstack`` stack; never a server
from the environment) when a part first asks, Celery workers per part, and
stops everything it started when the run ends.
"""

from __future__ import annotations

import contextlib
import os
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

from pymongo import MongoClient

from bench.harness.callers import ASSIGN_TASK
from bench.harness.cpu import CpuMeter
from bench.harness.desks import THREADS, BenchError, DeskPool
from bench.harness.integrity import IntegrityReport
from bench.harness.targets import Target
from devstack.servers import CeleryWorker
from devstack.stack import Stack, StackOptions
from callqueue.workers.app import ASSIGNMENTS_QUEUE

Say = Callable[[str], None]
Panel = Callable[[Any], None]  # draws one chart panel on a matplotlib Axes
BENCH_DATABASE = "callqueue_bench"
OVERRIDDEN = ("MONGO_URL", "MONGO_DB", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND")


@dataclass(frozen=True)
class WorkerOptions:
    """How the benchmark's workers run (the knobs the tuning explored)."""

    pool: str = "prefork"
    concurrency: int = 2
    prefetch_multiplier: int | None = None
    loglevel: str | None = None

    def argv(self) -> list[str]:
        """Extra worker arguments: always the benchmark's tasks, optionally another log level."""
        return ["--include", "bench.tasks", *(["--loglevel", self.loglevel] if self.loglevel else [])]

    def env(self) -> dict[str, str]:
        """Environment overrides read by ``config.Settings`` in the worker."""
        prefetch = self.prefetch_multiplier
        return {} if prefetch is None else {"CALLQUEUE_WORKER_PREFETCH_MULTIPLIER": str(prefetch)}


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

    def cpu_meter(self, worker: CeleryWorker | None, callers: Callable[[], list[int]]) -> CpuMeter:
        """CPU of mongod, the callers, and with a worker also its pool children and Redis."""
        groups = {"mongod": lambda: [self.mongo.pid], "clients": callers}
        if worker is not None:
            groups = {"worker": lambda: [worker.process.pid, *worker.child_pids()], "callers": callers,
                      "redis": lambda: [self.redis.process.pid], "mongod": lambda: [self.mongo.pid]}
        return CpuMeter(groups)


@dataclass(frozen=True)
class RunOptions:
    """What the command line chose for the whole run (each part reads what concerns it)."""

    quick: bool = False
    engine_mode: str = THREADS
    workers: WorkerOptions = field(default_factory=WorkerOptions)
    caller_processes: int | None = None
    press_task: str = ASSIGN_TASK
    election_timeouts_ms: tuple[int, ...] = (10_000,)
    failover_part: str = "all"


class Part:
    """One part of the benchmark: subclasses set ``name``, ``description`` and ``sizes`` and implement ``run``."""

    name = ""
    description = ""
    default = True  # in a run without --part
    sizes: Callable[..., Any] = dict  # the part's config class, made with ``quick`` for ``--quick``
    quick: dict[str, Any] = {}

    def config(self, options: RunOptions, **chosen: Any) -> Any:
        return self.sizes(**chosen, **(self.quick if options.quick else {}))

    def run(self, config: Any, harness: "Harness") -> Any:
        raise NotImplementedError

    def targets(self, results: Any) -> list[Target]:
        return []

    def observations(self, results: Any) -> list[tuple[str, float]]:
        """Figures with no target that explain the targets."""
        return []

    def panels(self, results: Any) -> list[Panel]:
        return []


class Harness(contextlib.ExitStack):
    """The run's servers (started at first use), a MongoDB client on them, desk pools, earlier parts' results."""

    def __init__(self, options: RunOptions, say: Say) -> None:
        super().__init__()
        self.options, self.say = options, say
        self.results: dict[str, Any] = {}
        self._servers: BenchServers | None = None
        self._mongo: MongoClient | None = None

    @property
    def servers(self) -> BenchServers:
        if self._servers is None:
            self._servers = self.enter_context(BenchServers())
            self.say(f"mongod on {self._servers.mongo.url}, redis-server on port {self._servers.redis.port} "
                     f"(both started for this run)")
        return self._servers

    @property
    def mongo(self) -> MongoClient:
        if self._mongo is None:
            self._mongo = self.enter_context(MongoClient(self.servers.mongo.url, tz_aware=True))
        return self._mongo

    def desks(self, size: int, mode: str | None = None) -> DeskPool:
        """A desk pool for a ``with`` block: threads or processes (default: ``--engine-mode``)."""
        return DeskPool(size, mode or self.options.engine_mode)


@dataclass
class Outcome:
    """One part's run: its config, results (None when it stopped), seconds, and why it stopped."""

    part: Part
    config: Any
    results: Any
    seconds: float
    error: str | None = None

    @property
    def checks(self) -> list[IntegrityReport]:
        return list(getattr(self.results, "checks", []))

    def targets(self) -> list[Target]:
        return [] if self.results is None else self.part.targets(self.results)

    def observations(self) -> list[tuple[str, float]]:
        return [] if self.results is None else self.part.observations(self.results)


def run_parts(parts: Sequence[Part], options: RunOptions, say: Say) -> list[Outcome]:
    """Each part in turn on one harness; a part that raises is recorded as stopped and the next one runs."""
    outcomes: list[Outcome] = []
    with Harness(options, say) as harness:
        for number, part in enumerate(parts, 1):
            config = part.config(options)
            say(f"\n[{number}/{len(parts)}] {part.name}: {part.description}")
            began, results, error = time.monotonic(), None, None
            try:
                results = part.run(config, harness)
            except Exception as exc:  # noqa: BLE001 - the part fails visibly, the run goes on
                error = f"{type(exc).__name__}: {exc}"
                where = "" if isinstance(exc, BenchError) else "\n" + traceback.format_exc(limit=-3)
                say(f"  [FAIL] part {part.name} stopped: {error}{where}")
            harness.results[part.name] = results
            outcomes.append(Outcome(part, config, results, round(time.monotonic() - began, 1), error))
    return outcomes
