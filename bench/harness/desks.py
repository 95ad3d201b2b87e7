"""Benchmark clients ("desks"), threads or processes, that start every measurement together.

Each desk keeps its connections across jobs, prepares its job (connects,
reads the session), reports ready and waits for one shared "go", so a window
holds only the work. Claim parts use threads: on 2 cores eight client
processes cost mongod twice the CPU per claim of eight threads, and the GIL
never limited them (docs/performance.md).
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import threading
import time
from typing import Any, Callable, NamedTuple, Protocol

PROCESSES = "processes"
THREADS = "threads"
PRELOAD = ["bench.harness.desks", "bench.harness.claims", "bench.harness.callers"]
STEP_TIMEOUT_SECONDS = 120.0


class BenchError(RuntimeError):
    """A desk failed; the message says which and why."""


class Job(Protocol):
    """What a desk runs: ``prepare`` once before the go, then the returned callable."""

    def prepare(self, cache: dict[str, Any]) -> Callable[[float], Any]:
        ...


def desk_main(index: int, inbox: Any, outbox: Any, go: Any, in_process: bool = False) -> None:
    """One desk: take a job, prepare, report ready, wait for go, run, report; close what it kept at the end.

    A desk process ignores Ctrl-C: that is for the parent, which stops the desks itself.
    """
    if in_process:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    cache: dict[str, Any] = {}
    try:
        while (job := inbox.get()) is not None:
            outbox.put(_run_one(index, job, cache, outbox, go))
    finally:
        for resource in cache.values():
            getattr(resource, "close", lambda: None)()


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


class Measurement(NamedTuple):
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
        start = self._context.Process if self._context is not None else threading.Thread
        desk = start(target=desk_main, args=(index, inbox, self.outbox, self.go, self._context is not None),
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
                if dead := [desk.name for desk in self.desks if not desk.is_alive()]:
                    raise BenchError(f"desks exited unexpectedly: {', '.join(dead)}") from None
                if time.monotonic() > deadline:
                    raise BenchError(f"desks silent for {STEP_TIMEOUT_SECONDS:.0f}s (waiting for {sorted(kinds)})") \
                        from None
                continue
            if kind == "error":
                errors[index] = payload
                expected -= 1
            elif kind in kinds:
                received[index] = payload
        return received, errors

    def stop(self, graceful: bool = True) -> None:
        """Stop every desk: politely after a clean run, at once (processes by PID) after an error.

        Thread desks still busy after an error are daemons and end with this process.
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
