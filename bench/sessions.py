"""Many sessions at once, and huge sessions: does "Get Next" stay as fast?

Part A, ``many_sessions_part``: 200 open sessions with 5 assistants each
against one session with the same 1,000 assistants. A press is what an
assistant does all day: "Get Next" (the task's path: the worker's per-process
open-session cache, then ``AssignmentStore.assign_next``), then the
completion. Across many sessions a worker process meets a session it has not
seen within the cache's lifetime on almost every press, so a per-session cost
(reading the session) shows here, while the single session hides it. The
session reads, the deleted index keys claims stepped over and the CPU per
claim are reported next to every rate.

Part B, ``huge_sessions_part``:

1. a 1,000,000-row CSV roster imported exactly as ``python -m producers
   import`` does it (the command itself, sending chunks to a real worker on
   the ``batch`` queue), reported as students/s;
2. claims from that session against fresh 1,000-student sessions (one per
   turn), taking turns A-B-B-A as in ``bench.run.size_part``;
3. a fresh 100,000-student session drained completely (every 25th claim
   released back to the pool and claimed again later), with claims/s per
   tenth of the drain, so a slowdown as the session empties is visible, and
   the claim index's own counters to explain it.

Both parts use the bench's desks (``DeskPool``) and their own databases,
which they drop when done; every process they start is stopped on errors and
Ctrl-C too.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple, Sequence

from pymongo import MongoClient
from pymongo.database import Database
from pymongo.errors import OperationFailure

from bench import integrity
from bench.cpu import CpuMeter, CpuUse, merge_uses, with_descendants
from bench.data import seed_session, settle
from bench.engine import OURS, ClaimResult, measure_claims, merge_claims
from bench.integrity import IntegrityReport
from bench.pool import BenchError, DeskPool
from bench.servers import BenchServers, WorkerOptions
from bench.stats import latency_summary, median, ratio
from bench.targets import Target
from config import Settings
from devstack.servers import PROJECT_ROOT, project_env
from workers.app import BATCH_QUEUE
from workers.exceptions import Rejected
from workers.models import PENDING, Assignment, CallSession
from workers.session_cache import OpenSessionCache
from workers.store import CLAIM_INDEX, STUDENTS, AssignmentStore, CompletionPlan, ensure_indexes
from workers.store.documents import CLAIM_ORDER, claim_filter, claim_lanes

MANY_DB = "bench_many_sessions"
HUGE_DB = "bench_huge"
MANY = "many"
SINGLE = "single"
PROBE = "many-no-session-read"
SINGLE_SESSION = "single-session"
HUGE_SESSION = "huge-session"
DRAIN_SESSION = "drain-session"
OUTCOME = "reached"
COMPLETED = "completed"
RELEASED = "released"
SKIPPED_STAT = "Total number of entries skipped by cursor next calls"
ROSTER_FIELDS = ("student_id", "name", "phone", "email", "cohort")
SLICE_CLAIMS = 4_000
PROGRESS_SECONDS = 15.0
Say = Callable[[str], None]


@dataclass(frozen=True)
class SessionsConfig:
    """Sizes, rounds and durations of both parts (``quick`` shrinks them for a smoke run).

    ``clients``: desks that press or claim at once. Part A: ``many_sessions``
    sessions of ``assistants_per_session`` assistants and
    ``students_per_many_session`` students each, against one session with as
    many of both, over ``many_rounds`` rounds; ``session_cache_seconds``
    overrides the workers' open-session cache lifetime (default: what a
    worker reads, ``CALLQUEUE_SESSION_CACHE_SECONDS`` or its default);
    ``many_probe`` adds the kind without a session read per press. Part B:
    an ``import_students``-row roster sent in chunks of ``import_chunk_rows``
    (the command's default) to a batch worker with
    ``import_worker_concurrency`` processes (the devstack's);
    ``size_rounds`` rounds of ``size_turn_claims`` claims per turn against
    ``size_small``-student sessions; a drain of ``drain_students`` with every
    ``drain_release_every``-th claim of a desk released, reported in
    ``drain_parts`` parts.
    """

    clients: int = 8
    many_sessions: int = 200
    assistants_per_session: int = 5
    students_per_many_session: int = 50
    many_rounds: int = 7
    session_cache_seconds: float | None = None
    many_probe: bool = False
    import_students: int = 1_000_000
    import_chunk_rows: int = 500
    import_worker_concurrency: int = 1
    import_timeout_seconds: float = 1_800.0
    size_small: int = 1_000
    size_turn_claims: int = 800
    size_rounds: int = 11
    drain_students: int = 100_000
    drain_release_every: int = 25
    drain_assistants_per_desk: int = 5
    drain_parts: int = 10

    @classmethod
    def quick(cls, **overrides: Any) -> "SessionsConfig":
        """A smoke run: a 100,000-row import, a 20,000-student drain, fewer rounds."""
        values: dict[str, Any] = dict(many_rounds=3, import_students=100_000, size_rounds=3,
                                      drain_students=20_000)
        values.update(overrides)
        return cls(**values)

    @property
    def many_assistants(self) -> int:
        """Assistants in all the many sessions together, and in the single session."""
        return self.many_sessions * self.assistants_per_session

    def cache_seconds(self) -> float:
        """The open-session cache lifetime a worker would use (``CALLQUEUE_SESSION_CACHE_SECONDS``)."""
        if self.session_cache_seconds is not None:
            return self.session_cache_seconds
        own = {key: value for key, value in os.environ.items() if key.startswith("CALLQUEUE_")}
        return Settings.from_env(own).session_cache_seconds

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "session_cache_seconds": self.cache_seconds()}


# -- presses: "Get Next" as the task runs it, then the end of the hold -------

class Press(NamedTuple):
    """One claim and how its hold ended (completed, released, or ``refused:<code>``)."""

    student_id: str
    assistant_id: str
    token: int
    ended: str
    claimed_at: float
    latency_ms: float


@dataclass
class PressRun:
    """What one desk did in one measurement."""

    presses: list[Press] = field(default_factory=list)
    exhausted: bool = False
    finished: float = 0.0


@dataclass(frozen=True)
class PressJob:
    """One desk's share: press for its assistants in turn, ``max_presses`` times or until nobody is left.

    A press runs what ``callqueue.assign_next_student`` runs against MongoDB:
    the open session from a per-process ``OpenSessionCache`` (a fresh one
    per measurement: the desk stands for a worker process), ``assign_next``
    with a fresh request id, and on "nobody left" the fresh session read the
    task makes. The hold then ends as ``callqueue.complete_student`` (or,
    every ``release_every``-th claim of the desk, ``release_student``) ends
    it. With ``cache_seconds`` None the sessions are read once before the
    go and never per press: the probe of a claim path without that read.
    """

    mongo_url: str
    database: str
    assistants: tuple[tuple[str, str], ...]
    prefix: str
    max_presses: int | None
    cache_seconds: float | None
    release_every: int = 0
    claims_before: int = 0

    def prepare(self, cache: dict[str, Any]) -> Callable[[float], PressRun]:
        """Connect (once per desk), set up the session lookup, and return the timed loop."""
        client = cache.get(self.mongo_url)
        if client is None:
            client = cache[self.mongo_url] = MongoClient(self.mongo_url, tz_aware=True, appname="bench")
        database = client[self.database]
        database.command("ping")
        store = AssignmentStore(database)
        sessions: OpenSessionCache | SessionsReadOnce = (
            OpenSessionCache(self.cache_seconds) if self.cache_seconds is not None
            else SessionsReadOnce(store, {session for session, _assistant in self.assistants}))
        return lambda _go_time: self._loop(store, sessions)

    def _loop(self, store: AssignmentStore, sessions: "OpenSessionCache | SessionsReadOnce") -> PressRun:
        """Press until the budget is spent or a claim finds nobody; every claim timed and recorded."""
        run = PressRun()
        limit = math.inf if self.max_presses is None else self.max_presses
        while len(run.presses) < limit:
            session_id, assistant = self.assistants[len(run.presses) % len(self.assistants)]
            request = f"{self.prefix}-{len(run.presses)}"
            began = time.perf_counter()
            assignment = store.assign_next(sessions.open_session(store, session_id), assistant, request)
            latency_ms = (time.perf_counter() - began) * 1000
            claimed_at = time.monotonic()
            if assignment is None:
                store.open_session(session_id)
                run.exhausted = True
                break
            if assignment.already_held:
                raise AssertionError(f"{assistant} already held {assignment.student_id}")
            ended = _end_hold(store, assignment, request, self._releases(len(run.presses)))
            run.presses.append(Press(assignment.student_id, assistant, assignment.assignment_token, ended,
                                     claimed_at, latency_ms))
        run.finished = time.monotonic()
        return run

    def _releases(self, claims_here: int) -> bool:
        """True for the desk's every ``release_every``-th claim, counted across measurements."""
        return self.release_every > 0 and (self.claims_before + claims_here + 1) % self.release_every == 0


class SessionsReadOnce:
    """The probe's session lookup: every session read once up front, none per press."""

    def __init__(self, store: AssignmentStore, session_ids: set[str]) -> None:
        self._sessions = {session_id: store.open_session(session_id) for session_id in session_ids}

    def open_session(self, _store: AssignmentStore, session_id: str) -> CallSession:
        return self._sessions[session_id]


def _end_hold(store: AssignmentStore, assignment: Assignment, request: str, release: bool) -> str:
    """Complete (or release) the student just claimed; a refusal is recorded, never hidden."""
    hold = (assignment.call_session_id, assignment.student_id, assignment.assigned_to,
            assignment.assignment_token)
    try:
        if release:
            store.release(*hold, f"{request}:release")
            return RELEASED
        store.complete(*hold, CompletionPlan(OUTCOME), f"{request}:complete")
        return COMPLETED
    except Rejected as exc:
        return f"refused:{exc.code}"


@dataclass(frozen=True)
class PressResult:
    """Claims per second of one measurement, with what MongoDB did for them."""

    label: str
    presses: list[Press]
    seconds: float
    exhausted: bool
    session_reads: int
    skipped_entries: int
    cpu: CpuUse | None = None

    @property
    def claims(self) -> int:
        return len(self.presses)

    @property
    def claims_per_second(self) -> float:
        return ratio(self.claims, self.seconds)

    @property
    def releases(self) -> int:
        return sum(1 for press in self.presses if press.ended == RELEASED)

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "claims": self.claims, "releases": self.releases,
                "seconds": _number(self.seconds, 3), "claims_per_second": _number(self.claims_per_second, 1),
                "session_reads_per_claim": _number(ratio(self.session_reads, self.claims), 3),
                "skipped_index_entries_per_claim": _number(ratio(self.skipped_entries, self.claims), 1),
                "claim_latency": latency_summary([press.latency_ms for press in self.presses]),
                "cpu": None if self.cpu is None else self.cpu.to_json()}


def measure_presses(pool: DeskPool, jobs: list[PressJob], label: str, database: Database,
                    meter: CpuMeter | None = None) -> PressResult:
    """Run one press job per desk, all started together; count MongoDB's session reads and skipped keys.

    The counts start at the go, after the desks prepared.
    """
    before: list[tuple[int, int]] = []

    def on_go() -> None:
        before.append(_server_counts(database))
        if meter is not None:
            meter.start()

    measurement = pool.run(jobs, on_go=on_go)
    runs: list[PressRun] = measurement.results
    presses = [press for run in runs for press in run.presses]
    cpu = meter.stop(len(presses)) if meter else None
    after = _server_counts(database)
    return PressResult(label, presses, max(run.finished for run in runs) - measurement.started,
                       any(run.exhausted for run in runs), after[0] - before[0][0], after[1] - before[0][1], cpu)


def merge_presses(label: str, parts: Sequence[PressResult]) -> PressResult:
    """Several measurements as one (claims and seconds summed)."""
    uses = [part.cpu for part in parts if part.cpu is not None]
    return PressResult(
        label, [press for part in parts for press in part.presses], sum(part.seconds for part in parts),
        any(part.exhausted for part in parts), sum(part.session_reads for part in parts),
        sum(part.skipped_entries for part in parts),
        merge_uses(uses, [part.claims for part in parts if part.cpu is not None]) if uses else None,
    )


def cpu_per_claim(result: PressResult | ClaimResult) -> float:
    """CPU milliseconds per claim (with what the press did after it), mongod and desks together.

    On a busy 2-core machine throughput follows everyone's load; this cost
    barely does, so it is reported next to every rate.
    """
    return math.nan if result.cpu is None else sum(result.cpu.per_operation_ms.values())


def _split(total: int, parts: int) -> list[int]:
    """``total`` spread as evenly as possible over ``parts``."""
    return [total // parts + (1 if index < total % parts else 0) for index in range(parts)]


# -- what MongoDB did: session reads, deleted keys stepped over, the claim's plan --

def _server_counts(database: Database) -> tuple[int, int]:
    """(find commands served, entries the claim index's cursors skipped) so far.

    During a press measurement the only finds are the session reads of the
    open-session cache (claims and completions are findAndModify), and the
    only cursors on ``claim_order`` are claims: the skipped entries are the
    deleted keys (claimed students) that claims stepped over.
    """
    queries = database.client.admin.command("serverStatus")["opcounters"]["query"]
    return int(queries), claim_index_cursor(database).get(SKIPPED_STAT, 0)


def claim_index_cursor(database: Database) -> dict[str, int]:
    """WiredTiger's cursor statistics of the ``claim_order`` index (empty before it exists)."""
    try:
        details = database.command("collStats", STUDENTS, indexDetails=True).get("indexDetails", {})
    except OperationFailure:
        return {}
    return {key: int(value) for key, value in details.get(CLAIM_INDEX, {}).get("cursor", {}).items()}


def explain_claim(database: Database, session_id: str) -> dict[str, Any]:
    """The claim's index walk, explained: its filter, sort and hint, read only (nothing is claimed).

    ``keysExamined`` counts live keys only; deleted keys the walk stepped
    over show in the time and in ``claim_index_cursor``'s skipped entries.
    """
    query = claim_filter(session_id, claim_lanes("bench-explain", (), personal=False), "bench-explain")
    cursor = database[STUDENTS].find(query, {"_id": 1}, sort=CLAIM_ORDER, hint=CLAIM_INDEX, limit=1)
    before = claim_index_cursor(database).get(SKIPPED_STAT, 0)
    stats = cursor.explain()["executionStats"]
    return {"keys_examined": stats["totalKeysExamined"], "docs_examined": stats["totalDocsExamined"],
            "milliseconds": stats["executionTimeMillis"],
            "skipped_entries": claim_index_cursor(database).get(SKIPPED_STAT, 0) - before}


def _mongod_meter(mongo: MongoClient, pool: DeskPool) -> CpuMeter | None:
    """CPU of mongod and of the desks, when mongod runs on this machine (its PID is in ``/proc``)."""
    pid = int(mongo.admin.command("serverStatus")["pid"])
    try:
        local = Path(f"/proc/{pid}/comm").read_text().strip() == "mongod"
    except OSError:
        local = False
    return CpuMeter({"mongod": lambda: [pid], "clients": pool.pids}) if local else None


# -- integrity of presses: held by one assistant at a time, completed exactly once --

@dataclass(frozen=True)
class PressIntegrity(IntegrityReport):
    """``IntegrityReport`` for claims whose holds end: the same counts, read for holds that end.

    ``students_in_two_answers``: one hold (student and token) told to two
    presses; ``students_claimed_twice``: a student claimed while held, or a
    hold ended by someone who did not hold it; ``holder_mismatches``: an
    answer whose hold MongoDB recorded for another assistant, or whose
    completion or release was refused; ``claimed_without_answer``: a claim
    in MongoDB that no press received. ``not_completed_once`` counts the
    students that did not end completed exactly once (all of a drained
    session; the claimed ones otherwise). ``bench.integrity.combine`` keeps
    only the base counts: check each report's ``ok``.
    """

    not_completed_once: int = 0

    @property
    def ok(self) -> bool:
        """Nobody handed to two assistants, every claim answered, every student completed exactly once."""
        return super().ok and self.not_completed_once == 0

    def line(self) -> str:
        """The base line, with the students not completed exactly once."""
        return f"{super().line()}, {self.not_completed_once} not completed exactly once"


def check_presses(part: str, database: Database, session_ids: Sequence[str], presses: Sequence[Press],
                  every_student: bool = False) -> PressIntegrity:
    """Compare the presses with the students' histories in MongoDB."""
    query: dict[str, Any] = {"call_session_id": {"$in": list(session_ids)}}
    if not every_student:
        query["history.0"] = {"$exists": True}
    stored = list(database[STUDENTS].find(query, {"filter_status": 1, "history.event": 1,
                                                  "history.assistant_id": 1, "history.token": 1}))
    told = Counter((press.student_id, press.token) for press in presses)
    recorded = {(document["_id"], entry.get("token")): entry.get("assistant_id") for document in stored
                for entry in document.get("history") or [] if entry.get("event") == "claimed"}
    return PressIntegrity(
        part=part,
        answers=len(presses),
        students_in_two_answers=len({student for (student, _token), count in told.items() if count > 1}),
        students_claimed_twice=sum(1 for document in stored if not _holds_in_turn(document.get("history") or [])),
        holder_mismatches=sum(1 for press in presses if press.ended.startswith("refused")
                              or recorded.get((press.student_id, press.token)) != press.assistant_id),
        claimed_without_answer=sum(1 for key in recorded if key not in told),
        not_completed_once=sum(1 for document in stored if not _completed_once(document)),
    )


def _holds_in_turn(history: list[dict[str, Any]]) -> bool:
    """True when every claim found the student free and every end was made by its holder."""
    holder: tuple[Any, Any] | None = None
    for entry in history:
        event, hold = entry.get("event"), (entry.get("assistant_id"), entry.get("token"))
        if event == "claimed":
            if holder is not None:
                return False
            holder = hold
        elif event in (COMPLETED, RELEASED):
            if holder != hold:
                return False
            holder = None
    return True


def _completed_once(document: dict[str, Any]) -> bool:
    """True when the student ended with the press outcome and one completion in its history."""
    events = [entry.get("event") for entry in document.get("history") or []]
    return document.get("filter_status") == OUTCOME and events.count(COMPLETED) == 1


def combine_presses(part: str, reports: Sequence[PressIntegrity]) -> PressIntegrity:
    """Several press checks as one."""
    return PressIntegrity(
        part=part, answers=sum(r.answers for r in reports),
        students_in_two_answers=sum(r.students_in_two_answers for r in reports),
        students_claimed_twice=sum(r.students_claimed_twice for r in reports),
        holder_mismatches=sum(r.holder_mismatches for r in reports),
        claimed_without_answer=sum(r.claimed_without_answer for r in reports),
        not_completed_once=sum(r.not_completed_once for r in reports),
    )


def _number(value: float, digits: int) -> float | None:
    """``value`` rounded for JSON, or None when it is infinite or undefined (JSON has no such numbers)."""
    return round(value, digits) if math.isfinite(value) else None


def _finite(lines: list[tuple[str, float]]) -> list[tuple[str, float]]:
    """The observations that could be measured (no CPU figures when mongod is not on this machine)."""
    return [(name, value) for name, value in lines if math.isfinite(value)]


@contextlib.contextmanager
def _scratch_database(mongo: MongoClient, name: str) -> Iterator[Database]:
    """An empty database for the block, dropped afterwards (also on errors and Ctrl-C)."""
    mongo.drop_database(name)
    try:
        yield mongo[name]
    finally:
        mongo.drop_database(name)


# -- part A: many sessions at once ---------------------------------------------

@dataclass(frozen=True)
class PressKind:
    """Who presses where: each assistant's (session, assistant), and the open-session cache lifetime."""

    name: str
    layout: tuple[tuple[str, str], ...]
    cache_seconds: float | None

    @property
    def sessions(self) -> list[str]:
        return sorted({session for session, _assistant in self.layout})


@dataclass
class ManySessionsResults:
    """Per round, each kind's measurement (many sessions, one session, the optional probe), and their checks."""

    config: SessionsConfig
    cache_seconds: float
    rounds: list[dict[str, PressResult]] = field(default_factory=list)
    checks: dict[str, list[PressIntegrity]] = field(default_factory=dict)
    seconds: float = 0.0

    def label(self, kind: str) -> str:
        """How a kind is named in reports and on the chart."""
        config = self.config
        return {MANY: f"{config.many_sessions} sessions x {config.assistants_per_session} assistants",
                SINGLE: f"1 session x {config.many_assistants:,} assistants",
                PROBE: f"{config.many_sessions} sessions, no session read (probe)"}[kind]

    def ratios(self, kind: str = MANY) -> list[float]:
        """``kind``'s claims/s over the single session's, round by round."""
        return [ratio(turns[kind].claims_per_second, turns[SINGLE].claims_per_second) for turns in self.rounds]

    def kinds(self) -> list[str]:
        """The kinds measured, in the order of the first round."""
        return list(self.rounds[0]) if self.rounds else []

    def median_rate(self, kind: str) -> float:
        """``kind``'s median claims/s over the rounds."""
        return median([turns[kind].claims_per_second for turns in self.rounds])

    def targets(self) -> list[Target]:
        """Many sessions at >= 0.9x the single session's claims/s (median of per-round ratios)."""
        config = self.config
        return [Target(f"{config.many_sessions} sessions x {config.assistants_per_session} assistants vs "
                       f"1 session x {config.many_assistants:,} assistants, claims/s (median of per-round ratios)",
                       median(self.ratios()), 0.9)]

    def cpu_ratios(self, kind: str = MANY) -> list[float]:
        """``kind``'s CPU per claim over the single session's, round by round."""
        return [ratio(cpu_per_claim(turns[kind]), cpu_per_claim(turns[SINGLE])) for turns in self.rounds]

    def observations(self) -> list[tuple[str, float]]:
        """Ratios with no target: CPU per claim, and the probe without a session read per press."""
        sessions = self.config.many_sessions
        lines = [(f"CPU per claim, {sessions} sessions / 1 session (median of per-round ratios)",
                  median(self.cpu_ratios()))]
        if PROBE in self.kinds():
            lines += [(f"{sessions} sessions without a session read per press vs 1 session, claims/s "
                       f"(median of per-round ratios)", median(self.ratios(PROBE))),
                      (f"CPU per claim, {sessions} sessions without a session read / 1 session "
                       f"(median of per-round ratios)", median(self.cpu_ratios(PROBE)))]
        return _finite(lines)

    def integrity(self) -> list[IntegrityReport]:
        """One press check per kind, over all its rounds."""
        return [combine_presses(f"{self.label(kind)} ({len(reports)} rounds)", reports)
                for kind, reports in self.checks.items()]

    def to_json(self) -> dict[str, Any]:
        """Every round of every kind, the ratios, targets, observations and checks (JSON values only)."""
        return {"config": self.config.to_json(), "session_cache_seconds": self.cache_seconds,
                "rounds": [{kind: result.to_json() for kind, result in turns.items()} for turns in self.rounds],
                "median_claims_per_second": {kind: _number(self.median_rate(kind), 1) for kind in self.kinds()},
                "round_ratios": {kind: [_number(value, 3) for value in self.ratios(kind)]
                                 for kind in self.kinds() if kind != SINGLE},
                "targets": [goal.to_json() for goal in self.targets()],
                "observations": {name: _number(value, 3) for name, value in self.observations()},
                "integrity": [report.to_json() for report in self.integrity()],
                "seconds": round(self.seconds, 1)}

    def draw(self, axes: Any) -> None:
        """Median claims/s of each kind as bars, every round's rate as dots."""
        kinds = [kind for kind in (MANY, SINGLE, PROBE) if kind in self.kinds()]
        bars = axes.bar([self.label(kind).replace(", ", ",\n").replace(" x ", "\nx ") for kind in kinds],
                        [self.median_rate(kind) for kind in kinds],
                        color=["tab:orange", "tab:blue", "tab:gray"][:len(kinds)])
        axes.bar_label(bars, fmt="%.0f")
        for position, kind in enumerate(kinds):
            rates = [turns[kind].claims_per_second for turns in self.rounds]
            axes.plot([position] * len(rates), rates, "k.", alpha=0.6)
        axes.set_ylabel("claims per second (claim + complete; median of rounds)")
        axes.set_title(f"Many sessions vs one: {median(self.ratios()):.2f}x (median per-round ratio)")


def many_sessions_part(pool: DeskPool, mongo_url: str, mongo: MongoClient, config: SessionsConfig,
                       say: Say) -> ManySessionsResults:
    """Claims/s pressing across 200 sessions of 5 assistants against one session of 1,000 assistants.

    Every round reseeds all sessions (so none carries earlier claims into it)
    and lets the kinds take turns A-B-B-A; the target uses the median of the
    per-round ratios, which cancels the drift of the machine's other load.
    In a turn every assistant presses once, so each desk (a worker process,
    with its own fresh open-session cache) meets each of its many sessions
    once: as in production, where a process sees a session's next press
    long after its cache entry expired (5 assistants, calls of minutes),
    while one busy session stays cached. With ``many_probe`` a third kind
    presses across its own many sessions without any session read
    (A-B-C-C-B-A), to show what that read costs.
    """
    began = time.monotonic()
    results = ManySessionsResults(config, config.cache_seconds())
    desks = min(config.clients, pool.size)
    kinds = _press_kinds(config, results.cache_seconds)
    say(f"\n[sessions A] {config.many_sessions} sessions x {config.assistants_per_session} assistants vs 1 "
        f"session x {config.many_assistants:,} assistants; {desks} desks, a press = Get Next (open-session "
        f"cache {results.cache_seconds:g}s + assign_next) + complete; {config.many_rounds} rounds A-B-B-A, "
        f"one press per assistant per turn")
    meter = _mongod_meter(mongo, pool)
    with _scratch_database(mongo, MANY_DB) as database:
        for round_number in range(config.many_rounds):
            _seed_many(database, config, kinds)
            turns = _many_round(pool, mongo_url, database, kinds, desks, round_number, meter)
            results.rounds.append(turns)
            for kind in kinds:
                results.checks.setdefault(kind.name, []).append(
                    check_presses(kind.name, database, kind.sessions, turns[kind.name].presses))
            say(_many_round_line(round_number, turns))
    results.seconds = time.monotonic() - began
    _say_ratios(results, say)
    return results


def _say_ratios(results: ManySessionsResults, say: Say) -> None:
    """Each kind's per-round ratios to the single session, and their median."""
    for kind in results.kinds():
        if kind != SINGLE:
            say(f"  median per-round ratio {kind} / {SINGLE}: {median(results.ratios(kind)):.2f} "
                f"({', '.join(f'{value:.2f}' for value in results.ratios(kind))})")


def _press_kinds(config: SessionsConfig, cache_seconds: float) -> list[PressKind]:
    """Many sessions, one session, and the probe if asked for; consecutive assistants share a session.

    Desk ``d`` presses for assistants ``d, d + desks, ...``, which belong to
    distinct many-sessions as long as there are at least as many desks as
    assistants per session (8 and 5).
    """
    per = config.assistants_per_session
    many = tuple((f"many-{index // per}", f"assistant-{index}") for index in range(config.many_assistants))
    single = tuple((SINGLE_SESSION, f"assistant-{index}") for index in range(config.many_assistants))
    kinds = [PressKind(MANY, many, cache_seconds), PressKind(SINGLE, single, cache_seconds)]
    if config.many_probe:
        probe = tuple((f"probe-{index // per}", f"assistant-{index}") for index in range(config.many_assistants))
        kinds.append(PressKind(PROBE, probe, None))
    return kinds


def _seed_many(database: Database, config: SessionsConfig, kinds: list[PressKind]) -> None:
    """Empty the database; every kind's sessions, holding the same number of students in all."""
    database.client.drop_database(database.name)
    total = config.many_sessions * config.students_per_many_session
    for kind in kinds:
        for session in kind.sessions:
            seed_session(database, session, total // len(kind.sessions))
    ensure_indexes(database)
    settle(database)


def _many_round(pool: DeskPool, mongo_url: str, database: Database, kinds: list[PressKind], desks: int,
                round_number: int, meter: CpuMeter | None) -> dict[str, PressResult]:
    """A-B-B-A turns (B-A-A-B in odd rounds); each desk presses once for each of its assistants."""
    order = kinds if round_number % 2 == 0 else kinds[::-1]
    halves: dict[str, list[PressResult]] = {kind.name: [] for kind in order}
    for turn, kind in enumerate(order + order[::-1]):
        jobs = [PressJob(mongo_url, database.name, kind.layout[desk::desks], f"r{round_number}-t{turn}-d{desk}",
                         len(kind.layout[desk::desks]), kind.cache_seconds) for desk in range(desks)]
        halves[kind.name].append(measure_presses(pool, jobs, f"{kind.name}-r{round_number}-t{turn}", database,
                                                 meter))
    return {kind.name: merge_presses(f"{kind.name}-r{round_number}", halves[kind.name]) for kind in kinds}


def _many_round_line(round_number: int, turns: dict[str, PressResult]) -> str:
    """One round's rates, session reads, skipped keys and CPU per claim of each kind, and its ratio."""
    parts = []
    for kind, result in turns.items():
        cpu = f", {cpu_per_claim(result):.2f} ms CPU" if result.cpu else ""
        parts.append(f"{kind} {result.claims_per_second:6.1f}/s ({ratio(result.session_reads, result.claims):.2f} "
                     f"session reads, {ratio(result.skipped_entries, result.claims):.0f} skipped keys{cpu} per claim)")
    round_ratio = ratio(turns[MANY].claims_per_second, turns[SINGLE].claims_per_second)
    return f"  round {round_number}: {'; '.join(parts)}; ratio {round_ratio:.2f}"


# -- part B.1: a million-row roster through the command line --------------------

@dataclass(frozen=True)
class ImportResult:
    """One CSV roster imported by ``python -m producers import`` through a real batch worker."""

    rows: int
    chunk_rows: int
    worker_concurrency: int
    seconds: float
    received: int
    inserted: int
    duplicates: int
    stored: int
    file_bytes: int
    write_seconds: float
    cli_cpu_seconds: float
    cpu: CpuUse | None

    @property
    def students_per_second(self) -> float:
        return ratio(self.inserted, self.seconds)

    @property
    def ok(self) -> bool:
        return self.received == self.rows == self.inserted == self.stored and self.duplicates == 0

    def to_json(self) -> dict[str, Any]:
        return {**{key: value for key, value in asdict(self).items() if key != "cpu"},
                "seconds": round(self.seconds, 2), "write_seconds": round(self.write_seconds, 2),
                "cli_cpu_seconds": round(self.cli_cpu_seconds, 2),
                "students_per_second": _number(self.students_per_second, 1), "ok": self.ok,
                "cpu_ms_per_1000_students": None if self.cpu is None else
                {name: round(value * 1000, 1) for name, value in self.cpu.per_operation_ms.items()},
                "machine_busy_share": None if self.cpu is None else round(self.cpu.machine_busy_share, 3)}


def import_roster(servers: BenchServers, mongo: MongoClient, config: SessionsConfig, say: Say) -> ImportResult:
    """Write a ``config.import_students``-row CSV, import it with the command line, delete it."""
    env = servers.environ({"MONGO_DB": HUGE_DB})
    with tempfile.TemporaryDirectory(prefix="callqueue-bench-roster-") as folder:
        path = Path(folder) / "students.csv"
        began = time.monotonic()
        write_roster(path, config.import_students)
        written = time.monotonic() - began
        say(f"  roster {path.name}: {config.import_students:,} rows, {path.stat().st_size / 1e6:.0f} MB, "
            f"written in {written:.1f}s (not timed)")
        options = WorkerOptions(concurrency=config.import_worker_concurrency)
        with servers.workers(options, BATCH_QUEUE, {"MONGO_DB": HUGE_DB}) as worker:
            meter = CpuMeter({"batch worker": lambda: with_descendants([worker.process.pid]),
                              "mongod": lambda: [servers.mongo.process.pid],
                              "redis": lambda: [servers.redis.process.pid]})
            answer, seconds, cli_cpu, cpu = _timed_cli_import(path, env, mongo, config, meter, say)
        size = path.stat().st_size
    stored = mongo[HUGE_DB][STUDENTS].count_documents({"call_session_id": HUGE_SESSION})
    return ImportResult(config.import_students, config.import_chunk_rows, config.import_worker_concurrency,
                        seconds, int(answer["received"]), int(answer["inserted"]), int(answer["duplicates"]),
                        stored, size, written, cli_cpu, cpu)


def write_roster(path: Path, rows: int) -> None:
    """A CSV roster as the command line reads it: a header line, one student per row."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(ROSTER_FIELDS)
        writer.writerows((f"s{index:07d}", f"Student {index:07d}", f"+1555{index:07d}",
                          f"student{index:07d}@example.edu", f"cohort-{index % 40:02d}") for index in range(rows))


def _timed_cli_import(path: Path, env: dict[str, str], mongo: MongoClient, config: SessionsConfig,
                      meter: CpuMeter, say: Say) -> tuple[dict[str, Any], float, float, CpuUse]:
    """Run ``python -m producers import`` on the file; its JSON answer, wall seconds and CPU."""
    argv = [sys.executable, "-m", "producers", "import", str(path), "--session", HUGE_SESSION,
            "--name", f"{config.import_students:,} students", "--chunk-size", str(config.import_chunk_rows)]
    output, errors = path.with_suffix(".out"), path.with_suffix(".err")
    children_before = _children_cpu_seconds()
    meter.start()
    began = time.monotonic()
    with output.open("wb") as out, errors.open("wb") as err, _cli(argv, env, out, err) as process:
        _wait_reporting(process, mongo, config, began, say)
    seconds = time.monotonic() - began
    cpu = meter.stop(config.import_students)
    if process.returncode != 0:
        raise BenchError(f"import command exited {process.returncode}: {errors.read_text()[-2000:]}")
    return json.loads(output.read_text()), seconds, _children_cpu_seconds() - children_before, cpu


@contextlib.contextmanager
def _cli(argv: list[str], env: dict[str, str], out: Any, err: Any) -> Iterator[subprocess.Popen]:
    """The command as a child in its own session; killed by PID if the block is left while it runs."""
    process = subprocess.Popen(argv, cwd=PROJECT_ROOT, env=project_env(env), stdin=subprocess.DEVNULL,
                               stdout=out, stderr=err, start_new_session=True)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def _wait_reporting(process: subprocess.Popen, mongo: MongoClient, config: SessionsConfig, began: float,
                    say: Say) -> None:
    """Wait for the command, printing how many students are stored every ``PROGRESS_SECONDS``."""
    deadline = began + config.import_timeout_seconds
    while True:
        try:
            process.wait(timeout=PROGRESS_SECONDS)
            return
        except subprocess.TimeoutExpired:
            if time.monotonic() > deadline:
                raise BenchError(f"import command still running after {config.import_timeout_seconds:.0f}s")
        stored = mongo[HUGE_DB][STUDENTS].estimated_document_count()
        say(f"    {time.monotonic() - began:5.0f}s: {stored:,} students stored")


def _children_cpu_seconds() -> float:
    """User + system CPU of this process's finished children (the import command, once it is reaped)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# -- part B.2: the huge session against fresh small ones -------------------------

@dataclass(frozen=True)
class SizeRound:
    """One round: claims from two fresh small sessions and from the huge one, A-B-B-A."""

    small: ClaimResult
    large: ClaimResult
    small_skipped: int
    large_skipped: int
    large_claimed_before: int

    @property
    def ratio(self) -> float:
        return ratio(self.large.claims_per_second, self.small.claims_per_second)

    def to_json(self) -> dict[str, Any]:
        return {"small": self.small.to_json(), "large": self.large.to_json(), "ratio": _number(self.ratio, 3),
                "small_skipped_entries_per_claim": _number(ratio(self.small_skipped, self.small.claims), 1),
                "large_skipped_entries_per_claim": _number(ratio(self.large_skipped, self.large.claims), 1),
                "large_claimed_before": self.large_claimed_before}


def size_rounds(pool: DeskPool, servers: BenchServers, mongo: MongoClient, config: SessionsConfig,
                say: Say) -> tuple[list[SizeRound], list[IntegrityReport]]:
    """Claims/s from the imported session and from fresh small ones, taking turns A-B-B-A each round.

    Every small turn claims from its own fresh 1,000-student session, which
    allows ``size_turn_claims`` claims per turn (longer windows than half a
    session shared by two turns). The huge session cannot be reseeded, so it
    carries the claims of the turns before (reported as
    ``large_claimed_before``, with the deleted keys each claim stepped over).
    """
    database = mongo[HUGE_DB]
    desks = min(config.clients, pool.size)
    meter = CpuMeter({"mongod": lambda: [servers.mongo.process.pid], "clients": pool.pids})
    rounds: list[SizeRound] = []
    small_checks: list[IntegrityReport] = []
    large_answers: list[tuple[str, str]] = []
    for round_number in range(config.size_rounds):
        smalls = [f"small-{round_number}-{turn}" for turn in range(2)]
        for small in smalls:
            seed_session(database, small, config.size_small)
        settle(database)
        result = _size_round(pool, servers.mongo.url, database, smalls, desks, config, round_number, meter,
                             len(large_answers))
        rounds.append(result)
        large_answers.extend(result.large.answers)
        small_checks.append(integrity.check("", database, smalls, result.small.answers))
        say(_size_line(round_number, result, config))
    checks = [integrity.combine(f"{config.size_small:,}-student sessions ({len(small_checks)} rounds)", small_checks),
              integrity.check(f"{config.import_students:,}-student session", database, [HUGE_SESSION],
                              large_answers)]
    return rounds, checks


def _size_round(pool: DeskPool, mongo_url: str, database: Database, smalls: list[str], desks: int,
                config: SessionsConfig, round_number: int, meter: CpuMeter, claimed_before: int) -> SizeRound:
    """A-B-B-A turns (B-A-A-B in odd rounds); each small turn on its own fresh session."""
    order = ["small", HUGE_SESSION] if round_number % 2 == 0 else [HUGE_SESSION, "small"]
    fresh = iter(smalls)
    halves: dict[str, list[ClaimResult]] = {name: [] for name in order}
    skipped: Counter = Counter()
    for turn, name in enumerate(order + order[::-1]):
        session = next(fresh) if name == "small" else HUGE_SESSION
        before = claim_index_cursor(database).get(SKIPPED_STAT, 0)
        halves[name].append(measure_claims(pool, mongo_url, database.name, session, OURS, desks,
                                           total_claims=config.size_turn_claims,
                                           label=f"huge-r{round_number}-t{turn}", meter=meter))
        skipped[name] += claim_index_cursor(database).get(SKIPPED_STAT, 0) - before
    return SizeRound(merge_claims(halves["small"]), merge_claims(halves[HUGE_SESSION]), skipped["small"],
                     skipped[HUGE_SESSION], claimed_before)


def _size_line(round_number: int, result: SizeRound, config: SessionsConfig) -> str:
    """One round's rates, CPU and skipped keys per claim of both sizes, and its ratio."""
    return (f"  round {round_number}: {config.size_small:,} {result.small.claims_per_second:6.1f} claims/s "
            f"({cpu_per_claim(result.small):.2f} ms CPU), {config.import_students:,} "
            f"{result.large.claims_per_second:6.1f} claims/s ({cpu_per_claim(result.large):.2f} ms CPU, after "
            f"{result.large_claimed_before:,} earlier claims); skipped keys/claim "
            f"{ratio(result.small_skipped, result.small.claims):.0f} vs "
            f"{ratio(result.large_skipped, result.large.claims):.0f}; ratio {result.ratio:.2f}")


# -- part B.3: draining a session completely --------------------------------------

@dataclass(frozen=True)
class DrainTenth:
    """One tenth of the drain (by claims), with the claim's plan explained after it."""

    result: PressResult
    explain_after: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {**self.result.to_json(), "explain_after": self.explain_after}


def drain(pool: DeskPool, servers: BenchServers, mongo: MongoClient, config: SessionsConfig,
          say: Say) -> tuple[list[DrainTenth], dict[str, Any], IntegrityReport]:
    """Drain a fresh session completely, every ``drain_release_every``-th claim released; rates per tenth.

    Each tenth runs as slices of at most ``SLICE_CLAIMS`` claims (the desks
    report back between slices, well within their step timeout); its rate is
    its claims over the slices' measured seconds. Between tenths the claim's
    index walk is explained.
    """
    database = mongo[HUGE_DB]
    seed_session(database, DRAIN_SESSION, config.drain_students)
    ensure_indexes(database)
    settle(database)
    desks = min(config.clients, pool.size)
    tenth_claims = _tenth_claims(config)
    say(f"  {config.drain_students:,} students, {desks} desks x {config.drain_assistants_per_desk} assistants, "
        f"every {config.drain_release_every}th claim released; about {tenth_claims:,} claims per tenth")
    layouts = [tuple((DRAIN_SESSION, f"drain-d{desk}-a{index}") for index in range(config.drain_assistants_per_desk))
               for desk in range(desks)]
    meter = CpuMeter({"mongod": lambda: [servers.mongo.process.pid], "clients": pool.pids})
    start_explain = explain_claim(database, DRAIN_SESSION)
    tenths: list[DrainTenth] = []
    claims_by_desk = [0] * desks
    while len(tenths) < config.drain_parts and _pending(database):
        last = len(tenths) == config.drain_parts - 1
        result = _drain_tenth(pool, servers.mongo.url, database, layouts, claims_by_desk,
                              None if last else tenth_claims, len(tenths), config, meter)
        tenths.append(DrainTenth(result, explain_claim(database, DRAIN_SESSION)))
        say(_tenth_line(len(tenths), tenths[-1]))
    presses = [press for tenth in tenths for press in tenth.result.presses]
    check = check_presses(f"drain of {config.drain_students:,}", database, [DRAIN_SESSION], presses,
                          every_student=True)
    return tenths, start_explain, check


def _tenth_claims(config: SessionsConfig) -> int:
    """Claims in one part of the drain: every student once, plus the releases claimed again."""
    every = config.drain_release_every
    expected = config.drain_students * every / (every - 1) if every > 1 else config.drain_students
    return math.ceil(expected / config.drain_parts)


def _drain_tenth(pool: DeskPool, mongo_url: str, database: Database, layouts: list[tuple[tuple[str, str], ...]],
                 claims_by_desk: list[int], target: int | None, index: int, config: SessionsConfig,
                 meter: CpuMeter) -> PressResult:
    """Slices until ``target`` claims are made (``None``: until nobody is pending any more)."""
    slices: list[PressResult] = []
    done = 0
    while (target is None or done < target) and _pending(database):
        quota = SLICE_CLAIMS if target is None else min(SLICE_CLAIMS, target - done)
        jobs = [PressJob(mongo_url, database.name, layouts[desk], f"drain-t{index}-s{len(slices)}-d{desk}", share,
                         config.cache_seconds(), config.drain_release_every, claims_by_desk[desk])
                for desk, share in enumerate(_split(quota, len(layouts)))]
        part = measure_presses(pool, jobs, f"drain-t{index}-s{len(slices)}", database, meter)
        for desk, run_claims in enumerate(_claims_per_desk(part, layouts)):
            claims_by_desk[desk] += run_claims
        slices.append(part)
        done += part.claims
    return merge_presses(f"drain-tenth-{index + 1}", slices)


def _claims_per_desk(result: PressResult, layouts: list[tuple[tuple[str, str], ...]]) -> list[int]:
    """How many claims each desk made (each desk has its own assistants)."""
    counts = Counter(press.assistant_id for press in result.presses)
    return [sum(counts[assistant] for _session, assistant in layout) for layout in layouts]


def _pending(database: Database) -> int:
    """Students of the drained session still waiting (pending and unassigned)."""
    return database[STUDENTS].count_documents(
        {"call_session_id": DRAIN_SESSION, "filter_status": PENDING, "assigned_to": None}, hint=CLAIM_INDEX)


def _tenth_line(number: int, tenth: DrainTenth) -> str:
    """One tenth's rate, latency, skipped keys and CPU per claim, and the claim explained after it."""
    result, plan = tenth.result, tenth.explain_after
    latency = latency_summary([press.latency_ms for press in result.presses])
    cpu = "" if result.cpu is None else f", {cpu_per_claim(result):.2f} ms CPU/claim"
    return (f"  tenth {number:2d}: {result.claims:6,} claims ({result.releases} released) "
            f"{result.claims_per_second:6.1f} claims/s, claim p50 {latency['p50_ms']:.2f} ms p99 "
            f"{latency['p99_ms']:.2f} ms, {ratio(result.skipped_entries, result.claims):.0f} skipped keys/claim{cpu}; "
            f"then explain: {plan['keys_examined']} keys, {plan['skipped_entries']} skipped, {plan['milliseconds']} ms")


# -- part B: results and the whole part --------------------------------------------

@dataclass
class HugeSessionsResults:
    """The import, the huge-vs-small rounds, the drain's tenths, and their checks."""

    config: SessionsConfig
    imported: ImportResult | None = None
    rounds: list[SizeRound] = field(default_factory=list)
    tenths: list[DrainTenth] = field(default_factory=list)
    drain_start_explain: dict[str, Any] = field(default_factory=dict)
    checks: list[IntegrityReport] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def size_ratio(self) -> float:
        """Median of the per-round ratios, huge session over small sessions."""
        return median([result.ratio for result in self.rounds])

    def drain_ratio(self) -> float:
        """Claims/s of the drain's last tenth over its first (0.0 when nothing was drained)."""
        if not self.tenths:
            return 0.0
        return ratio(self.tenths[-1].result.claims_per_second, self.tenths[0].result.claims_per_second)

    def targets(self) -> list[Target]:
        """The huge session at >= 0.9x the small ones, and the drain's last tenth at >= 0.9x its first."""
        config = self.config
        return [
            Target(f"{config.import_students:,}-student session vs fresh {config.size_small:,}-student session, "
                   f"claims/s (median of per-round ratios)", self.size_ratio(), 0.9),
            Target(f"drain of {config.drain_students:,}: last tenth vs first tenth, claims/s",
                   self.drain_ratio(), 0.9),
        ]

    def observations(self) -> list[tuple[str, float]]:
        """Ratios with no target that explain the targets: CPU per claim of the huge session against the
        small ones, and the drain's CPU per claim and skipped keys, last tenth over first.

        The tenths run one after another, so their throughput follows the
        machine's other load; CPU per claim barely does.
        """
        lines = []
        if self.rounds:
            sizes = [ratio(cpu_per_claim(result.large), cpu_per_claim(result.small)) for result in self.rounds]
            lines.append((f"CPU per claim, {self.config.import_students:,} / {self.config.size_small:,} students "
                          f"(median of per-round ratios)", median(sizes)))
        if len(self.tenths) >= 2:
            first, last = self.tenths[0].result, self.tenths[-1].result
            lines += [("drain: CPU per claim, last tenth / first tenth",
                       ratio(cpu_per_claim(last), cpu_per_claim(first))),
                      ("drain: skipped index keys per claim, last tenth / first tenth",
                       ratio(ratio(last.skipped_entries, last.claims), ratio(first.skipped_entries, first.claims)))]
        return _finite(lines)

    def integrity(self) -> list[IntegrityReport]:
        """The small sessions', the huge session's and the drain's checks."""
        return list(self.checks)

    def to_json(self) -> dict[str, Any]:
        """The import, every round and tenth, targets, observations, checks and timings (JSON values only)."""
        return {"config": self.config.to_json(),
                "import": None if self.imported is None else self.imported.to_json(),
                "size_rounds": [result.to_json() for result in self.rounds],
                "size_round_ratios": [_number(result.ratio, 3) for result in self.rounds],
                "drain_start_explain": self.drain_start_explain,
                "drain_tenths": [tenth.to_json() for tenth in self.tenths],
                "targets": [goal.to_json() for goal in self.targets()],
                "observations": {name: _number(value, 3) for name, value in self.observations()},
                "integrity": [report.to_json() for report in self.integrity()],
                "part_seconds": {name: round(value, 1) for name, value in self.timings.items()}}

    def draw(self, axes: Any) -> None:
        """Claims/s per tenth of the drain as bars; the import rate and the size ratio in the title."""
        rates = [tenth.result.claims_per_second for tenth in self.tenths]
        bars = axes.bar([str(number) for number in range(1, len(rates) + 1)], rates, color="tab:green")
        axes.bar_label(bars, fmt="%.0f", fontsize=8)
        axes.set_xlabel(f"tenth of the drain of {self.config.drain_students:,} students (by claims)")
        axes.set_ylabel("claims per second (claim + complete or release)")
        imported = "" if self.imported is None else f"import {self.imported.students_per_second:,.0f} students/s"
        axes.set_title(f"Huge sessions: {imported}\n{self.config.import_students:,} vs {self.config.size_small:,} "
                       f"students {self.size_ratio():.2f}x; drain, last / first tenth {self.drain_ratio():.2f}x",
                       fontsize=10)


def huge_sessions_part(servers: BenchServers, pool: DeskPool, mongo: MongoClient, config: SessionsConfig,
                       say: Say) -> HugeSessionsResults:
    """Import a huge roster through the command line, claim from it against small sessions, drain a big one."""
    results = HugeSessionsResults(config)
    with _scratch_database(mongo, HUGE_DB) as database:
        say(f"\n[sessions B.1] import {config.import_students:,} students with `python -m producers import` "
            f"(chunks of {config.import_chunk_rows}) through a batch worker x{config.import_worker_concurrency}")
        results.imported = _timed(results, "import", lambda: import_roster(servers, mongo, config, say))
        say(_import_line(results.imported))
        say(f"\n[sessions B.2] claims from the {config.import_students:,}-student session vs a fresh "
            f"{config.size_small:,}-student session each turn: {config.size_turn_claims} claims per turn (A-B-B-A), "
            f"{config.size_rounds} rounds, {min(config.clients, pool.size)} desks")
        results.rounds, checks = _timed(results, "size", lambda: size_rounds(pool, servers, mongo, config, say))
        results.checks.extend(checks)
        say(f"  median per-round ratio: {results.size_ratio():.2f}")
        mongo.drop_database(database.name)
        say(f"\n[sessions B.3] drain a fresh {config.drain_students:,}-student session completely")
        results.tenths, results.drain_start_explain, check = _timed(
            results, "drain", lambda: drain(pool, servers, mongo, config, say))
        results.checks.append(check)
        say(f"  last / first tenth: {results.drain_ratio():.2f}")
    return results


def _timed(results: HugeSessionsResults, name: str, part: Callable[[], Any]) -> Any:
    """Run one step of part B and record how long it took (also when it fails)."""
    began = time.monotonic()
    try:
        return part()
    finally:
        results.timings[name] = time.monotonic() - began


def _import_line(result: ImportResult) -> str:
    """The import's rate, its completeness and CPU per 1,000 students by process."""
    cpu = "" if result.cpu is None else ", ".join(
        f"{name} {value * 1000:.0f}" for name, value in result.cpu.per_operation_ms.items())
    return (f"  imported {result.inserted:,} of {result.rows:,} rows in {result.seconds:.1f}s: "
            f"{result.students_per_second:,.0f} students/s; {result.stored:,} stored, "
            f"{result.duplicates} duplicates [{'OK' if result.ok else 'FAIL'}]; CPU ms per 1,000 students: "
            f"{cpu}, import command {result.cli_cpu_seconds / max(result.rows, 1) * 1e6:.0f}")
