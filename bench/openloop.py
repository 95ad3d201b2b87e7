"""Open-loop latency of a "Get Next" press: presses arrive on a schedule, whatever the answers do.

The Celery part (``bench.celery_load``) is a closed loop: a caller presses
again only once its answer came, so a slow answer also delays the next press
and the offered load gives way to the server. Assistants press when they are
ready, not when the server is, so a closed loop hides queueing. Here presses
arrive at a fixed rate with exponential gaps (Poisson arrivals) from many
simulated assistants, and each press's latency is measured from its
*scheduled* arrival: time spent waiting in the generator (for a free sender
thread, or behind a dispatcher that fell behind) counts, as it would for a
person pressing the button.

A press is ``callqueue.assign_next_student`` followed by
``callqueue.complete_student`` of the student it handed out (outcome
``no_answer`` with its ``assignment_token``); an assistant presses again only
after that completion. Its baseline, the no-op pair, is ``bench.noop``
followed by ``bench.noop_complete`` with the same arguments: the same number
of Celery messages through the same client path on the same worker. The
latency with a target is the assign's (scheduled arrival to the assign
answer); the completion's own round trip is recorded next to it.

Offered rates are fractions of the no-op pair's capacity (saturated no-op
calls/s over two), given by the caller. Load comes from several desk
processes (``bench.pool.DeskPool``); each runs its own Poisson stream at
rate / desks (independent Poisson streams add up to one at the full rate) with
a dispatcher thread that releases each press on time to an idle sender thread,
each sender with its own ``AssignmentClient``. At each rate the windows of the
two kinds take turns (no-op, press, press, no-op, ...) and the two windows of a
turn replay the same arrival schedule, so drift in the shared machine's load
and the luck of the draw cancel in the ratios.
"""

from __future__ import annotations

import dataclasses
import math
import queue
import random
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

from pymongo import MongoClient
from pymongo.database import Database

from bench import integrity
from bench.celery_load import ASSIGN_TASK, ClientSet
from bench.cpu import CpuMeter, CpuUse
from bench.data import seed_session, settle
from bench.integrity import Answer, IntegrityReport
from bench.pool import PROCESSES, DeskPool
from bench.servers import BenchServers, WorkerOptions
from bench.stats import latency_summary, percentile, ratio
from bench.targets import Target
from bench.tasks import NOOP_COMPLETE_TASK, NOOP_TASK
from config import Settings
from producers.client import AssignmentClient
from workers.models import PENDING
from workers.store import STUDENTS, ensure_indexes

COMPLETE_TASK = "callqueue.complete_student"
NOOP_PAIR = "noop_pair"
PRESS = "assign_complete"
KIND_TASKS = {NOOP_PAIR: (NOOP_TASK, NOOP_COMPLETE_TASK), PRESS: (ASSIGN_TASK, COMPLETE_TASK)}
KIND_LABELS = {NOOP_PAIR: "no-op pair", PRESS: "assign + complete"}
P50_BOUND = 1.3
P99_BOUND = 1.5
CLIENTS_KEY = "openloop_clients"
Say = Callable[[str], None]


