"""Cost against session size: claims/s from a 1,000- and a 100,000-student session, both fresh each round.

Claimed students leave deleted keys at the head of the claim index that
later claims step over until WiredTiger rewrites the page, so both sessions
start each round with no earlier claims: size is the only difference. The
last large session is then continued without reseeding (no target).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bench.harness.claims import Claims, Rounds, abba, claim_jobs, fresh, measure
from bench.harness.core import Harness, Panel, Part
from bench.harness.integrity import HOLDING, IntegrityReport, check, combine
from bench.harness.report import bars
from bench.harness.targets import Target, median, ratio

DATABASE = "bench_session_size"
SMALL, LARGE = "small", "large"


@dataclass(frozen=True)
class SizeConfig:
    small: int = 1_000
    large: int = 100_000
    clients: int = 8
    round_claims: int = 500
    rounds: int = 9
    followup_rounds: int = 4


@dataclass
class SizeResults(Rounds):
    config: SizeConfig = field(default_factory=SizeConfig)
    followup: list[Claims] = field(default_factory=list)
    checks: list[IntegrityReport] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"rounds": super().to_json(), "median_claims_per_second": {kind: round(self.rate(kind), 1)
                                                                          for kind in (SMALL, LARGE)},
                "round_ratios": [round(value, 3) for value in self.ratios(LARGE, SMALL)],
                "followup": [run.to_json() for run in self.followup]}


class SessionSizePart(Part):
    name = "session-size"
    description = "claims/s from a 1,000- against a 100,000-student session, A-B-B-A rounds"
    sizes, quick = SizeConfig, {"rounds": 3, "followup_rounds": 1}

    def run(self, config: SizeConfig, harness: Harness) -> SizeResults:
        harness.say(f"  {config.small:,} vs {config.large:,} pending students, {config.clients} clients, "
                    f"{config.round_claims} claims per session per round (A-B-B-A), {config.rounds} rounds")
        results, checks = SizeResults(config=config), {SMALL: [], LARGE: []}
        database, url = harness.mongo[DATABASE], harness.servers.mongo.url

        def jobs(session: str, label: str, claims: int) -> list[Any]:
            seats = [(session, f"{label}-c{index}", ()) for index in range(config.clients)]
            return claim_jobs(url, DATABASE, seats, config.clients, label, claims)

        with harness.desks(config.clients) as pool:
            meter = harness.servers.cpu_meter(None, pool.pids)
            for number in range(config.rounds):
                sessions = {SMALL: f"small-{number}", LARGE: f"large-{number}"}
                fresh(database, {sessions[SMALL]: config.small, sessions[LARGE]: config.large})
                results.rounds.append(abba(pool, database, meter, (SMALL, LARGE), number, lambda kind, label: jobs(
                    sessions[kind], label, config.round_claims // 2)))
                for kind, result in results.rounds[-1].items():
                    if number < config.rounds - 1 or kind == SMALL:
                        checks[kind].append(check("", database, result.answers, HOLDING))
            for number in range(config.followup_rounds):
                label = f"followup-r{number}"
                results.followup.append(measure(pool, jobs(sessions[LARGE], label, config.round_claims), label,
                                                database, meter))
        answers = results.rounds[-1][LARGE].answers + [a for run in results.followup for a in run.answers]
        checks[LARGE].append(check("", database, answers, HOLDING))
        results.checks = [combine(f"session size {size:,} ({len(checks[kind])} rounds)", checks[kind])
                          for kind, size in ((SMALL, config.small), (LARGE, config.large))]
        for kind, size in ((SMALL, config.small), (LARGE, config.large)):
            harness.say(f"  {size:>7,} students: median {results.rate(kind):9.1f} claims/s  (rounds: "
                        f"{', '.join(f'{turns[kind].claims_per_second:.0f}' for turns in results.rounds)})")
        harness.say(f"  per-round ratio {config.large:,} / {config.small:,}: median {results.ratio(LARGE, SMALL):.2f} "
                    f"({', '.join(f'{value:.2f}' for value in results.ratios(LARGE, SMALL))})\n  {config.large:,} "
                    f"students, last session continued (no target): "
                    f"{', '.join(f'{run.claims_per_second:.0f}' for run in results.followup)} claims/s")
        return results

    def targets(self, results: SizeResults) -> list[Target]:
        config = results.config
        return [Target(f"{config.large:,}-student session vs {config.small:,}-student session (median of per-round "
                       f"ratios)", results.ratio(LARGE, SMALL), 0.9, samples=len(results.rounds))]

    def observations(self, results: SizeResults) -> list[tuple[str, float]]:
        later = median([run.claims_per_second for run in results.followup])
        return [(f"{results.config.large:,}-student session continued for {len(results.followup)} more "
                 f"rounds vs fresh", ratio(later, results.rate(LARGE)))] if results.followup else []

    def panels(self, results: SizeResults) -> list[Panel]:
        return [bars("Cost against session size", "claims per second (median of rounds)",
                     [f"{results.config.small:,} students", f"{results.config.large:,} students"],
                     [results.rate(SMALL), results.rate(LARGE)])]


PART = SessionSizePart()
