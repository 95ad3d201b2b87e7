"""Callers through Celery, each with its own ``AssignmentClient``, all on the same ``AssignmentClient.call`` path.

Closed loop (``CallJob``, ``measure_calls``): threads over a few desk
processes, each calling again as soon as its answer came. Only answers with
the status the task must give (``assigned`` for a claim, ``noop`` for the
no-op) are calls; any other answer or error stops the measurement.

Open loop (``PressJob``): a closed loop hides queueing, but people press when
they are ready. Each desk runs its own Poisson stream (streams add up to one
at the full rate): a dispatcher releases each press on time to an idle sender
thread and a free assistant, and latency runs from the *scheduled* arrival.
A press is one of ``bench.harness.presses``' three kinds: the no-op pair
(``bench.noop`` and ``bench.noop_complete``, the baseline), two trips (an
assign, then the completion of the student handed out) or one trip
(``complete_and_next``). A window with a failed press is no measurement
(``check_window``): its percentiles would leave out the presses that failed.
"""

from __future__ import annotations

import queue
import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple, Sequence

from bench.harness.cpu import CpuMeter, CpuUse
from bench.harness.desks import BenchError, DeskPool
from bench.harness.integrity import COMPLETED, Answer
from bench.harness.presses import (
    ASSIGN_TASK, NOOP_PAIR, ONE_TRIP, PRESS, Arrival, Presser, PressRecord, desk_clients, failed, prime,
)
from bench.harness.targets import latency_summary, ratio
from bench.tasks import NOOP_TASK
from callqueue.producers.client import AssignmentClient

__all__ = ["ASSIGN_TASK", "NOOP_PAIR", "ONE_TRIP", "PRESS", "PressRecord", "desk_clients"]

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
        clients = desk_clients(cache, self.environ, self.threads, CLIENT_TIMEOUT_SECONDS)
        return lambda go_time: self._run(clients, go_time)

    def _run(self, clients: list[AssignmentClient], go_time: float) -> "CallRun":
        """One thread per client, all calling until the deadline; their records merged."""
        runs = [CallRun() for _ in clients]
        with ThreadPoolExecutor(len(clients)) as threads:
            callers = [threads.submit(self._caller, client, index, go_time + self.duration_seconds, runs[index])
                       for index, client in enumerate(clients)]
        for caller in callers:
            caller.result()  # a fault of the bench itself fails the desk
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
        return cls([ms for run in runs for ms in run.latencies_ms], sum((run.statuses for run in runs), Counter()),
                   [answer for run in runs for answer in run.answers], max(run.finished for run in runs))


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
                "cpu_ms_per_call": self.cpu_per_call(), "machine_busy_share": round(sum(
                    use.machine_busy_share for use in self.cpu) / len(self.cpu), 3) if self.cpu else 0.0}

    def cpu_per_call(self) -> dict[str, float]:
        """CPU milliseconds per call by component, averaged over the windows."""
        names = self.cpu[0].per_operation_ms if self.cpu else {}
        return {name: round(sum(use.per_operation_ms[name] for use in self.cpu) / len(self.cpu), 3) for name in names}


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
    return CallResult(results[0].task, results[0].callers, sum(r.calls for r in results),
                      sum(r.seconds for r in results), [x for r in results for x in r.latencies_ms],
                      dict(sum((Counter(r.statuses) for r in results), Counter())),
                      [a for r in results for a in r.answers], [c for r in results for c in r.cpu])


# -- open loop ----------------------------------------------------------------------------------------------

class DeskRun(NamedTuple):
    """One desk's presses of one window, and when its last answer came."""

    records: list[PressRecord]
    finished: float


def arrival_offsets(rate: float, seconds: float, rng: random.Random) -> list[float]:
    """Poisson arrivals: exponential gaps of mean ``1 / rate``, every one inside ``[0, seconds)``."""
    offsets: list[float] = []
    at = rng.expovariate(rate)
    while at < seconds:
        offsets.append(at)
        at += rng.expovariate(rate)
    return offsets


@dataclass(frozen=True)
class PressJob:
    """One desk's share of a window: a Poisson stream at ``rate`` presses/s for ``seconds``.

    ``seed`` fixes the arrivals, so the no-op and real windows of a turn replay the same ones.
    """

    environ: dict[str, str]
    kind: str
    session_id: str
    assistants: tuple[str, ...]
    rate: float
    seconds: float
    seed: str
    threads: int
    timeout_seconds: float
    outcome: str
    press_task: str = ASSIGN_TASK

    def prepare(self, cache: dict[str, Any]) -> Callable[[float], DeskRun]:
        clients = desk_clients(cache, self.environ, self.threads, self.timeout_seconds, warm_task=NOOP_TASK)
        if self.kind == ONE_TRIP:
            prime(cache, clients, self.session_id, self.assistants)
        presser = Presser(self.kind, self.session_id, self.outcome, self.press_task, cache)
        offsets = arrival_offsets(self.rate, self.seconds, random.Random(self.seed))
        return lambda go_time: _DeskWindow(self, clients, presser).run(go_time, offsets)


