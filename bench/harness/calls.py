"""Closed-loop callers through Celery: each presses again as soon as its answer came.

Callers are threads spread over a few desk processes, each thread with its own
``AssignmentClient`` (as the client asks). Every task goes through the very
same ``AssignmentClient.call`` path (send, run on the same workers, result
back through the Redis backend). Only answers with the status the task must
give (``assigned`` for a claim, ``noop`` for the no-op) count as calls; any
other answer or error stops the measurement.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

from bench.harness.cpu import CpuMeter, CpuUse
from bench.harness.desks import BenchError, DeskPool
from bench.harness.integrity import Answer
from bench.harness.stats import latency_summary, ratio
from config import Settings
from producers.client import AssignmentClient

ASSIGN_TASK = "callqueue.assign_next_student"
CLIENT_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class CallJob:
    """One desk's callers: ``threads`` clients calling ``task`` in a loop for a while."""

    environ: dict[str, str]
    task: str
    session_id: str
    prefix: str
    threads: int
    duration_seconds: float

    def prepare(self, cache: dict[str, Any]) -> Callable[[float], "CallRun"]:
        """Make (once per desk) one client per thread, then return the timed run."""
        clients = cache.get("clients")
        if clients is None or len(clients.items) < self.threads:
            settings = Settings.from_env(self.environ)
            clients = cache["clients"] = ClientSet(
                [AssignmentClient(settings, timeout_seconds=CLIENT_TIMEOUT_SECONDS, retries=0)
                 for _ in range(self.threads)])
        return lambda go_time: self._run(clients.items[:self.threads], go_time)

    def _run(self, clients: list[AssignmentClient], go_time: float) -> "CallRun":
        """One thread per client, all calling until the deadline; their records merged."""
        deadline = go_time + self.duration_seconds
        runs = [CallRun() for _ in clients]
        threads = [threading.Thread(target=self._caller, args=(client, index, deadline, runs[index]))
                   for index, client in enumerate(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return CallRun.merge(runs)

    def _caller(self, client: AssignmentClient, index: int, deadline: float, run: "CallRun") -> None:
        """One caller: call, wait for the answer, record it, again until the deadline."""
        while time.monotonic() < deadline:
            assistant = f"{self.prefix}-t{index}-{len(run.latencies_ms)}"
            began = time.perf_counter()
            try:
                result = client.call(self.task, call_session_id=self.session_id, assistant_id=assistant,
                                     request_id=assistant)
            except Exception as exc:  # noqa: BLE001 - counted and reported, never hidden
                run.statuses[f"error:{type(exc).__name__}"] += 1
                continue
            finally:
                run.finished = time.monotonic()
            run.latencies_ms.append((time.perf_counter() - began) * 1000)
            run.record(result, assistant, self.session_id)


@dataclass
class CallRun:
    """Latencies, answer statuses and claimed students of some callers."""

    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    answers: list[Answer] = field(default_factory=list)
    finished: float = 0.0

    def record(self, result: dict[str, Any], assistant: str, session_id: str) -> None:
        """Count the answer by status; keep claimed students for the audit."""
        status = str(result.get("status"))
        if status == "assigned" and result.get("already_held"):
            status = "already_held"
        elif status == "assigned" and result.get("assigned_to") != assistant:
            status = "wrong_assistant"
        self.statuses[status] += 1
        if status == "assigned":
            self.answers.append(Answer(session_id, result["student_id"], assistant, result["assignment_token"]))

    @classmethod
    def merge(cls, runs: list["CallRun"]) -> "CallRun":
        """Several callers' records as one."""
        merged = cls()
        for run in runs:
            merged.latencies_ms.extend(run.latencies_ms)
            merged.statuses.update(run.statuses)
            merged.answers.extend(run.answers)
            merged.finished = max(merged.finished, run.finished)
        return merged


class ClientSet:
    """The clients of one desk, closed together when the desk stops."""

    def __init__(self, items: list[AssignmentClient]) -> None:
        self.items = items

    def close(self) -> None:
        for client in self.items:
            client.close()


@dataclass(frozen=True)
class CallResult:
    """Throughput and latency percentiles of one task under ``callers`` concurrent callers.

    ``calls`` are the answers with the expected status (``measure_calls``
    refuses a window with any other).
    """

    task: str
    callers: int
    calls: int
    seconds: float
    latencies_ms: list[float]
    statuses: dict[str, int]
    answers: list[Answer]
    cpu: list[CpuUse] = field(default_factory=list)

    @property
    def per_second(self) -> float:
        return ratio(self.calls, self.seconds)

    def to_json(self) -> dict[str, Any]:
        return {"task": self.task, "callers": self.callers, "calls": self.calls,
                "seconds": round(self.seconds, 3), "calls_per_second": round(self.per_second, 1),
                "statuses": dict(self.statuses), "latency": latency_summary(self.latencies_ms),
                "cpu_ms_per_call": self.cpu_per_call(), "machine_busy_share": self.machine_busy_share()}

    def cpu_per_call(self) -> dict[str, float]:
        """CPU milliseconds per call by component, averaged over the windows."""
        if not self.cpu:
            return {}
        names = self.cpu[0].per_operation_ms
        return {name: round(sum(use.per_operation_ms[name] for use in self.cpu) / len(self.cpu), 3)
                for name in names}

    def machine_busy_share(self) -> float:
        """How busy the whole machine was (ours and everyone else's), averaged over the windows."""
        return round(sum(use.machine_busy_share for use in self.cpu) / len(self.cpu), 3) if self.cpu else 0.0


def measure_calls(pool: DeskPool, environ: dict[str, str], task: str, expected: str, session_id: str,
                  callers: int, processes: int, duration_seconds: float, label: str,
                  meter: CpuMeter | None = None) -> CallResult:
    """``callers`` threads over ``processes`` desks calling ``task`` for ``duration_seconds``.

    Raises ``BenchError`` when any answer was not ``expected``: an error, or
    an ``exhausted`` claim, is not a faster call.
    """
    shares = [callers // processes + (1 if index < callers % processes else 0) for index in range(processes)]
    jobs = [CallJob(environ, task, session_id, f"{label}-p{index}", share, duration_seconds)
            for index, share in enumerate(shares) if share]
    measurement = pool.run(jobs, on_go=meter.start if meter else None)
    run = CallRun.merge(measurement.results)
    calls = run.statuses.get(expected, 0)
    if calls != sum(run.statuses.values()):
        raise BenchError(f"{task} in window {label}: {sum(run.statuses.values()) - calls} answers were not "
                         f"{expected!r} ({dict(run.statuses)}); see the worker log")
    return CallResult(task, callers, calls, run.finished - measurement.started, run.latencies_ms,
                      dict(run.statuses), run.answers, [meter.stop(calls)] if meter else [])


def combine(results: list[CallResult]) -> CallResult:
    """Several windows of the same task as one result (calls and seconds summed)."""
    statuses: Counter = Counter()
    for result in results:
        statuses.update(result.statuses)
    return CallResult(results[0].task, results[0].callers, sum(r.calls for r in results),
                      sum(r.seconds for r in results), [x for r in results for x in r.latencies_ms],
                      dict(statuses), [a for r in results for a in r.answers], [c for r in results for c in r.cpu])
