"""Many sessions at once: 200 open sessions of 5 assistants against one session of the same 1,000.

A press is what an assistant does all day: "Get Next" as the task runs it
(the worker's per-process open-session cache, then ``assign_next``), then the
completion. Across many sessions a worker process meets a session it has not
seen within the cache's lifetime on almost every press, so a per-session
cost (reading the session) shows here while one busy session hides it. Every
round reseeds all sessions and lets the two kinds take turns A-B-B-A; in a
turn every assistant presses once, so each desk (a worker process, with a
fresh cache) meets each of its many sessions once. The session reads, the
deleted index keys stepped over and the CPU per claim are reported with
every rate.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any

from bench.harness.claims import Claims, Seat, claim_jobs, measure, merge
from bench.harness.core import Harness, Panel, Part, RunOptions
from bench.harness.data import fresh
from bench.harness.integrity import ENDED, IntegrityReport, check, combine
from bench.harness.stats import median, ratio
from bench.harness.targets import Target
from config import Settings

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
    mode: str = "threads"

    @property
    def assistants(self) -> int:
        return self.sessions * self.assistants_per_session


@dataclass
class ManyResults:
    config: ManyConfig
    rounds: list[dict[str, Claims]] = field(default_factory=list)
    checks: list[IntegrityReport] = field(default_factory=list)

    def ratios(self) -> list[float]:
        return [ratio(turns[MANY].claims_per_second, turns[SINGLE].claims_per_second) for turns in self.rounds]

    def rate(self, kind: str) -> float:
        return median([turns[kind].claims_per_second for turns in self.rounds])

    def label(self, kind: str) -> str:
        config = self.config
        return (f"{config.sessions} sessions x {config.assistants_per_session} assistants" if kind == MANY
                else f"1 session x {config.assistants:,} assistants")

    def to_json(self) -> dict[str, Any]:
        return {"session_cache_seconds": self.config.cache_seconds,
                "rounds": [{kind: result.to_json() for kind, result in turns.items()} for turns in self.rounds],
                "median_claims_per_second": {kind: round(self.rate(kind), 1) for kind in (MANY, SINGLE)},
                "round_ratios": {MANY: [round(value, 3) for value in self.ratios()]}}


class ManySessionsPart(Part):
    name = "many-sessions"
    description = "claims/s pressing across 200 sessions of 5 assistants vs one session of 1,000"

    def config(self, options: RunOptions) -> ManyConfig:
        config = ManyConfig(mode=options.engine_mode)
        return replace(config, rounds=3) if options.quick else config

    def run(self, config: ManyConfig, harness: Harness) -> ManyResults:
        harness.say(f"  {config.clients} desks, a press = Get Next (open-session cache {config.cache_seconds:g}s + "
                    f"assign_next) + complete; {config.rounds} rounds A-B-B-A, one press per assistant per turn")
        per = config.assistants_per_session
        layouts: dict[str, list[Seat]] = {
            MANY: [(f"many-{index // per}", f"assistant-{index}", ()) for index in range(config.assistants)],
            SINGLE: [("single-session", f"assistant-{index}", ()) for index in range(config.assistants)]}
        sessions = {kind: sorted({seat[0] for seat in seats}) for kind, seats in layouts.items()}
        total = config.sessions * config.students_per_session
        results, checks = ManyResults(config), {MANY: [], SINGLE: []}
        database = harness.mongo[DATABASE]
        with harness.desks(config.clients, config.mode) as pool:
            meter = harness.servers.cpu_meter(None, pool.pids)
            for number in range(config.rounds):
                fresh(database, {session: total // len(ids) for ids in sessions.values() for session in ids})
                order = [MANY, SINGLE] if number % 2 == 0 else [SINGLE, MANY]
                halves: dict[str, list[Claims]] = {kind: [] for kind in order}
                for turn, kind in enumerate(order + order[::-1]):
                    label = f"{kind}-r{number}-t{turn}"
                    jobs = claim_jobs(harness.servers.mongo.url, DATABASE, layouts[kind], config.clients, label,
                                      len(layouts[kind]), ends=True, cache_seconds=config.cache_seconds)
                    halves[kind].append(measure(pool, jobs, label, database, meter))
                turns = {kind: merge(f"{kind}-r{number}", halves[kind]) for kind in (MANY, SINGLE)}
                results.rounds.append(turns)
                for kind, result in turns.items():
                    checks[kind].append(check(kind, database, result.answers, ENDED))
                harness.say(_round_line(number, turns))
        database.client.drop_database(DATABASE)
        results.checks = [combine(f"{results.label(kind)} ({len(reports)} rounds)", reports)
                          for kind, reports in checks.items()]
        harness.say(f"  median per-round ratio {MANY} / {SINGLE}: {median(results.ratios()):.2f} "
                    f"({', '.join(f'{value:.2f}' for value in results.ratios())})")
        return results

    def targets(self, results: ManyResults) -> list[Target]:
        config = results.config
        return [Target(f"{config.sessions} sessions x {config.assistants_per_session} assistants vs 1 session x "
                       f"{config.assistants:,} assistants, claims/s (median of per-round ratios)",
                       median(results.ratios()), 0.9, samples=len(results.rounds))]

    def observations(self, results: ManyResults) -> list[tuple[str, float]]:
        cpu = [ratio(turns[MANY].cpu_per_claim(), turns[SINGLE].cpu_per_claim()) for turns in results.rounds]
        return [(f"CPU per claim, {results.config.sessions} sessions / 1 session (median of per-round ratios)",
                 median(cpu))]

    def panels(self, results: ManyResults) -> list[Panel]:
        return [lambda axes: _draw(axes, results)]


def _round_line(number: int, turns: dict[str, Claims]) -> str:
    """One round's rates, session reads, skipped keys and CPU per claim of each kind, and its ratio."""
    parts = [f"{kind} {result.claims_per_second:6.1f}/s ({result.per_claim(result.session_reads):.2f} session reads, "
             f"{result.per_claim(result.skipped_entries):.0f} skipped keys, {result.cpu_per_claim():.2f} ms CPU per claim)"
             for kind, result in turns.items()]
    return (f"  round {number}: {'; '.join(parts)}; ratio "
            f"{ratio(turns[MANY].claims_per_second, turns[SINGLE].claims_per_second):.2f}")


def _draw(axes: Any, results: ManyResults) -> None:
    """Median claims/s of each kind as bars, every round's rate as dots."""
    kinds = (MANY, SINGLE)
    bars = axes.bar([results.label(kind).replace(" x ", "\nx ") for kind in kinds],
                    [results.rate(kind) for kind in kinds], color=["tab:orange", "tab:blue"])
    axes.bar_label(bars, fmt="%.0f")
    for position, kind in enumerate(kinds):
        rates = [turns[kind].claims_per_second for turns in results.rounds]
        axes.plot([position] * len(rates), rates, "k.", alpha=0.6)
    axes.set_ylabel("claims per second (claim + complete; median of rounds)")
    axes.set_title(f"Many sessions vs one: {median(results.ratios()):.2f}x (median per-round ratio)")


PART = ManySessionsPart()