@dataclass(frozen=True)
class OpenLoopConfig:
    """Rates, window lengths and generator size of the open-loop part (``quick`` for a smoke run).

    ``fractions`` are offered press rates as shares of the no-op pair's
    capacity; ``target_fractions`` those of them the issue sets targets at.
    Each rate runs ``windows_per_kind`` windows of each kind, interleaved.
    Senders per desk must outnumber the presses a desk has in flight at once,
    so an arrival always finds one idle (waits are counted when it does not).
    """

    fractions: tuple[float, ...] = (0.1, 0.3, 0.5)
    target_fractions: tuple[float, ...] = (0.1, 0.3)
    window_seconds: float = 4.0
    windows_per_kind: int = 4
    warmup_seconds: float = 2.0
    desks: int = 4
    threads_per_desk: int = 16
    assistants: int = 1000
    outcome: str = "no_answer"
    client_timeout_seconds: float = 10.0
    # The real press's first task: assign_next_student, or bench.claim_only to see what a bare claim costs.
    press_task: str = ASSIGN_TASK

    def __post_init__(self) -> None:
        if not self.fractions or min(self.fractions) <= 0:
            raise ValueError("fractions must be positive")
        if self.window_seconds <= 0 or self.windows_per_kind < 1 or self.desks < 1 or self.threads_per_desk < 1:
            raise ValueError("window_seconds, windows_per_kind, desks and threads_per_desk must be positive")
        if self.assistants < self.desks:
            raise ValueError("at least one assistant per desk")

    @classmethod
    def quick(cls, **overrides: Any) -> "OpenLoopConfig":
        """About half a minute: two 2 s windows per kind and rate, a 1 s warm-up."""
        values: dict[str, Any] = dict(window_seconds=2.0, windows_per_kind=2, warmup_seconds=1.0)
        values.update(overrides)
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# -- what a desk sends and records ---------------------------------------------

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
            answer=(answer["student_id"], press.assistant) if status in ("assigned", "wrong_assistant") else None)

    def _read_assign(self, answer: dict[str, Any], press: _Press) -> tuple[str, tuple[str, int] | None]:
        """The assign answer's status and what to complete: (student id, token), or None."""
        status = str(answer.get("status"))
        if status == "noop":
            return status, (f"{self.job.session_id}:s{press.index:06d}", 1)
        if status != "assigned":
            return status, None
        if answer.get("assigned_to") != press.assistant:
            return "wrong_assistant", None
        hold = (str(answer["student_id"]), int(answer["assignment_token"]))
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


# -- what the parent keeps -----------------------------------------------------

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
                **_summaries(self.records), "cpu": self.cpu.to_json() if self.cpu else None}


def _values(records: Sequence[PressRecord], name: str) -> list[float]:
    """One timing of every press that has it."""
    return [value for record in records if (value := getattr(record, name)) is not None]


def _statuses(records: Sequence[PressRecord]) -> dict[str, int]:
    """Counts of "assign status/complete status" pairs."""
    counts: dict[str, int] = {}
    for record in records:
        key = f"{record.assign_status}/{record.complete_status or '-'}"
        counts[key] = counts.get(key, 0) + 1
    return counts


def _summaries(records: Sequence[PressRecord]) -> dict[str, Any]:
    """Presses, waits, statuses and the percentiles of every timing of some presses."""
    return {
        "presses": len(records),
        "waited_for_sender": sum(record.waited_for_sender for record in records),
        "waited_for_assistant": sum(record.waited_for_assistant for record in records),
        "statuses": _statuses(records),
        "assign_latency": latency_summary(_values(records, "assign_ms")),
        "assign_round_trip": latency_summary(_values(records, "assign_trip_ms")),
        "complete_round_trip": latency_summary(_values(records, "complete_ms")),
        "press_total": latency_summary(_values(records, "total_ms")),
        "dispatch_lag": latency_summary(_values(records, "lag_ms")),
    }


@dataclass
class RateResult:
    """Both kinds' windows at one offered rate, and the real presses' session."""

    fraction: float
    offered_per_second: float
    session_id: str
    students: int
    windows: dict[str, list[WindowResult]] = field(default_factory=lambda: {NOOP_PAIR: [], PRESS: []})

    def records(self, kind: str) -> list[PressRecord]:
        return [record for window in self.windows[kind] for record in window.records]

    def latency(self, kind: str, fraction: float) -> float:
        """A percentile of the press latency (scheduled arrival to assign answer), windows pooled."""
        return percentile(_values(self.records(kind), "assign_ms"), fraction)

    def latency_ratio(self, fraction: float) -> float:
        """Real press over no-op pair at one percentile of the press latency."""
        return ratio(self.latency(PRESS, fraction), self.latency(NOOP_PAIR, fraction))

    def answers(self) -> list[Answer]:
        return [record.answer for record in self.records(PRESS) if record.answer is not None]

    def to_json(self) -> dict[str, Any]:
        complete_p99 = [percentile(_values(self.records(kind), "complete_ms"), 0.99) for kind in (PRESS, NOOP_PAIR)]
        return {
            "fraction_of_capacity": self.fraction, "offered_presses_per_second": round(self.offered_per_second, 3),
            "session_id": self.session_id, "students_seeded": self.students,
            "kinds": {kind: {**_summaries(self.records(kind)), "windows": [w.to_json() for w in windows]}
                      for kind, windows in self.windows.items()},
            "ratios_press_vs_noop_pair": {
                "assign_p50": _rounded(self.latency_ratio(0.5)), "assign_p95": _rounded(self.latency_ratio(0.95)),
                "assign_p99": _rounded(self.latency_ratio(0.99)), "complete_p99": _rounded(ratio(*complete_p99)),
            },
        }


