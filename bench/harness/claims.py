"""Claims without Celery: desks racing on MongoDB with the store's own claim, as workers run it.

Each desk has its own ``MongoClient`` and its share of the assistants, and
presses in a loop: ``AssignmentStore.assign_next`` (or the seed-style claim
it replaced), then, in parts whose holds end, the completion (or every
``release_every``-th time a release) as ``complete_student`` runs it. A hold
that never ends blocks its assistant, so such parts claim for a fresh
assistant id every time. A measurement stops after a duration or a number of
claims; a claim that finds nobody stops it too, which is an error unless the
part drains the session (``may_run_out``): the sessions are seeded with room
to spare, so nobody left means the claim is broken.

MongoDB's own counters are read around every measurement: finds served (the
session reads of the open-session cache) and the deleted index keys the
claims' cursors stepped over.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from pymongo import MongoClient
from pymongo.database import Database
from pymongo.errors import ExecutionTimeout, OperationFailure

from bench.harness.cpu import CpuMeter, CpuUse, merge_uses
from bench.harness.data import seed_style_claim
from bench.harness.desks import BenchError, DeskPool
from bench.harness.integrity import COMPLETED, HELD, RELEASED, Answer
from bench.harness.stats import latency_summary, ratio
from workers.exceptions import Rejected
from workers.models import CallSession
from workers.session_cache import OpenSessionCache
from workers.store import CLAIM_INDEX, STUDENTS, AssignmentStore, CompletionPlan
from workers.store.documents import CLAIM_ORDER, claim_filter, claim_lanes

OURS = "ours"
SEED_STYLE = "seed-style"
OUTCOME = "reached"
SKIPPED_STAT = "Total number of entries skipped by cursor next calls"
Seat = tuple[str, str, tuple[str, ...]]  # (session, assistant, skills) of one assistant at a desk


class WindowClosed(Exception):
    """A seed-style claim was abandoned (and changed nothing) because the measuring window ended."""


@dataclass
class DeskRun:
    """What one desk did in one measurement."""

    answers: list[Answer] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    exhausted: bool = False
    finished: float = 0.0


@dataclass(frozen=True)
class ClaimJob:
    """One desk's share: claim for its seats in turn until ``seconds`` or ``max_claims`` are spent.

    ``cache_seconds``: sessions come from a per-process ``OpenSessionCache``
    with that lifetime, as in the task (a fresh one per measurement, the desk
    standing for a worker process); None reads each session once before the go.
    """

    mongo_url: str
    database: str
    seats: tuple[Seat, ...]
    prefix: str
    max_claims: int | None = None
    seconds: float | None = None
    kind: str = OURS
    ends: bool = False
    cache_seconds: float | None = None
    release_every: int = 0
    claims_before: int = 0

    def prepare(self, cache: dict[str, Any]) -> Callable[[float], DeskRun]:
        """Connect (once per desk), read the sessions, and return the timed loop."""
        client = cache.get(self.mongo_url)
        if client is None:
            client = cache[self.mongo_url] = MongoClient(self.mongo_url, tz_aware=True, appname="bench")
        database = client[self.database]
        database.command("ping")
        store = AssignmentStore(database)
        if self.kind == SEED_STYLE:
            claim = _seed_style(database)
        else:
            claim = _ours(store, self.cache_seconds, {session for session, _assistant, _skills in self.seats})
        return lambda go_time: self._loop(store, claim, go_time)

    def _loop(self, store: AssignmentStore, claim: Callable[..., tuple[str, int | None] | None],
              go_time: float) -> DeskRun:
        run = DeskRun()
        deadline = go_time + self.seconds if self.seconds else math.inf
        limit = math.inf if self.max_claims is None else self.max_claims
        while len(run.answers) < limit and time.monotonic() < deadline:
            number = len(run.answers)
            session_id, assistant, skills = self.seats[number % len(self.seats)]
            assistant = assistant if self.ends else f"{assistant}-{number}"
            request = f"{self.prefix}-{number}"
            began = time.perf_counter()
            try:
                claimed = claim(session_id, assistant, request, skills, deadline)
            except WindowClosed:
                break
            run.latencies_ms.append((time.perf_counter() - began) * 1000)
            if claimed is None:
                run.exhausted = True
                break
            student, token = claimed
            ended = self._end_hold(store, (session_id, student, assistant, int(token or 0)), request,
                                   number) if self.ends else HELD
            run.answers.append(Answer(session_id, student, assistant, token, ended))
        run.finished = time.monotonic()
        return run

    def _end_hold(self, store: AssignmentStore, hold: tuple[str, str, str, int], request: str, number: int) -> str:
        """Complete (or every ``release_every``-th claim of the desk, release); a refusal is recorded."""
        try:
            if self.release_every and (self.claims_before + number + 1) % self.release_every == 0:
                store.release(*hold, f"{request}:release")
                return RELEASED
            store.complete(*hold, CompletionPlan(OUTCOME), f"{request}:complete")
            return COMPLETED
        except Rejected as exc:
            return f"refused:{exc.code}"


def _ours(store: AssignmentStore, cache_seconds: float | None, session_ids: set[str]) -> Callable[..., Any]:
    """The project's claim; on "nobody left" with the task's cache, the fresh session read the task makes."""
    cache = OpenSessionCache(cache_seconds) if cache_seconds is not None else None
    once: dict[str, CallSession] = {} if cache else {sid: store.open_session(sid) for sid in session_ids}

    def claim(session_id: str, assistant: str, request: str, skills: tuple[str, ...],
              _deadline: float) -> tuple[str, int] | None:
        session = cache.open_session(store, session_id) if cache else once[session_id]
        assignment = store.assign_next(session, assistant, request, skills=skills)
        if assignment is None:
            if cache:
                store.open_session(session_id)
            return None
        if assignment.already_held:
            raise AssertionError(f"{assistant} already held {assignment.student_id}")
        return assignment.student_id, assignment.assignment_token

    return claim


def _seed_style(database: Database) -> Callable[..., Any]:
    """The seed-style claim, abandoned (``maxTimeMS``, nothing written) when the window closes."""
    def claim(session_id: str, assistant: str, _request: str, _skills: tuple[str, ...],
              deadline: float) -> tuple[str, None] | None:
        max_time_ms = None if deadline == math.inf else int((deadline - time.monotonic()) * 1000)
        if max_time_ms is not None and max_time_ms < 1:
            raise WindowClosed()
        try:
            document = seed_style_claim(database, session_id, assistant, max_time_ms=max_time_ms)
        except ExecutionTimeout as exc:
            raise WindowClosed() from exc
        return None if document is None else (document["_id"], None)

    return claim


@dataclass(frozen=True)
class Claims:
    """Claims per second of one measurement, with what MongoDB did for them and every answer for the audit."""

    label: str
    clients: int
    answers: list[Answer]
    latencies_ms: list[float]
    seconds: float
    exhausted: bool = False
    session_reads: int = 0
    skipped_entries: int = 0
    cpu: CpuUse | None = None

    @property
    def claims(self) -> int:
        return len(self.answers)

    @property
    def claims_per_second(self) -> float:
        return ratio(self.claims, self.seconds)

    @property
    def releases(self) -> int:
        return sum(1 for answer in self.answers if answer.ended == RELEASED)

    def per_claim(self, count: int) -> float:
        return ratio(count, self.claims)

    def cpu_per_claim(self) -> float:
        """CPU ms per claim (with what the press did after it), mongod and desks together; NaN unmeasured."""
        return math.nan if self.cpu is None else sum(self.cpu.per_operation_ms.values())

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "clients": self.clients, "claims": self.claims, "releases": self.releases,
                "seconds": round(self.seconds, 3), "claims_per_second": round(self.claims_per_second, 1),
                "exhausted": self.exhausted, "latency": latency_summary(self.latencies_ms),
                "session_reads_per_claim": round(self.per_claim(self.session_reads), 3),
                "skipped_index_entries_per_claim": round(self.per_claim(self.skipped_entries), 1),
                "cpu": None if self.cpu is None else self.cpu.to_json()}


def measure(pool: DeskPool, jobs: Sequence[ClaimJob], label: str, database: Database,
            meter: CpuMeter | None = None, may_run_out: bool = False) -> Claims:
    """Run one job per desk, all started together; raise when a claim found nobody unless ``may_run_out``."""
    before: list[tuple[int, int]] = []

    def on_go() -> None:
        before.append(server_counts(database))
        if meter is not None:
            meter.start()

    measurement = pool.run(list(jobs), on_go=on_go)
    runs: list[DeskRun] = measurement.results
    answers = [answer for run in runs for answer in run.answers]
    cpu = meter.stop(len(answers)) if meter else None
    after = server_counts(database)
    result = Claims(label, len(jobs), answers, [ms for run in runs for ms in run.latencies_ms],
                    max(run.finished for run in runs) - measurement.started, any(run.exhausted for run in runs),
                    after[0] - before[0][0], after[1] - before[0][1], cpu)
    if result.exhausted and not may_run_out:
        raise BenchError(f"{label}: a claim found nobody after {result.claims} claims, in sessions seeded with "
                         f"students to spare (is the claim handing out nobody?)")
    return result


def claim_jobs(mongo_url: str, database: str, seats: Sequence[Seat], desks: int, label: str,
               total: int | None = None, **options: Any) -> list[ClaimJob]:
    """``desks`` jobs: desk ``d`` takes seats ``d, d + desks, ...`` and its share of ``total`` claims."""
    shares = split(total, desks)
    return [ClaimJob(mongo_url, database, tuple(seats[desk::desks]), f"{label}-d{desk}", shares[desk], **options)
            for desk in range(desks)]


def merge(label: str, parts: Sequence[Claims]) -> Claims:
    """Several measurements as one (claims and seconds summed)."""
    uses = [part.cpu for part in parts if part.cpu is not None]
    return Claims(label, parts[0].clients, [a for part in parts for a in part.answers],
                  [ms for part in parts for ms in part.latencies_ms], sum(part.seconds for part in parts),
                  any(part.exhausted for part in parts), sum(part.session_reads for part in parts),
                  sum(part.skipped_entries for part in parts),
                  merge_uses(uses, [part.claims for part in parts if part.cpu is not None]) if uses else None)


def split(total: int | None, parts: int) -> list[int | None]:
    """``total`` spread as evenly as possible over ``parts`` (all None without a total)."""
    if total is None:
        return [None] * parts
    return [total // parts + (1 if index < total % parts else 0) for index in range(parts)]


def server_counts(database: Database) -> tuple[int, int]:
    """(finds served, entries the claim index's cursors skipped) so far.

    During a measurement the only finds are session reads (claims and
    completions are findAndModify) and the only cursors on the claim index
    are claims: the skipped entries are deleted keys claims stepped over.
    """
    queries = database.client.admin.command("serverStatus")["opcounters"]["query"]
    return int(queries), claim_index_cursor(database).get(SKIPPED_STAT, 0)


def claim_index_cursor(database: Database) -> dict[str, int]:
    """WiredTiger's cursor statistics of the claim index (empty before it exists)."""
    try:
        details = database.command("collStats", STUDENTS, indexDetails=True).get("indexDetails", {})
    except OperationFailure:
        return {}
    return {key: int(value) for key, value in details.get(CLAIM_INDEX, {}).get("cursor", {}).items()}


def explain_claim(database: Database, session_id: str, skills: tuple[str, ...] = ()) -> dict[str, Any]:
    """The claim's index walk, explained with its own filter, sort and hint (nothing is claimed).

    ``keys_examined`` counts live keys; deleted keys the walk stepped over
    show in the time and in ``skipped_entries``.
    """
    lanes = claim_lanes("bench-explain", skills, personal=False)
    cursor = database[STUDENTS].find(claim_filter(session_id, lanes, "bench-explain"), {"_id": 1},
                                     sort=CLAIM_ORDER, hint=CLAIM_INDEX, limit=1)
    before = claim_index_cursor(database).get(SKIPPED_STAT, 0)
    stats = cursor.explain()["executionStats"]
    return {"keys_examined": stats["totalKeysExamined"], "docs_examined": stats["totalDocsExamined"],
            "milliseconds": stats["executionTimeMillis"],
            "skipped_entries": claim_index_cursor(database).get(SKIPPED_STAT, 0) - before}
