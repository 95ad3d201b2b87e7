"""Open-loop presses: Poisson arrivals on a schedule, whatever the answers do.

A closed loop (``bench.harness.calls``) presses again only once its answer
came, so a slow answer also delays the next press and hides queueing.
Assistants press when they are ready, not when the server is: here each desk
runs its own Poisson stream (independent streams add up to one at the full
rate) with a dispatcher thread that releases each press on time to an idle
sender thread (each with its own ``AssignmentClient``) and a free assistant.
A press's latency runs from its *scheduled* arrival, so waiting in the
generator counts, as it would for a person pressing the button.

A press is an assign (``callqueue.assign_next_student``, or the part's
``press_task``) then the ``complete_student`` of the student handed out; its
baseline, the no-op pair, sends ``bench.noop`` then ``bench.noop_complete``
with the same arguments. A press whose answer is anything but ``assigned``
(or ``noop``) and ``completed`` (or ``noop``) is a failure, and a window with
failures is no measurement (``check_window``): its percentiles would leave
out exactly the presses that went wrong.
"""

from __future__ import annotations

import queue
import random
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from bench.harness.calls import ASSIGN_TASK, ClientSet
from bench.harness.cpu import CpuUse
from bench.harness.desks import BenchError
from bench.harness.integrity import Answer, COMPLETED
from bench.harness.stats import latency_summary
from bench.tasks import NOOP_COMPLETE_TASK, NOOP_TASK
from config import Settings
from producers.client import AssignmentClient

COMPLETE_TASK = "callqueue.complete_student"
NOOP_PAIR = "noop_pair"
PRESS = "assign_complete"
KIND_TASKS = {NOOP_PAIR: (NOOP_TASK, NOOP_COMPLETE_TASK), PRESS: (ASSIGN_TASK, COMPLETE_TASK)}
CLIENTS_KEY = "openloop_clients"


@dataclass(frozen=True)
class PressRecord:
    """One press as its desk saw it; times in ms, ``None`` where that step did not happen.

    ``assign_ms`` (scheduled arrival to the assign answer) is the press
    latency; ``lag_ms`` is how late the assign was sent after its scheduled
    arrival (the generator's own queueing, included in ``assign_ms``).
    """

    due_s: float
    lag_ms: float
    assign_ms: float | None
    assign_trip_ms: float | None
    complete_ms: float | None
    total_ms: float | None
    assign_status: str
    complete_status: str | None
    waited_for_sender: bool
    waited_for_assistant: bool
    answer: Answer | None

    @property
    def answered(self) -> bool:
        """True when the press did what it should: assigned (or no-op), then completed (or no-op)."""
        return self.assign_status in ("assigned", "noop") and self.complete_status in (COMPLETED, "noop")

    @property
    def frees_assistant(self) -> bool:
        """True when the assistant surely holds nothing now (safe to press again)."""
        if self.assign_status.startswith("error:"):
            return False
        return self.complete_status is None or self.complete_status in ("completed", "noop")


@dataclass(frozen=True)
class DeskRun:
    """One desk's presses of one window, and when its last answer came (monotonic seconds)."""

    records: list[PressRecord]
    finished: float


@dataclass(frozen=True)
class _Press:
    """An arrival handed to a sender: its index, due time (monotonic) and assistant."""

    index: int
    due: float
    go_time: float
    assistant: str
    waited_for_sender: bool
    waited_for_assistant: bool


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

    ``seed`` fixes the arrival schedule, so the no-op and real windows of a
    turn replay the same arrivals.
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
        """Clients (made and warmed once per desk) and the schedule, before the go."""
        clients = _desk_clients(cache, self.environ, self.threads, self.timeout_seconds)
        offsets = arrival_offsets(self.rate, self.seconds, random.Random(self.seed))
        return lambda go_time: _DeskWindow(self, clients).run(go_time, offsets)


def _desk_clients(cache: dict[str, Any], environ: dict[str, str], threads: int,
                  timeout_seconds: float) -> list[AssignmentClient]:
    """One client per sender thread, kept across windows; each makes one no-op call when new.

    The warming call opens the client's broker and result connections outside
    any measured window.
    """
    clients = cache.get(CLIENTS_KEY)
    if clients is None or len(clients.items) < threads:
        if clients is not None:
            clients.close()
        settings = Settings.from_env(environ)
        clients = cache[CLIENTS_KEY] = ClientSet(
            [AssignmentClient(settings, timeout_seconds=timeout_seconds, retries=0) for _ in range(threads)])
        for client in clients.items:
            client.call(NOOP_TASK, call_session_id="openloop-warm", assistant_id="openloop-warm")
    return clients.items[:threads]