def _rounded(value: float) -> float | None:
    """JSON has no infinity: an undefined ratio is null."""
    return None if math.isinf(value) or math.isnan(value) else round(value, 3)


@dataclass
class OpenLoopResults:
    """Everything the open-loop part measured, with its targets, integrity checks, JSON and chart."""

    config: OpenLoopConfig
    capacity_presses_per_second: float
    rates: list[RateResult] = field(default_factory=list)
    warmup_answers: list[Answer] = field(default_factory=list)
    reports: list[IntegrityReport] = field(default_factory=list)
    seconds: float = 0.0

    def targets(self) -> list[Target]:
        """At each target rate: the press's p50 and p99 latency against the no-op pair's, windows pooled."""
        goals = []
        for rate in self.rates:
            if any(math.isclose(rate.fraction, wanted) for wanted in self.config.target_fractions):
                name = (f"open loop at {rate.fraction:.0%} of no-op capacity ({rate.offered_per_second:.1f} "
                        f"presses/s), {self.config.press_task} latency from scheduled arrival vs no-op pair")
                goals.append(Target(f"{name}, p50", rate.latency_ratio(0.5), P50_BOUND, at_least=False))
                goals.append(Target(f"{name}, p99", rate.latency_ratio(0.99), P99_BOUND, at_least=False))
        return goals

    def integrity(self) -> list[IntegrityReport]:
        """One report per session the real presses claimed from (warm-up included)."""
        return list(self.reports)

    def to_json(self) -> dict[str, Any]:
        return {"config": self.config.to_json(),
                "capacity_presses_per_second": round(self.capacity_presses_per_second, 3),
                "rates": [rate.to_json() for rate in self.rates],
                "targets": [goal.to_json() for goal in self.targets()],
                "integrity": [report.to_json() for report in self.reports],
                "seconds": round(self.seconds, 1)}

    def draw(self, axes: Any) -> None:
        """Press latency p50 (solid) and p99 (dashed) against offered load, no-op pair and real press."""
        loads = [rate.offered_per_second for rate in self.rates]
        for kind, color in ((NOOP_PAIR, "tab:gray"), (PRESS, "tab:blue")):
            for fraction, style in ((0.5, "-"), (0.99, "--")):
                axes.plot(loads, [rate.latency(kind, fraction) for rate in self.rates], linestyle=style,
                          marker="o", color=color, label=f"{KIND_LABELS[kind]}, p{round(fraction * 100)}")
        axes.set_xticks(loads, [f"{rate.offered_per_second:.1f}/s\n{rate.fraction:.0%}" for rate in self.rates])
        axes.set_ylim(bottom=0)
        axes.set_xlabel("offered presses/s (share of the no-op pair's capacity)")
        axes.set_ylabel("scheduled arrival to assign answer, ms")
        axes.set_title("Open loop: Poisson presses, assign then complete")
        axes.legend(fontsize=8)


# -- the part ------------------------------------------------------------------

@dataclass(frozen=True)
class _RatePlan:
    """One offered rate, its session and how many students it needs."""

    fraction: float
    rate: float
    session_id: str
    students: int


