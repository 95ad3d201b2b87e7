"""A fixed set of benchmark clients ("desks") that start every measurement together.

A desk is a thread or a process that keeps its own connections across jobs.
The claim parts use threads: on 2 cores, eight client processes spent almost
twice the CPU per claim of eight threads (context switches), CPU that mongod
then lacked, while the GIL never limited the clients (docs/performance.md).
Celery callers run as threads spread over a few desk processes. A measurement
hands one job to each of the first N desks; every desk prepares (connects,
loads the session), reports ready, and waits for one shared "go", so the
measured window holds only the work itself.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Protocol

PROCESSES = "processes"
THREADS = "threads"
PRELOAD = ["bench.harness.desks", "bench.harness.claims", "bench.harness.calls", "bench.harness.arrivals"]
STEP_TIMEOUT_SECONDS = 120.0


class BenchError(RuntimeError):
    """A desk failed; the message says which and why."""


class Job(Protocol):
    """What a desk runs: ``prepare`` once before the go, then the returned callable."""

    def prepare(self, cache: dict[str, Any]) -> Callable[[float], Any]:
        ...


def desk_main(index: int, inbox: Any, outbox: Any, go: Any) -> None:
    """The loop of one desk: take a job, prepare, report ready, wait for go, run, report."""
    cache: dict[str, Any] = {}
    try:
        while (job := inbox.get()) is not None:
            outbox.put(_run_one(index, job, cache, outbox, go))
    finally:
        for resource in cache.values():
            close = getattr(resource, "close", None)
            if callable(close):
                close()


def process_desk_main(index: int, inbox: Any, outbox: Any, go: Any) -> None:
    """A desk in its own process: Ctrl-C is for the parent, which stops the desks itself."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    desk_main(index, inbox, outbox, go)


def _run_one(index: int, job: Job, cache: dict[str, Any], outbox: Any, go: Any) -> tuple[str, int, Any]:
    """Prepare, report ready, wait for go, run; the final message (done or error) is returned."""
    try:
        run = job.prepare(cache)
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises
        return ("error", index, f"prepare: {type(exc).__name__}: {exc}")
    outbox.put(("ready", index, None))
    go.wait()
    try:
        return ("done", index, run(time.monotonic()))
    except Exception as exc:  # noqa: BLE001
        return ("error", index, f"run: {type(exc).__name__}: {exc}")


@dataclass
class Measurement:
    """What one synchronised run returned: the go time and each desk's result."""

    started: float
    results: list[Any]


class DeskPool:
    """``size`` desks as processes or threads; use as a context manager so they always stop."""

    def __init__(self, size: int, mode: str = PROCESSES) -> None:
        self.size = size
        self.mode = mode
        self.desks: list[Any] = []
        self.inboxes: list[Any] = []
        if mode == PROCESSES:
            self._context = multiprocessing.get_context("forkserver")
            self._context.set_forkserver_preload(PRELOAD)
            self.outbox: Any = self._context.Queue()
            self.go: Any = self._context.Event()
        else:
            self._context = None
            self.outbox = queue.Queue()
            self.go = threading.Event()

    def __enter__(self) -> "DeskPool":
        try:
            for index in range(self.size):
                self._start_desk(index)
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.stop(graceful=exc_type is None)

    def _start_desk(self, index: int) -> None:
        inbox = self._context.Queue() if self._context else queue.Queue()
        if self._context is not None:
            desk = self._context.Process(target=process_desk_main, args=(index, inbox, self.outbox, self.go),
                                         name=f"bench-desk-{index}", daemon=True)
        else:
            desk = threading.Thread(target=desk_main, args=(index, inbox, self.outbox, self.go),
                                    name=f"bench-desk-{index}", daemon=True)
        self.inboxes.append(inbox)
        self.desks.append(desk)
        desk.start()

    def pids(self) -> list[int]:
        """The desks' process ids (this process's for thread desks)."""
        if self._context is None:
            return [os.getpid()]
        return [desk.pid for desk in self.desks if desk.pid]

    def run(self, jobs: list[Job], on_go: Callable[[], None] | None = None) -> Measurement:
        """Run one job per desk, all released by the same go; raise BenchError if any failed.

        ``on_go`` runs right before the go (to start a CPU meter, say).
        """
        if len(jobs) > self.size:
            raise ValueError(f"{len(jobs)} jobs for {self.size} desks")
        self.go.clear()
        for index, job in enumerate(jobs):
            self.inboxes[index].put(job)
        ready, errors = self._collect({"ready"}, len(jobs), {})
        if on_go is not None:
            on_go()
        started = time.monotonic()
        self.go.set()
        done, errors = self._collect({"done"}, len(ready), errors)
        self.go.clear()
        if errors:
            raise BenchError("; ".join(f"desk {index}: {message}" for index, message in sorted(errors.items())))
        return Measurement(started, [done[index] for index in sorted(done)])

    def _collect(self, kinds: set[str], expected: int, errors: dict[int, str]) -> tuple[dict[int, Any], dict[int, str]]:
        """Wait for ``expected`` messages of ``kinds`` (an error counts as the desk's answer)."""
        received: dict[int, Any] = {}
        deadline = time.monotonic() + STEP_TIMEOUT_SECONDS
        while len(received) < expected:
            try:
                kind, index, payload = self.outbox.get(timeout=1.0)
            except queue.Empty:
                self._check_alive(deadline, kinds)
                continue
            if kind == "error":
                errors[index] = payload
                expected -= 1
            elif kind in kinds:
                received[index] = payload
        return received, errors

    def _check_alive(self, deadline: float, kinds: set[str]) -> None:
        """Raise when a desk died or the desks have been silent past ``deadline``."""
        dead = [desk.name for desk in self.desks if not desk.is_alive()]
        if dead:
            raise BenchError(f"desks exited unexpectedly: {', '.join(dead)}")
        if time.monotonic() > deadline:
            raise BenchError(f"desks silent for {STEP_TIMEOUT_SECONDS:.0f}s (waiting for {sorted(kinds)})")

    def stop(self, graceful: bool = True) -> None:
        """Stop every desk: politely after a clean run, at once (processes by PID) after an error.

        Thread desks that are still busy after an error are daemons and end
        with this process.
        """
        self.go.set()
        for inbox in self.inboxes:
            inbox.put(None)
        wait_seconds = 10.0 if graceful else 0.5
        for desk in self.desks:
            if self._context is not None and not graceful:
                desk.terminate()
            desk.join(wait_seconds)
            if self._context is not None and desk.is_alive():
                desk.kill()
                desk.join(5)
        self.desks.clear()
        self.inboxes.clear()
