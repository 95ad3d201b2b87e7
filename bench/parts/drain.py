"""A 100,000-student session drained completely: does "Get Next" slow down as the session empties?

Each claim goes the task's press path (open-session cache, ``assign_next``)
and is completed, every 25th of a desk released and claimed again later.
Claims/s per tenth of the drain, the claim's index walk explained after each.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from pymongo.database import Database

from bench.harness.claims import Claims, Seat, claim_jobs, explain_claim, fresh, measure, merge
from bench.harness.core import Harness, Panel, Part
from bench.harness.desks import BenchError, DeskPool
from bench.harness.integrity import DRAINED, IntegrityReport, check
from bench.harness.report import bars
from bench.harness.targets import NAN, Target, latency_summary, ratio
from bench.parts.many_sessions import cache_seconds
from callqueue.workers.models import PENDING
from callqueue.workers.store import CLAIM_INDEX, STUDENTS

DATABASE = "bench_drain"
SESSION = "drain-session"
SLICE_CLAIMS = 4_000


@dataclass(frozen=True)
class DrainConfig:
    students: int = 100_000
    clients: int = 8
    release_every: int = 25
    assistants_per_desk: int = 5
    parts: int = 10
    cache_seconds: float = field(default_factory=cache_seconds)


@dataclass
class DrainResults:
    config: DrainConfig
    tenths: list[Claims] = field(default_factory=list)  # the drain by tenths of its claims
    explains: list[dict[str, Any]] = field(default_factory=list)  # the claim explained at the start and after each
    checks: list[IntegrityReport] = field(default_factory=list)

    def ratio(self) -> float:
        """Claims/s of the last tenth over the first (NaN with fewer than two tenths)."""
        return ratio(self.tenths[-1].claims_per_second, self.tenths[0].claims_per_second) if self.tenths[1:] else NAN

    def to_json(self) -> dict[str, Any]:
        return {"start_explain": self.explains[0] if self.explains else None, "tenths": [
            {**tenth.to_json(), "explain_after": plan} for tenth, plan in zip(self.tenths, self.explains[1:])]}


class DrainPart(Part):
    name = "drain"
    description = "a 100,000-student session drained completely, claims/s per tenth"
    sizes, quick = DrainConfig, {"students": 20_000}

    def run(self, config: DrainConfig, harness: Harness) -> DrainResults:
        database, results = harness.mongo[DATABASE], DrainResults(config)
        fresh(database, {SESSION: config.students})
        every = config.release_every  # every student claimed once, and the releases again
        per_tenth = math.ceil(config.students * (every / (every - 1) if every > 1 else 1.0) / config.parts)
        harness.say(f"  {config.students:,} students, {config.clients} desks x {config.assistants_per_desk} "
                    f"assistants, every {config.release_every}th claim released; about {per_tenth:,} claims per tenth")
        seats = [(SESSION, f"drain-d{desk}-a{index}", ()) for index in range(config.assistants_per_desk)
                 for desk in range(config.clients)]
        results.explains.append(explain_claim(database, SESSION))
        try:
            with harness.desks(config.clients) as pool:
                meter = harness.servers.cpu_meter(None, pool.pids)
                while len(results.tenths) < config.parts and _pending(database):
                    last = len(results.tenths) == config.parts - 1
                    results.tenths.append(_tenth(pool, harness.servers.mongo.url, database, seats,
                                                 None if last else per_tenth, len(results.tenths), config, meter))
                    results.explains.append(explain_claim(database, SESSION))
                    harness.say(_tenth_line(len(results.tenths), results.tenths[-1], results.explains[-1]))
            answers = [answer for tenth in results.tenths for answer in tenth.answers]
            results.checks = [check(f"drain of {config.students:,}", database, answers, DRAINED, [SESSION])]
        finally:
            harness.mongo.drop_database(DATABASE)
        harness.say(f"  last / first tenth: {results.ratio():.2f}")
        return results

    def targets(self, results: DrainResults) -> list[Target]:
        return [Target(f"drain of {results.config.students:,}: last tenth vs first tenth, claims/s", results.ratio(),
                       0.9, samples=len(results.tenths))]

    def observations(self, results: DrainResults) -> list[tuple[str, float]]:
        """CPU per claim and skipped keys per claim, last tenth over first: steadier than throughput."""
        if not results.tenths[1:]:
            return []
        first, last = results.tenths[0], results.tenths[-1]
        return [("drain: CPU per claim, last tenth / first tenth", ratio(last.cpu_per_claim(), first.cpu_per_claim())),
                ("drain: skipped index keys per claim, last tenth / first tenth",
                 ratio(last.per_claim(last.skipped_entries), first.per_claim(first.skipped_entries)))]

    def panels(self, results: DrainResults) -> list[Panel]:
        return [bars(f"Drain of {results.config.students:,}: claims/s per tenth, last / first {results.ratio():.2f}x",
                     "claims per second (claim + complete or release)",
                     [str(number + 1) for number in range(len(results.tenths))],
                     [tenth.claims_per_second for tenth in results.tenths])]


def _tenth(pool: DeskPool, mongo_url: str, database: Database, seats: list[Seat], target: int | None, index: int,
           config: DrainConfig, meter: Any) -> Claims:
    """Slices of at most ``SLICE_CLAIMS`` (the desks report between them) until ``target`` claims are made
    (None: until nobody is pending); a slice claiming nobody while students are pending stops the part."""
    slices: list[Claims] = []
    done = 0
    while (target is None or done < target) and (pending := _pending(database)):
        label = f"drain-t{index}-s{len(slices)}"
        jobs = claim_jobs(mongo_url, database.name, seats, config.clients, label, SLICE_CLAIMS if target is None
                          else min(SLICE_CLAIMS, target - done), ends=True, cache_seconds=config.cache_seconds,
                          release_every=config.release_every)
        slices.append(measure(pool, jobs, label, database, meter, may_run_out=True))
        if slices[-1].claims == 0:
            raise BenchError(f"{label}: no claim succeeded while {pending:,} students were pending "
                             f"(is the claim handing out nobody?)")
        done += slices[-1].claims
    return merge(f"drain-tenth-{index + 1}", slices)


def _pending(database: Database) -> int:
    return database[STUDENTS].count_documents(
        {"call_session_id": SESSION, "filter_status": PENDING, "assigned_to": None}, hint=CLAIM_INDEX)


def _tenth_line(number: int, result: Claims, plan: dict[str, Any]) -> str:
    latency = latency_summary(result.latencies_ms)
    return (f"  tenth {number:2d}: {result.claims:6,} claims ({result.releases} released) "
            f"{result.claims_per_second:6.1f} claims/s, claim p50 {latency['p50_ms']:.2f} ms p99 "
            f"{latency['p99_ms']:.2f} ms, {result.per_claim(result.skipped_entries):.0f} skipped keys/claim, "
            f"{result.cpu_per_claim():.2f} ms CPU/claim; then explain: {plan['keys_examined']} keys, "
            f"{plan['skipped_entries']} skipped, {plan['milliseconds']} ms")


PART = DrainPart()
