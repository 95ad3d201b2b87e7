"""Many sessions at once: 200 open sessions of 5 assistants against one session of the same 1,000.

A press is "Get Next" as the task runs it (the worker's open-session cache,
then ``assign_next``) and the completion. Across many sessions a worker
process rarely meets a session again within the cache's lifetime, so a
per-session cost (reading the session) shows here while one busy session
hides it. Every round reseeds all sessions; in a turn every assistant
presses once, each desk standing for a worker process with a fresh cache.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from bench.harness.claims import Claims, Rounds, Seat, abba, claim_jobs, fresh
from bench.harness.core import Harness, Panel, Part
from bench.harness.integrity import ENDED, IntegrityReport, check, combine
from bench.harness.report import bars
from bench.harness.targets import Target, ratio
from callqueue.config import Settings

DATABASE = "bench_many_sessions"
MANY = "many"
SINGLE = "single"


def cache_seconds() -> float:
    """The open-session cache lifetime a worker would use (``CALLQUEUE_SESSION_CACHE_SECONDS`` or its default)."""
    return Settings.from_env({k: v for k, v in os.environ.items() if k.startswith("CALLQUEUE_")}).session_cache_seconds


@dataclass(frozen=True)
class ManyConfig:
    clients: int = 8
    sessions: int = 200
    assistants_per_session: int = 5
    students_per_session: int = 50
    rounds: int = 7
    cache_seconds: float = field(default_factory=cache_seconds)

    @property
    def assistants(self) -> int:
        return self.sessions * self.assistants_per_session


@dataclass
class ManyResults(Rounds):
    config: ManyConfig = field(default_factory=ManyConfig)
    checks: list[IntegrityReport] = field(default_factory=list)

    def label(self, kind: str) -> str:
        config = self.config
        return (f"{config.sessions} sessions x {config.assistants_per_session} assistants" if kind == MANY
                else f"1 session x {config.assistants:,} assistants")

    def to_json(self) -> dict[str, Any]:
        return {"session_cache_seconds": self.config.cache_seconds, "rounds": super().to_json(),
                "median_claims_per_second": {kind: round(self.rate(kind), 1) for kind in (MANY, SINGLE)},
                "round_ratios": {MANY: [round(value, 3) for value in self.ratios(MANY, SINGLE)]}}


class ManySessionsPart(Part):
    name = "many-sessions"
    description = "claims/s pressing across 200 sessions of 5 assistants vs one session of 1,000"
    sizes, quick = ManyConfig, {"rounds": 3}

    def run(self, config: ManyConfig, harness: Harness) -> ManyResults:
        harness.say(f"  {config.clients} desks, a press = Get Next (open-session cache {config.cache_seconds:g}s + "
                    f"assign_next) + complete; {config.rounds} rounds A-B-B-A, one press per assistant per turn")
        per = config.assistants_per_session
        layouts: dict[str, list[Seat]] = {
            MANY: [(f"many-{index // per}", f"assistant-{index}", ()) for index in range(config.assistants)],
            SINGLE: [("single-session", f"assistant-{index}", ()) for index in range(config.assistants)]}
        total = config.sessions * config.students_per_session  # students in all the many, and in the single one
        sessions = {f"many-{number}": total // config.sessions for number in range(config.sessions)}
        sessions["single-session"] = total
        results, checks = ManyResults(config=config), {MANY: [], SINGLE: []}
        database = harness.mongo[DATABASE]
        with harness.desks(config.clients) as pool:
            meter = harness.servers.cpu_meter(None, pool.pids)
            for number in range(config.rounds):
                fresh(database, sessions)
                results.rounds.append(abba(pool, database, meter, (MANY, SINGLE), number, lambda kind, label:
                                           claim_jobs(harness.servers.mongo.url, DATABASE, layouts[kind],
                                                      config.clients, label, len(layouts[kind]), ends=True,
                                                      cache_seconds=config.cache_seconds)))
                for kind, result in results.rounds[-1].items():
                    checks[kind].append(check(kind, database, result.answers, ENDED))
                harness.say(_round_line(number, results.rounds[-1]))
        harness.mongo.drop_database(DATABASE)
        results.checks = [combine(f"{results.label(kind)} ({len(reports)} rounds)", reports)
                          for kind, reports in checks.items()]
        harness.say(f"  median per-round ratio {MANY} / {SINGLE}: {results.ratio(MANY, SINGLE):.2f} "
                    f"({', '.join(f'{value:.2f}' for value in results.ratios(MANY, SINGLE))})")
        return results

    def targets(self, results: ManyResults) -> list[Target]:
        config = results.config
        return [Target(f"{config.sessions} sessions x {config.assistants_per_session} assistants vs 1 session x "
                       f"{config.assistants:,} assistants, claims/s (median of per-round ratios)",
                       results.ratio(MANY, SINGLE), 0.9, samples=len(results.rounds))]

    def observations(self, results: ManyResults) -> list[tuple[str, float]]:
        return [(f"CPU per claim, {results.config.sessions} sessions / 1 session (median of per-round ratios)",
                 results.cpu_ratio(MANY, SINGLE))]

    def panels(self, results: ManyResults) -> list[Panel]:
        return [bars(f"Many sessions vs one: {results.ratio(MANY, SINGLE):.2f}x (median per-round ratio)",
                     "claims per second (claim + complete; median of rounds)",
                     [results.label(kind).replace(" x ", "\nx ") for kind in (MANY, SINGLE)],
                     [results.rate(kind) for kind in (MANY, SINGLE)],
                     [[turns[kind].claims_per_second for turns in results.rounds] for kind in (MANY, SINGLE)])]


def _round_line(number: int, turns: dict[str, Claims]) -> str:
    parts = [f"{kind} {result.claims_per_second:6.1f}/s ({result.per_claim(result.session_reads):.2f} session reads, "
             f"{result.per_claim(result.skipped_entries):.0f} skipped keys, {result.cpu_per_claim():.2f} ms CPU "
             f"per claim)"
             for kind, result in turns.items()]
    return (f"  round {number}: {'; '.join(parts)}; ratio "
            f"{ratio(turns[MANY].claims_per_second, turns[SINGLE].claims_per_second):.2f}")


PART = ManySessionsPart()