class _DeskWindow:
    """The threads of one desk for one window.

    The dispatcher (the desk's own thread) sleeps until each arrival is due,
    takes a free assistant and an idle sender, and queues the press. When no
    sender (or assistant) is free it waits, and that press and every later
    one falling due meanwhile is flagged; latency still runs from the
    scheduled arrival.
    """

    def __init__(self, job: PressJob, clients: list[AssignmentClient], presser: Presser) -> None:
        self.job, self.clients, self.presser = job, clients, presser
        self.inbox: queue.Queue[Arrival | None] = queue.Queue()
        self.idle_senders = threading.Semaphore(len(clients))
        self.free_assistants: queue.Queue[str] = queue.Queue()
        for assistant in job.assistants:
            self.free_assistants.put(assistant)
        self.records: list[PressRecord] = []
        self.sender_wait_ended = self.assistant_wait_ended = 0.0

    def run(self, go_time: float, offsets: Sequence[float]) -> DeskRun:
        """Release every scheduled press, then wait until all are answered."""
        senders = [threading.Thread(target=self._serve, args=(client,), daemon=True) for client in self.clients]
        for sender in senders:
            sender.start()
        try:
            for index, offset in enumerate(offsets):
                due = go_time + offset
                while (remaining := due - time.monotonic()) > 0:
                    time.sleep(remaining)
                assistant, waited_for_assistant = self._take_assistant(due)
                self.inbox.put(Arrival(index, due, assistant, self._take_sender(due), waited_for_assistant))
        finally:
            for _sender in senders:
                self.inbox.put(None)
            for sender in senders:
                sender.join()
        return DeskRun(self.records, time.monotonic())

    def _take_sender(self, due: float) -> bool:
        """Reserve an idle sender; True when the press could not have one at its due time."""
        if self.idle_senders.acquire(blocking=False):
            return due < self.sender_wait_ended
        self.idle_senders.acquire()
        self.sender_wait_ended = time.monotonic()
        return True

    def _take_assistant(self, due: float) -> tuple[str, bool]:
        """A free assistant (none has a press in flight); True when none was free at the due time."""
        try:
            return self.free_assistants.get_nowait(), due < self.assistant_wait_ended
        except queue.Empty:
            assistant = self.free_assistants.get()
            self.assistant_wait_ended = time.monotonic()
            return assistant, True

    def _serve(self, client: AssignmentClient) -> None:
        """One sender: press, record, give the assistant back once its press ended as it should."""
        while (arrival := self.inbox.get()) is not None:
            try:
                record = self.presser.press(client, arrival)
            except Exception as exc:  # noqa: BLE001 - a fault of the bench itself, recorded as such
                record = failed(arrival, time.monotonic(), f"error:bench:{type(exc).__name__}")
            self.records.append(record)
            self.idle_senders.release()
            if not record.assign_status.startswith("error:") and record.complete_status in (None, COMPLETED, "noop"):
                self.free_assistants.put(arrival.assistant)


@dataclass(frozen=True)
class WindowResult:
    """One window of one kind at one rate: every press scheduled in it, answered to the end."""

    label: str
    offered_per_second: float
    seconds: float
    elapsed_seconds: float
    records: list[PressRecord]
    cpu: CpuUse | None = None

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "offered_presses_per_second": round(self.offered_per_second, 3),
                "window_seconds": self.seconds, "elapsed_seconds": round(self.elapsed_seconds, 3),
                "arrivals_per_second": round(len(self.records) / self.seconds, 3),
                **summaries(self.records), "cpu": self.cpu.to_json() if self.cpu else None}


def check_window(window: WindowResult) -> None:
    """Raise ``BenchError`` when any press of the window failed (an error, nobody to assign, a refusal)."""
    failures = [record for record in window.records if not record.answered]
    if failures:
        raise BenchError(f"open loop, window {window.label}: {len(failures)} of {len(window.records)} presses "
                         f"failed ({statuses(failures)}); see the worker log")


def values(records: Sequence[PressRecord], name: str) -> list[float]:
    """One timing of every press that has it."""
    return [value for record in records if (value := getattr(record, name)) is not None]


def statuses(records: Sequence[PressRecord]) -> dict[str, int]:
    """Counts of "assign status/complete status" pairs."""
    counts: dict[str, int] = {}
    for record in records:
        key = f"{record.assign_status}/{record.complete_status or '-'}"
        counts[key] = counts.get(key, 0) + 1
    return counts


def summaries(records: Sequence[PressRecord]) -> dict[str, Any]:
    """Presses, waits, statuses and the percentiles of every timing of some presses."""
    return {"presses": len(records), "waited_for_sender": sum(record.waited_for_sender for record in records),
            "waited_for_assistant": sum(record.waited_for_assistant for record in records),
            "statuses": statuses(records), "assign_latency": latency_summary(values(records, "assign_ms")),
            "assign_round_trip": latency_summary(values(records, "assign_trip_ms")),
            "complete_round_trip": latency_summary(values(records, "complete_ms")),
            "press_total": latency_summary(values(records, "total_ms")),
            "dispatch_lag": latency_summary(values(records, "lag_ms"))}