def open_loop_part(servers: BenchServers, worker_options: WorkerOptions, mongo: MongoClient,
                   config: OpenLoopConfig, capacity_presses_per_second: float, say: Say) -> OpenLoopResults:
    """Measure press latency under open-loop Poisson load at each fraction of ``capacity_presses_per_second``.

    ``capacity_presses_per_second`` is the no-op pair's capacity: saturated
    ``bench.noop`` calls/s over two. Seeds one fresh session per rate (and one
    for the warm-up) in the servers' database without dropping anything
    else, starts its own worker with ``worker_options`` and its own desk
    processes, and stops both when done, also on errors and Ctrl-C. Prints one
    line per rate and kind via ``say``.
    """
    if not capacity_presses_per_second > 0:
        raise ValueError(f"capacity must be positive, got {capacity_presses_per_second!r}")
    began = time.monotonic()
    database = mongo[servers.settings().mongo_db]
    plans, warmup = _plans(config, capacity_presses_per_second)
    _seed(database, [warmup, *plans])
    say(_header(config, capacity_presses_per_second, plans))
    results = OpenLoopResults(config, capacity_presses_per_second)
    environ = servers.environ()
    with servers.workers(worker_options) as worker, DeskPool(config.desks, PROCESSES) as pool:
        meter = servers.cpu_meter(worker, pool.pids)
        for kind in (NOOP_PAIR, PRESS):
            window = _window(pool, meter, environ, config, warmup, kind, config.warmup_seconds, "warm-up")
            results.warmup_answers.extend(_answers(window))
        for plan in plans:
            results.rates.append(_measure_rate(pool, meter, environ, config, plan, say))
    results.reports = [check_presses("open loop warm-up", database, warmup.session_id, results.warmup_answers)]
    results.reports += [check_presses(f"open loop {rate.fraction:.0%} of capacity", database, rate.session_id,
                                      rate.answers()) for rate in results.rates]
    results.seconds = time.monotonic() - began
    return results


def _plans(config: OpenLoopConfig, capacity: float) -> tuple[list[_RatePlan], _RatePlan]:
    """A session per rate with students for every expected press and a wide margin; and the warm-up's."""
    tag = uuid.uuid4().hex[:6]
    plans = [_RatePlan(fraction, fraction * capacity, f"openloop-{tag}-{round(fraction * 100)}",
                       _students(fraction * capacity * config.window_seconds * config.windows_per_kind))
             for fraction in config.fractions]
    top = max(plans, key=lambda plan: plan.rate)
    warmup = _RatePlan(top.fraction, top.rate, f"openloop-{tag}-warm", _students(top.rate * config.warmup_seconds))
    return plans, warmup


def _students(expected_presses: float) -> int:
    """Enough students that a Poisson count of presses runs short with negligible chance."""
    return math.ceil(expected_presses + 6 * math.sqrt(expected_presses)) + 100


def _seed(database: Database, plans: list[_RatePlan]) -> None:
    """Seed each plan's session fresh, build the project's indexes, flush to disk."""
    for plan in plans:
        seed_session(database, plan.session_id, plan.students)
    ensure_indexes(database)
    settle(database)


def _header(config: OpenLoopConfig, capacity: float, plans: list[_RatePlan]) -> str:
    rates = ", ".join(f"{plan.fraction:.0%} = {plan.rate:.1f}/s" for plan in plans)
    return (f"\n[open loop] Poisson presses ({config.press_task} then complete) at {rates} of the no-op pair's capacity "
            f"({capacity:.1f} presses/s); {config.desks} desks x {config.threads_per_desk} senders, "
            f"{config.assistants} assistants; {config.windows_per_kind} x {config.window_seconds:g}s windows "
            f"per kind and rate (no-op, press, press, no-op, ...)")


def _measure_rate(pool: DeskPool, meter: CpuMeter, environ: dict[str, str], config: OpenLoopConfig,
                  plan: _RatePlan, say: Say) -> RateResult:
    """Interleaved windows of both kinds at one rate; a turn's two windows share their arrivals."""
    result = RateResult(plan.fraction, plan.rate, plan.session_id, plan.students)
    for turn in range(config.windows_per_kind):
        for kind in ((NOOP_PAIR, PRESS) if turn % 2 == 0 else (PRESS, NOOP_PAIR)):
            result.windows[kind].append(_window(pool, meter, environ, config, plan, kind, config.window_seconds,
                                                f"turn{turn}"))
    for kind in (NOOP_PAIR, PRESS):
        say(_rate_line(result, kind))
    return result


