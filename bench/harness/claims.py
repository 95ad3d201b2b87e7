"""Claims without Celery: desks racing on MongoDB with the store's own claim, as workers run it.

Each desk (its own ``MongoClient`` and assistants) claims with ``assign_next``
(or the seed-style claim it replaced) and, where holds end, completes or
releases as the tasks do; a hold that never ends blocks its assistant, so
such claims go to a fresh assistant each time. Sessions are seeded with
students to spare (all from one generator, through the project's own
import), so a claim finding nobody is an error unless the part drains its
session (``may_run_out``). Around each measurement MongoDB's counters give
the session reads and the deleted index keys the claims stepped over.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Mapping, Sequence

from pymongo import ASCENDING, IndexModel, MongoClient, ReturnDocument
from pymongo.database import Database
from pymongo.errors import ExecutionTimeout, OperationFailure

from bench.harness.cpu import CpuMeter, CpuUse, merge_uses
from bench.harness.desks import BenchError, DeskPool
from bench.harness.integrity import COMPLETED, HELD, RELEASED, Answer
from bench.harness.targets import latency_summary, median, ratio
from callqueue.workers.exceptions import Rejected
from callqueue.workers.models import PENDING, CallSession
from callqueue.workers.session_cache import OpenSessionCache
from callqueue.workers.store import (
    ASSIGNMENT_FIELDS, CLAIM_INDEX, STUDENTS, AssignmentStore, CompletionPlan, NewStudent, ensure_indexes,
)
from callqueue.workers.store.documents import CLAIM_ORDER, claim_filter, claim_lanes

OURS = "ours"
SEED_STYLE = "seed-style"
OUTCOME = "reached"
SKIPPED_STAT = "Total number of entries skipped by cursor next calls"
Seat = tuple[str, str, tuple[str, ...]]  # (session, assistant, skills) of one assistant at a desk
SEED_STYLE_INDEX_KEYS = ("call_session_id", "filter_status", "assigned_to", "assigned_at")
SEED_STYLE_LEASE = timedelta(minutes=30)
IMPORT_CHUNK = 1_000


class WindowClosed(Exception):
    """A seed-style claim was abandoned (and changed nothing) because the measuring window ended."""


@dataclass
class DeskRun:

    answers: list[Answer] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    exhausted: bool = False
    finished: float = 0.0


@dataclass(frozen=True)
class ClaimJob:
    """One desk's share: claim for its seats in turn until ``seconds`` or ``max_claims`` are spent.

    ``cache_seconds``: the task's per-process ``OpenSessionCache`` (fresh per
    measurement: the desk is a worker process); None reads each session once.
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

    def prepare(self, cache: dict[str, Any]) -> Callable[[float], DeskRun]:
        if self.mongo_url not in cache:
            cache[self.mongo_url] = MongoClient(self.mongo_url, tz_aware=True, appname="bench")
        database = cache[self.mongo_url][self.database]
        database.command("ping")
        store = AssignmentStore(database)
        claim = _seed_style(database) if self.kind == SEED_STYLE else _ours(store, self.cache_seconds, self.seats)
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
            if self.release_every and (number + 1) % self.release_every == 0:
                store.release(*hold, f"{request}:release")
                return RELEASED
            store.complete(*hold, CompletionPlan(OUTCOME), f"{request}:complete")
            return COMPLETED
        except Rejected as exc:
            return f"refused:{exc.code}"


def _ours(store: AssignmentStore, cache_seconds: float | None, seats: Sequence[Seat]) -> Callable[..., Any]:
    """The project's claim; on "nobody left" with the task's cache, the fresh session read the task makes."""
    cache = OpenSessionCache(cache_seconds) if cache_seconds is not None else None
    once: dict[str, CallSession] = {} if cache else {seat[0]: store.open_session(seat[0]) for seat in seats}

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
        """CPU ms per claim (and what followed it), mongod and desks together: steadier than throughput."""
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


def abba(pool: DeskPool, database: Database, meter: CpuMeter | None, kinds: Sequence[str], number: int,
         jobs: Callable[[str, str], list[ClaimJob]]) -> dict[str, Claims]:
    """Round ``number``: the kinds take turns A-B-B-A (B-A-A-B in odd rounds, cancelling a steady drift
    of the machine's other load), each kind's turns merged; ``jobs(kind, label)`` gives a turn's jobs."""
    order = list(kinds) if number % 2 == 0 else list(kinds)[::-1]
    turns: dict[str, list[Claims]] = {kind: [] for kind in kinds}
    for turn, kind in enumerate(order + order[::-1]):
        label = f"{kind}-r{number}-t{turn}"
        turns[kind].append(measure(pool, jobs(kind, label), label, database, meter))
    return {kind: merge(f"{kind}-r{number}", parts) for kind, parts in turns.items()}


@dataclass
class Rounds:
    """Per round, each kind's claims; the targets use medians of per-round ratios."""

    rounds: list[dict[str, Claims]] = field(default_factory=list)

    def ratios(self, kind: str, base: str) -> list[float]:
        return [ratio(turns[kind].claims_per_second, turns[base].claims_per_second) for turns in self.rounds]

    def ratio(self, kind: str, base: str) -> float:
        return median(self.ratios(kind, base))

    def rate(self, kind: str) -> float:
        return median([turns[kind].claims_per_second for turns in self.rounds])

    def cpu_ratio(self, kind: str, base: str) -> float:
        return median([ratio(turns[kind].cpu_per_claim(), turns[base].cpu_per_claim()) for turns in self.rounds])

    def to_json(self) -> list[dict[str, Any]]:
        return [{kind: claims.to_json() for kind, claims in turns.items()} for turns in self.rounds]


