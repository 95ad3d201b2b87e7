"""Part 1 and 2: the claim engine without Celery, many clients racing on one session.

Each desk has its own ``MongoClient`` and calls ``AssignmentStore.assign_next``
(or the seed-style claim) in a loop, with a fresh assistant id per claim so
that every call hands out a new student. A run stops after a duration or a
number of claims, or when the session is exhausted.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

from pymongo import MongoClient
from pymongo.errors import ExecutionTimeout

from bench.cpu import CpuMeter, CpuUse, merge_uses
from bench.data import seed_style_claim
from bench.integrity import Answer
from bench.pool import DeskPool
from bench.stats import latency_summary, ratio
from workers.store import AssignmentStore

OURS = "ours"
SEED_STYLE = "seed-style"
Claimer = Callable[[str, float], "str | None"]


class WindowClosed(Exception):
    """A claim was abandoned (and changed nothing) because the measuring window ended."""


@dataclass(frozen=True)
class ClaimJob:
    """One desk's share of a measurement."""

    mongo_url: str
    database: str
    session_id: str
    kind: str
    prefix: str
    duration_seconds: float | None = None
    max_claims: int | None = None

    def prepare(self, cache: dict[str, Any]) -> Callable[[float], "ClaimRun"]:
        """Connect (once per desk), load the session, and return the timed loop."""
        client = cache.get(self.mongo_url)
        if client is None:
            client = cache[self.mongo_url] = MongoClient(self.mongo_url, tz_aware=True, appname="bench")
        database = client[self.database]
        database.command("ping")
        claim = _claimer(self.kind, database, self.session_id)
        return lambda go_time: self._loop(claim, go_time)

    def _loop(self, claim: Claimer, go_time: float) -> "ClaimRun":
        """Claim for fresh assistants until the time or claim budget is spent, or nobody is left."""
        run = ClaimRun(self.prefix)
        deadline = go_time + self.duration_seconds if self.duration_seconds else float("inf")
        limit = self.max_claims if self.max_claims is not None else float("inf")
        while len(run.answers) < limit and time.monotonic() < deadline:
            assistant = f"{self.prefix}-{len(run.answers)}"
            began = time.perf_counter()
            try:
                student = claim(assistant, deadline)
            except WindowClosed:
                break
            run.latencies_ms.append((time.perf_counter() - began) * 1000)
            if student is None:
                run.exhausted = True
                break
            run.answers.append((student, assistant))
        run.finished = time.monotonic()
        return run


@dataclass
class ClaimRun:
    """What one desk did: the answers it got, per-claim latencies, when it stopped."""

    prefix: str
    answers: list[Answer] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    exhausted: bool = False
    finished: float = 0.0


def _claimer(kind: str, database: Any, session_id: str) -> Claimer:
    """A function that claims one student for an assistant and returns its id (None when empty)."""
    if kind == OURS:
        return _ours(database, session_id)
    if kind == SEED_STYLE:
        return _seed_style(database, session_id)
    raise ValueError(f"unknown claim kind {kind!r}")


def _ours(database: Any, session_id: str) -> Claimer:
    """The project's claim, exactly as the workers run it (the session is read once)."""
    store = AssignmentStore(database)
    session = store.open_session(session_id)

    def claim(assistant: str, _deadline: float) -> str | None:
        assignment = store.assign_next(session, assistant, assistant)
        if assignment is not None and assignment.already_held:
            raise AssertionError(f"fresh assistant {assistant} already held a student")
        return None if assignment is None else assignment.student_id

    return claim


def _seed_style(database: Any, session_id: str) -> Claimer:
    """The seed-style claim, given the time left in the window.

    Under contention one such claim can take seconds, so it is abandoned
    (``maxTimeMS``, nothing written) when the window closes.
    """
    def claim(assistant: str, deadline: float) -> str | None:
        max_time_ms = None if deadline == float("inf") else int((deadline - time.monotonic()) * 1000)
        if max_time_ms is not None and max_time_ms < 1:
            raise WindowClosed()
        try:
            document = seed_style_claim(database, session_id, assistant, max_time_ms=max_time_ms)
        except ExecutionTimeout as exc:
            raise WindowClosed() from exc
        return None if document is None else document["_id"]

    return claim


@dataclass(frozen=True)
class ClaimResult:
    """Claims per second of one measurement, with latencies and every answer for the check."""

    kind: str
    clients: int
    claims: int
    seconds: float
    exhausted: bool
    latencies_ms: list[float]
    answers: list[Answer]
    cpu: CpuUse | None = None

    @property
    def claims_per_second(self) -> float:
        return ratio(self.claims, self.seconds)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "clients": self.clients, "claims": self.claims,
                "seconds": round(self.seconds, 3), "claims_per_second": round(self.claims_per_second, 1),
                "exhausted": self.exhausted, "latency": latency_summary(self.latencies_ms),
                "cpu": None if self.cpu is None else self.cpu.to_json()}


def measure_claims(pool: DeskPool, mongo_url: str, database: str, session_id: str, kind: str,
                   clients: int, duration_seconds: float | None = None, total_claims: int | None = None,
                   label: str = "run", meter: CpuMeter | None = None) -> ClaimResult:
    """Race ``clients`` desks on one session; by duration, or until ``total_claims`` are made."""
    shares = _split(total_claims, clients)
    jobs = [ClaimJob(mongo_url, database, session_id, kind, f"{label}-c{index}", duration_seconds, share)
            for index, share in enumerate(shares)]
    measurement = pool.run(jobs, on_go=meter.start if meter else None)
    runs: list[ClaimRun] = measurement.results
    answers = [answer for run in runs for answer in run.answers]
    cpu = meter.stop(len(answers)) if meter else None
    return ClaimResult(
        kind=kind, clients=clients, claims=len(answers),
        seconds=max(run.finished for run in runs) - measurement.started,
        exhausted=any(run.exhausted for run in runs),
        latencies_ms=[latency for run in runs for latency in run.latencies_ms],
        answers=answers,
        cpu=cpu,
    )


def merge_claims(parts: list[ClaimResult]) -> ClaimResult:
    """Several measurements of one kind and session as one (claims and seconds summed)."""
    uses = [part.cpu for part in parts if part.cpu is not None]
    return ClaimResult(
        kind=parts[0].kind, clients=parts[0].clients, claims=sum(part.claims for part in parts),
        seconds=sum(part.seconds for part in parts), exhausted=any(part.exhausted for part in parts),
        latencies_ms=[latency for part in parts for latency in part.latencies_ms],
        answers=[answer for part in parts for answer in part.answers],
        cpu=merge_uses(uses, [part.claims for part in parts if part.cpu is not None]) if uses else None,
    )


def _split(total: int | None, parts: int) -> list[int | None]:
    """``total`` spread as evenly as possible over ``parts`` (all None without a total)."""
    if total is None:
        return [None] * parts
    return [total // parts + (1 if index < total % parts else 0) for index in range(parts)]