def _window(pool: DeskPool, meter: CpuMeter, environ: dict[str, str], config: OpenLoopConfig, plan: _RatePlan,
            kind: str, seconds: float, turn: str) -> WindowResult:
    """One window: every desk its share of the rate; done when every scheduled press is answered."""
    jobs = [PressJob(environ, kind, plan.session_id, _desk_assistants(config, desk), plan.rate / config.desks,
                     seconds, f"openloop:{plan.fraction}:{turn}:{desk}", config.threads_per_desk,
                     config.client_timeout_seconds, config.outcome, config.press_task)
            for desk in range(config.desks)]
    measurement = pool.run(jobs, on_go=meter.start)
    runs: list[DeskRun] = measurement.results
    records = [record for run in runs for record in run.records]
    cpu = meter.stop(len(records))
    return WindowResult(kind, f"{kind}-{round(plan.fraction * 100)}-{turn}", plan.rate, seconds,
                        max(run.finished for run in runs) - measurement.started, records, cpu)


def _desk_assistants(config: OpenLoopConfig, desk: int) -> tuple[str, ...]:
    """Every ``desks``-th assistant id, so no assistant presses from two desks."""
    return tuple(f"oa-{index:04d}" for index in range(desk, config.assistants, config.desks))


def _answers(window: WindowResult) -> list[Answer]:
    return [record.answer for record in window.records if record.answer is not None]


def _rate_line(result: RateResult, kind: str) -> str:
    """One printable line: percentiles of one kind at one rate, generator lag and waits, statuses, machine load."""
    records = result.records(kind)
    windows = result.windows[kind]
    seconds = sum(window.seconds for window in windows)
    assign = latency_summary(_values(records, "assign_ms"))
    complete = latency_summary(_values(records, "complete_ms"))
    busy = [window.cpu.machine_busy_share for window in windows if window.cpu]
    compared = "" if kind == NOOP_PAIR else (f" = {result.latency_ratio(0.5):.2f}x / "
                                             f"{result.latency_ratio(0.99):.2f}x the no-op pair's p50 / p99")
    return (f"  {result.fraction:>4.0%} {result.offered_per_second:6.1f}/s {KIND_LABELS[kind]:<17} "
            f"{len(records):5d} presses ({len(records) / seconds:.1f}/s): assign p50 {assign['p50_ms']:.1f} "
            f"p95 {assign['p95_ms']:.1f} p99 {assign['p99_ms']:.1f} max {assign['max_ms']:.1f} ms{compared}; "
            f"complete p50 {complete['p50_ms']:.1f} p99 {complete['p99_ms']:.1f} ms; "
            f"generator lag p99 {percentile(_values(records, 'lag_ms'), 0.99):.1f} ms, "
            f"waited for a sender {sum(r.waited_for_sender for r in records)}; {_statuses(records)}; "
            f"machine busy {sum(busy) / max(len(busy), 1):.0%}")


# -- never handed to two assistants ---------------------------------------------

def check_presses(part: str, database: Database, session_id: str, answers: Sequence[Answer]) -> IntegrityReport:
    """``bench.integrity.check``, with "held by the assistant" read as "held or completed by them".

    ``integrity.check`` expects every answered student to be still held; here
    each press completes its student, which clears ``assigned_to`` and sets
    ``completed_by``. Its other counts (a student in two answers, claimed
    twice, claimed without an answer) are kept as they are.
    """
    report = integrity.check(part, database, [session_id], answers)
    return dataclasses.replace(report, holder_mismatches=_holder_mismatches(database, session_id, answers))


def _holder_mismatches(database: Database, session_id: str, answers: Sequence[Answer]) -> int:
    """Answers whose student was claimed by someone else too, or is neither held nor completed by its assistant."""
    stored = {document["_id"]: document for document in database[STUDENTS].find(
        {"call_session_id": session_id, "history.0": {"$exists": True}},
        {"assigned_to": 1, "completed_by": 1, "filter_status": 1, "history.event": 1, "history.assistant_id": 1})}
    return sum(1 for student, assistant in answers if not _held_or_completed_by(stored.get(student), assistant))


def _held_or_completed_by(document: dict[str, Any] | None, assistant: str) -> bool:
    if document is None:
        return False
    claimants = [entry.get("assistant_id") for entry in document.get("history") or []
                 if entry.get("event") == "claimed"]
    pending = document.get("filter_status") == PENDING
    holder = document.get("assigned_to") if pending else document.get("completed_by")
    return claimants == [assistant] and holder == assistant
