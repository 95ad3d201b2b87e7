"""A 100,000-student session drained completely: does "Get Next" slow down as the session empties?

Every 25th claim of a desk is released back to the pool and claimed again
later; every other claim is completed (the task's press path: open-session
cache, ``assign_next``, ``complete``). Claims/s are reported per tenth of
the drain (each tenth run as slices the desks report back between), with the
claim's index walk explained after each tenth. A slice in which nobody could
be claimed while students are still pending stops the part.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

from pymongo.database import Database

from bench.harness.claims import ClaimJob, Claims, explain_claim, measure, merge, split
from bench.harness.core import Harness, Panel, Part, RunOptions
from bench.harness.data import fresh
from bench.harness.desks import BenchError, DeskPool
from bench.harness.integrity import DRAINED, IntegrityReport, check
from bench.harness.stats import latency_summary, ratio
from bench.harness.targets import Target
from bench.parts.many_sessions import cache_seconds
from workers.models import PENDING
from workers.store import CLAIM_INDEX, STUDENTS

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
    mode: str = "threads"


@dataclass(frozen=True)
class Tenth:
    """One tenth of the drain (by claims), with the claim's plan explained after it."""

    result: Claims
    explain_after: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {**self.result.to_json(), "explain_after": self.explain_after}


@dataclass
class DrainResults:
    config: DrainConfig
    tenths: list[Tenth] = field(default_factory=list)
    start_explain: dict[str, Any] = field(default_factory=dict)
    checks: list[IntegrityReport] = field(default_factory=list)

    def first_last(self) -> tuple[Claims, Claims] | None:
        return (self.tenths[0].result, self.tenths[-1].result) if len(self.tenths) >= 2 else None

    def ratio(self) -> float:
        """Claims/s of the last tenth over the first (NaN with fewer than two tenths)."""
        ends = self.first_last()
        return math.nan if ends is None else ratio(ends[1].claims_per_second, ends[0].claims_per_second)

    def to_json(self) -> dict[str, Any]:
        return {"start_explain": self.start_explain, "tenths": [tenth.to_json() for tenth in self.tenths]}


class DrainPart(Part):
    name = "drain"
    description = "a 100,000-student session drained completely, claims/s per tenth"

    def config(self, options: RunOptions) -> DrainConfig:
        config = DrainConfig(mode=options.engine_mode)
        return replace(config, students=20_000) if options.quick else config

    def run(self, config: DrainConfig, harness: Harness) -> DrainResults:
        database, results = harness.mongo[DATABASE], DrainResults(config)
        fresh(database, {SESSION: config.students})
        per_tenth = math.ceil(config.students * _claims_per_student(config) / config.parts)
        harness.say(f"  {config.students:,} students, {config.clients} desks x {config.assistants_per_desk} "
                    f"assistants, every {config.release_every}th claim released; about {per_tenth:,} claims per tenth")
        layouts = [tuple((SESSION, f"drain-d{desk}-a{index}", ()) for index in range(config.assistants_per_desk))
                   for desk in range(config.clients)]
        results.start_explain = explain_claim(database, SESSION)
        claims_by_desk = [0] * config.clients
        try:
            with harness.desks(config.clients, config.mode) as pool:
                meter = harness.servers.cpu_meter(None, pool.pids)
                while len(results.tenths) < config.parts and _pending(database):
                    last = len(results.tenths) == config.parts - 1
                    result = _tenth(pool, harness.servers.mongo.url, database, layouts, claims_by_desk,
                                    None if last else per_tenth, len(results.tenths), config, meter)
                    results.tenths.append(Tenth(result, explain_claim(database, SESSION)))
                    harness.say(_tenth_line(len(results.tenths), results.tenths[-1]))
            answers = [answer for tenth in results.tenths for answer in tenth.result.answers]
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
        ends = results.first_last()
        if ends is None:
            return []
        first, last = ends
        return [("drain: CPU per claim, last tenth / first tenth", ratio(last.cpu_per_claim(), first.cpu_per_claim())),
                ("drain: skipped index keys per claim, last tenth / first tenth",
                 ratio(last.per_claim(last.skipped_entries), first.per_claim(first.skipped_entries)))]

    def panels(self, results: DrainResults) -> list[Panel]:
        return [lambda axes: _draw(axes, results)]


def _claims_per_student(config: DrainConfig) -> float:
    """Every student once, plus the releases claimed again."""
    every = config.release_every
    return every / (every - 1) if every > 1 else 1.0


def _tenth(pool: DeskPool, mongo_url: str, database: Database, layouts: list[tuple[Any, ...]],
           claims_by_desk: list[int], target: int | None, index: int, config: DrainConfig, meter: Any) -> Claims:
    """Slices of at most ``SLICE_CLAIMS`` until ``target`` claims are made (None: until nobody is pending)."""
    slices: list[Claims] = []
    done = 0
    while (target is None or done < target) and (pending := _pending(database)):
        quota = SLICE_CLAIMS if target is None else min(SLICE_CLAIMS, target - done)
        label = f"drain-t{index}-s{len(slices)}"
        jobs = [ClaimJob(mongo_url, database.name, layouts[desk], f"{label}-d{desk}", share, ends=True,
                         cache_seconds=config.cache_seconds, release_every=config.release_every,
                         claims_before=claims_by_desk[desk])
                for desk, share in enumerate(split(quota, len(layouts)))]
        part = measure(pool, jobs, label, database, meter, may_run_out=True)
        if part.claims == 0:
            raise BenchError(f"{label}: no claim succeeded while {pending:,} students were pending "
                             f"(is the claim handing out nobody?)")
        counts = Counter(answer.assistant_id for answer in part.answers)
        for desk, layout in enumerate(layouts):
            claims_by_desk[desk] += sum(counts[assistant] for _session, assistant, _skills in layout)
        slices.append(part)
        done += part.claims
    return merge(f"drain-tenth-{index + 1}", slices)


def _pending(database: Database) -> int:
    """Students of the drained session still waiting (pending and unassigned)."""
    return database[STUDENTS].count_documents(
        {"call_session_id": SESSION, "filter_status": PENDING, "assigned_to": None}, hint=CLAIM_INDEX)


def _tenth_line(number: int, tenth: Tenth) -> str:
    """One tenth's rate, latency, skipped keys and CPU per claim, and the claim explained after it."""
    result, plan = tenth.result, tenth.explain_after
    latency = latency_summary(result.latencies_ms)
    return (f"  tenth {number:2d}: {result.claims:6,} claims ({result.releases} released) "
            f"{result.claims_per_second:6.1f} claims/s, claim p50 {latency['p50_ms']:.2f} ms p99 "
            f"{latency['p99_ms']:.2f} ms, {result.per_claim(result.skipped_entries):.0f} skipped keys/claim, "
            f"{result.cpu_per_claim():.2f} ms CPU/claim; then explain: {plan['keys_examined']} keys, "
            f"{plan['skipped_entries']} skipped, {plan['milliseconds']} ms")


def _draw(axes: Any, results: DrainResults) -> None:
    """Claims/s per tenth of the drain as bars."""
    rates = [tenth.result.claims_per_second for tenth in results.tenths]
    bars = axes.bar([str(number) for number in range(1, len(rates) + 1)], rates, color="tab:green")
    axes.bar_label(bars, fmt="%.0f", fontsize=8)
    axes.set_xlabel(f"tenth of the drain of {results.config.students:,} students (by claims)")
    axes.set_ylabel("claims per second (claim + complete or release)")
    axes.set_title(f"Drain: last / first tenth {results.ratio():.2f}x", fontsize=10)


PART = DrainPart()