def split(total: int | None, parts: int) -> list[int | None]:
    """``total`` spread as evenly as possible over ``parts`` (all None without a total)."""
    if total is None:
        return [None] * parts
    return [total // parts + (1 if index < total % parts else 0) for index in range(parts)]


def server_counts(database: Database) -> tuple[int, int]:
    """(finds served, entries the claim index's cursors skipped): during a measurement the only finds are
    session reads (claims are findAndModify), the only claim index cursors claims."""
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
    """The claim's index walk, explained with its own filter, sort and hint (nothing is claimed);
    deleted keys it stepped over show in ``skipped_entries``, not in ``keys_examined``."""
    lanes = claim_lanes("bench-explain", skills, personal=False)
    cursor = database[STUDENTS].find(claim_filter(session_id, lanes, "bench-explain"), {"_id": 1},
                                     sort=CLAIM_ORDER, hint=CLAIM_INDEX, limit=1)
    before = claim_index_cursor(database).get(SKIPPED_STAT, 0)
    stats = cursor.explain()["executionStats"]
    return {"keys_examined": stats["totalKeysExamined"], "docs_examined": stats["totalDocsExamined"],
            "milliseconds": stats["executionTimeMillis"],
            "skipped_entries": claim_index_cursor(database).get(SKIPPED_STAT, 0) - before}


# -- the students every part claims from, and the seed-style baseline ---------------------------------------

@functools.lru_cache(maxsize=4)
def student_rows(count: int) -> tuple[NewStudent, ...]:
    """``count`` deterministic students, each a realistic small payload (made once per size)."""
    return tuple(
        NewStudent(
            student={"name": f"Student {index:06d}", "phone": f"+1555{index:07d}",
                     "email": f"student{index:06d}@example.edu", "cohort": f"cohort-{index % 40:02d}"},
            position=index,
            key=f"s{index:06d}",
        )
        for index in range(count)
    )


def seed_session(database: Database, session_id: str, count: int, routes: tuple[str, ...] = ("",),
                 zones: tuple[str, ...] = ("",)) -> None:
    """Insert a session of ``count`` pending students through the project's own import.

    The ``n``-th student gets routing tag ``routes[n % len(routes)]`` and zone ``zones[n % len(zones)]``
    (none by default); a session that has calling hours places them by their zone's window.
    """
    rows = [dataclasses.replace(row, route=routes[index % len(routes)], zone=zones[index % len(zones)])
            for index, row in enumerate(student_rows(count))]
    AssignmentStore(database).import_students(session_id, session_id, rows, IMPORT_CHUNK)


def fresh(database: Database, sessions: dict[str, int], seed_style: bool = False) -> None:
    """Empty ``database``; seed each session of ``sessions`` (id: students); index and flush to disk.

    The indexes are the project's, or with ``seed_style`` only the baseline's.
    """
    database.client.drop_database(database.name)
    for session_id, count in sessions.items():
        seed_session(database, session_id, count)
    if seed_style:  # the baseline's index: the fields of its filter, nothing for the sort
        database[STUDENTS].create_indexes([IndexModel([(key, ASCENDING) for key in SEED_STYLE_INDEX_KEYS],
                                                      name="seed_filter_fields")])
    else:
        ensure_indexes(database)
    settle(database)


def settle(database: Database) -> None:
    """Flush the fresh data to disk now, so the checkpoint does not land inside a measurement."""
    database.client.admin.command("fsync")


def seed_style_claim(database: Database, session_id: str, assistant_id: str,
                     now: datetime | None = None, max_time_ms: int | None = None) -> Mapping[str, Any] | None:
    """The claim the project replaces: unassigned *or* stale, ordered by position.

    Still one atomic ``find_one_and_update`` (so it cannot hand a student out
    twice either), but the ``$or`` and a sort the index cannot serve make
    MongoDB gather and sort every matching student on each claim. It returns
    the same projection as ours, so only the query and index differ.
    ``max_time_ms`` lets the benchmark abandon a claim (which then changes
    nothing) when its measuring window closes. Its history entry has no
    token to carry (the update cannot read the one it makes): null.
    """
    now = now or datetime.now(timezone.utc)
    return database[STUDENTS].find_one_and_update(
        {"call_session_id": session_id, "filter_status": PENDING,
         "$or": [{"assigned_to": None}, {"assigned_at": {"$lt": now - SEED_STYLE_LEASE}}]},
        {"$set": {"assigned_to": assistant_id, "assigned_at": now},
         "$inc": {"assignment_token": 1},
         "$push": {"history": {"event": "claimed", "assistant_id": assistant_id,
                               "token": None, "request_id": assistant_id, "at": now}}},
        sort=[("position", ASCENDING)],
        projection=ASSIGNMENT_FIELDS,
        return_document=ReturnDocument.AFTER,
        **({"maxTimeMS": max_time_ms} if max_time_ms is not None else {}),
    )