class _DeskWindow:
    """The threads of one desk for one window.

    The dispatcher (the desk's own thread) sleeps until each arrival is due,
    takes a free assistant and an idle sender, and queues the press; sender
    threads press and complete. When no sender (or assistant) is free the
    dispatcher waits, and that press, and every later one that falls due
    meanwhile, is flagged; its latency still runs from its scheduled arrival.
    """

    def __init__(self, job: PressJob, clients: list[AssignmentClient]) -> None:
        self.job = job
        self.clients = clients
        self.inbox: queue.Queue[_Press | None] = queue.Queue()
        self.idle_senders = threading.Semaphore(len(clients))
        self.free_assistants: queue.Queue[str] = queue.Queue()
        for assistant in job.assistants:
            self.free_assistants.put(assistant)
        self.records: list[PressRecord] = []
        self.sender_wait_ended = 0.0
        self.assistant_wait_ended = 0.0

    def run(self, go_time: float, offsets: Sequence[float]) -> DeskRun:
        """Release every scheduled press, then wait until all are answered."""
        senders = [threading.Thread(target=self._serve, args=(client,), daemon=True) for client in self.clients]
        for sender in senders:
            sender.start()
        try:
            for index, offset in enumerate(offsets):
                self._dispatch(index, go_time, go_time + offset)
        finally:
            for _sender in senders:
                self.inbox.put(None)
            for sender in senders:
                sender.join()
        return DeskRun(self.records, time.monotonic())

    def _dispatch(self, index: int, go_time: float, due: float) -> None:
        _sleep_until(due)
        assistant, waited_for_assistant = self._take_assistant(due)
        waited_for_sender = self._take_sender(due)
        self.inbox.put(_Press(index, due, go_time, assistant, waited_for_sender, waited_for_assistant))

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
        """One sender: press, record, give the assistant back once it holds nothing."""
        while (press := self.inbox.get()) is not None:
            try:
                record = self._press(client, press)
            except Exception as exc:  # noqa: BLE001 - a fault of the bench itself, recorded as such
                record = _failed(press, time.monotonic(), f"error:bench:{type(exc).__name__}")
            self.records.append(record)
            self.idle_senders.release()
            if record.frees_assistant:
                self.free_assistants.put(press.assistant)

    def _press(self, client: AssignmentClient, press: _Press) -> PressRecord:
        """Assign (or its no-op), then complete the student handed out (or its no-op)."""
        assign_task, complete_task = KIND_TASKS[self.job.kind]
        if self.job.kind == PRESS:
            assign_task = self.job.press_task
        sent = time.monotonic()
        try:
            answer = client.call(assign_task, call_session_id=self.job.session_id, assistant_id=press.assistant,
                                 request_id=uuid.uuid4().hex)
        except Exception as exc:  # noqa: BLE001 - counted and reported, never hidden
            return _failed(press, sent, f"error:{type(exc).__name__}")
        answered = time.monotonic()
        status, hold = self._read_assign(answer, press)
        complete_status, completed = None, None
        if hold is not None:
            completed, complete_status = self._complete(client, complete_task, press.assistant, *hold)
        return PressRecord(
            due_s=press.due - press.go_time, lag_ms=_ms(sent - press.due), assign_ms=_ms(answered - press.due),
            assign_trip_ms=_ms(answered - sent),
            complete_ms=None if completed is None else _ms(completed - answered),
            total_ms=None if completed is None else _ms(completed - press.due),
            assign_status=status, complete_status=complete_status,
            waited_for_sender=press.waited_for_sender, waited_for_assistant=press.waited_for_assistant,
            answer=None if hold is None or status == "noop" else Answer(
                self.job.session_id, hold[0], press.assistant, hold[1], complete_status or "held"))

    def _read_assign(self, answer: dict[str, Any], press: _Press) -> tuple[str, tuple[str, int] | None]:
        """The assign answer's status and what to complete: (student id, token), or None."""
        status = str(answer.get("status"))
        if status == "noop":
            return status, (f"{self.job.session_id}:s{press.index:06d}", 1)
        if status != "assigned":
            return status, None
        hold = (str(answer["student_id"]), int(answer["assignment_token"]))
        if answer.get("assigned_to") != press.assistant:
            return "wrong_assistant", hold
        return ("already_held" if answer.get("already_held") else "assigned"), hold

    def _complete(self, client: AssignmentClient, task: str, assistant: str, student_id: str,
                  token: int) -> tuple[float, str]:
        """Send the completion; when its answer came and its status."""
        try:
            answer = client.call(task, call_session_id=self.job.session_id, student_id=student_id,
                                 assistant_id=assistant, outcome=self.job.outcome, assignment_token=token)
        except Exception as exc:  # noqa: BLE001 - counted and reported, never hidden
            return time.monotonic(), f"error:{type(exc).__name__}"
        status = str(answer.get("status"))
        if status == "completed" and answer.get("student_id") != student_id:
            status = "wrong_student"
        return time.monotonic(), status


def _failed(press: _Press, sent: float, status: str) -> PressRecord:
    """A press whose assign got no answer: no latency, only its status and lag."""
    return PressRecord(press.due - press.go_time, _ms(sent - press.due), None, None, None, None, status, None,
                       press.waited_for_sender, press.waited_for_assistant, None)


def _sleep_until(deadline: float) -> None:
    while (remaining := deadline - time.monotonic()) > 0:
        time.sleep(remaining)


def _ms(seconds: float) -> float:
    return seconds * 1000


@dataclass(frozen=True)
class WindowResult:
    """One window of one kind at one rate: every press scheduled in it, answered to the end."""

    kind: str
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
    return {
        "presses": len(records),
        "waited_for_sender": sum(record.waited_for_sender for record in records),
        "waited_for_assistant": sum(record.waited_for_assistant for record in records),
        "statuses": statuses(records),
        "assign_latency": latency_summary(values(records, "assign_ms")),
        "assign_round_trip": latency_summary(values(records, "assign_trip_ms")),
        "complete_round_trip": latency_summary(values(records, "complete_ms")),
        "press_total": latency_summary(values(records, "total_ms")),
        "dispatch_lag": latency_summary(values(records, "lag_ms")),
    }



def check_window(window: WindowResult) -> None:
    """Raise ``BenchError`` when any press of the window failed (an error, nobody to assign, a refusal)."""
    failed = [record for record in window.records if not record.answered]
    if failed:
        raise BenchError(f"open loop, window {window.label}: {len(failed)} of {len(window.records)} presses "
                         f"failed ({statuses(failed)}); see the worker log")
