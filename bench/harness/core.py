"""What every part gets and gives: the run's options, the shared harness, the ``Part`` base, the run loop.

A part is one small object (``bench/parts/<name>.py``): ``config(options)``
gives its sizes (full or ``--quick``), ``run(config, harness)`` measures and
returns its results, ``targets(results)`` judges them. Its results carry
their integrity reports (``checks``) and ``to_json()``; ``observations`` and
``panels`` (chart panels) are optional. The harness starts the servers when a
part first asks for them and stops everything it started when the run ends.
"""

from __future__ import annotations

import contextlib
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from pymongo import MongoClient

from bench.harness.calls import ASSIGN_TASK
from bench.harness.desks import PROCESSES, THREADS, BenchError, DeskPool
from bench.harness.integrity import IntegrityReport
from bench.harness.servers import BenchServers, WorkerOptions
from bench.harness.targets import Target

Say = Callable[[str], None]
Panel = Callable[[Any], None]  # draws one chart panel on a matplotlib Axes


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
    """One part of the benchmark; subclasses set ``name`` and ``description`` and implement the rest."""

    name = ""
    description = ""
    default = True  # in a run without --part

    def config(self, options: RunOptions) -> Any:
        raise NotImplementedError

    def run(self, config: Any, harness: "Harness") -> Any:
        raise NotImplementedError

    def targets(self, results: Any) -> list[Target]:
        return []

    def observations(self, results: Any) -> list[tuple[str, float]]:
        """Figures with no target that explain the targets."""
        return []

    def panels(self, results: Any) -> list[Panel]:
        return []


class Harness:
    """The shared servers, a MongoDB client on them, desk pools, and the results of the parts run so far."""

    def __init__(self, options: RunOptions, say: Say) -> None:
        self.options = options
        self.say = say
        self.results: dict[str, Any] = {}
        self._exit = contextlib.ExitStack()
        self._servers: BenchServers | None = None
        self._mongo: MongoClient | None = None

    def __enter__(self) -> "Harness":
        return self

    def __exit__(self, *exc: object) -> None:
        self._exit.close()

    @property
    def servers(self) -> BenchServers:
        """mongod and redis-server of this run, started at the first use."""
        if self._servers is None:
            self._servers = self._exit.enter_context(BenchServers())
            self.say(f"mongod on {self._servers.mongo.url}, redis-server on port {self._servers.redis.port} "
                     f"(both started for this run)")
        return self._servers

    @property
    def mongo(self) -> MongoClient:
        if self._mongo is None:
            self._mongo = self._exit.enter_context(MongoClient(self.servers.mongo.url, tz_aware=True))
        return self._mongo

    def desks(self, size: int, mode: str | None = None) -> DeskPool:
        """A desk pool to use in a ``with`` block: threads or processes (default: ``--engine-mode``)."""
        return DeskPool(size, mode or self.options.engine_mode)

    def process_desks(self, size: int) -> DeskPool:
        return DeskPool(size, PROCESSES)


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


def run_parts(parts: Sequence[Part], options: RunOptions, say: Say) -> list[Outcome]:
    """Each part in turn on the shared harness; a part that raises is recorded as stopped and the next runs."""
    outcomes: list[Outcome] = []
    with Harness(options, say) as harness:
        for number, part in enumerate(parts, 1):
            config = part.config(options)
            say(f"\n[{number}/{len(parts)}] {part.name}: {part.description}")
            began = time.monotonic()
            results, error = None, None
            try:
                results = part.run(config, harness)
            except Exception as exc:  # noqa: BLE001 - the part fails visibly, the run goes on
                error = f"{type(exc).__name__}: {exc}"
                where = "" if isinstance(exc, BenchError) else "\n" + traceback.format_exc(limit=-3)
                say(f"  [FAIL] part {part.name} stopped: {error}{where}")
            harness.results[part.name] = results
            outcomes.append(Outcome(part, config, results, round(time.monotonic() - began, 1), error))
    return outcomes
