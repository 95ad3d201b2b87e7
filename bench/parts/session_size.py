"""Cost against session size: claims/s from a 1,000- and a 100,000-student session, both fresh each round.

Both sessions start every round with no earlier claims: claimed students
leave deleted keys at the head of the claim index that later claims step
over until WiredTiger rewrites the page, so a session with more recent claims
is slower whatever its size (docs/performance.md). Within a round the
sessions take turns A-B-B-A (half the claims each time), which cancels a
steady drift in the machine's other load; the target uses the median of the
per-round ratios. Then the last large session is continued without
reseeding, for reference (no target).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from bench.harness.claims import Claims, claim_jobs, measure, merge
from bench.harness.core import Harness, Panel, Part, RunOptions
from bench.harness.data import fresh
from bench.harness.integrity import HOLDING, IntegrityReport, check, combine
from bench.harness.stats import median, ratio
from bench.harness.targets import Target

DATABASE = "bench_session_size"


@dataclass(frozen=True)
class SizeConfig:
    small: int = 1_000
    large: int = 100_000
    clients: int = 8
    round_claims: int = 500
    rounds: int = 9
    followup_rounds: int = 4
    mode: str = "threads"


@dataclass
class SizeResults:
    config: SizeConfig
    rounds: dict[int, list[Claims]] = field(default_factory=dict)
    followup: list[Claims] = field(default_factory=list)
    checks: list[IntegrityReport] = field(default_factory=list)

    def round_ratios(self) -> list[float]:
        """Large-session claims/s over small-session claims/s, round by round."""
        return [ratio(large.claims_per_second, small.claims_per_second)
                for small, large in zip(self.rounds.get(self.config.small, []), self.rounds.get(self.config.large, []))]

    def rate(self, size: int) -> float:
        return median([run.claims_per_second for run in self.rounds.get(size, [])])

    def to_json(self) -> dict[str, Any]:
        return {"rounds": {str(size): [run.to_json() for run in runs] for size, runs in self.rounds.items()},
                "median_claims_per_second": {str(size): round(self.rate(size), 1) for size in self.rounds},
                "round_ratios": [round(value, 3) for value in self.round_ratios()],
                "followup": [run.to_json() for run in self.followup]}


class SessionSizePart(Part):
    name = "session-size"
    description = "claims/s from a 1,000- against a 100,000-student session, A-B-B-A rounds"

    def config(self, options: RunOptions) -> SizeConfig:
        config = SizeConfig(mode=options.engine_mode)
        return replace(config, rounds=3, followup_rounds=1) if options.quick else config

    def run(self, config: SizeConfig, harness: Harness) -> SizeResults:
        harness.say(f"  {config.small:,} vs {config.large:,} pending students, {config.clients} clients, "
                    f"{config.round_claims} claims per session per round (A-B-B-A), {config.rounds} rounds")
        results = SizeResults(config)
        database = harness.mongo[DATABASE]
        url = harness.servers.mongo.url
        checks: dict[int, list[IntegrityReport]] = {}
        with harness.desks(config.clients, config.mode) as pool:
            meter = harness.servers.cpu_meter(None, pool.pids)
            for number in range(config.rounds):
                sessions = {config.small: f"small-{number}", config.large: f"large-{number}"}
                fresh(database, {session_id: size for size, session_id in sessions.items()})
                order = sorted(sessions, reverse=number % 2 == 1)
                halves: dict[int, list[Claims]] = {size: [] for size in order}
                for turn, size in enumerate(order + order[::-1]):
                    label = f"size{size}-r{number}-t{turn}"
                    seats = [(sessions[size], f"{label}-c{index}", ()) for index in range(config.clients)]
                    halves[size].append(measure(pool, claim_jobs(url, DATABASE, seats, config.clients, label,
                                                                 config.round_claims // 2), label, database, meter))
                for size, parts in halves.items():
                    results.rounds.setdefault(size, []).append(merge(f"size{size}-r{number}", parts))
                    if number < config.rounds - 1 or size != config.large:
                        checks.setdefault(size, []).append(check("", database, results.rounds[size][-1].answers,
                                                                 HOLDING))
            last = sessions[config.large]
            for number in range(config.followup_rounds):
                label = f"followup-r{number}"
                seats = [(last, f"{label}-c{index}", ()) for index in range(config.clients)]
                results.followup.append(measure(pool, claim_jobs(url, DATABASE, seats, config.clients, label,
                                                                 config.round_claims), label, database, meter))
        answers = results.rounds[config.large][-1].answers + [a for run in results.followup for a in run.answers]
        checks.setdefault(config.large, []).append(check("", database, answers, HOLDING))
        results.checks = [combine(f"session size {size:,} ({len(reports)} rounds)", reports)
                          for size, reports in sorted(checks.items())]
        self._say(results, harness)
        return results

    def _say(self, results: SizeResults, harness: Harness) -> None:
        config = results.config
        for size, runs in sorted(results.rounds.items()):
            harness.say(f"  {size:>7,} students: median {results.rate(size):9.1f} claims/s  "
                        f"(rounds: {', '.join(f'{run.claims_per_second:.0f}' for run in runs)})")
        pairs = results.round_ratios()
        harness.say(f"  per-round ratio {config.large:,} / {config.small:,}: median {median(pairs):.2f} "
                    f"({', '.join(f'{value:.2f}' for value in pairs)})")
        if results.followup:
            harness.say(f"  {config.large:,} students, last session continued (no target): "
                        f"{', '.join(f'{run.claims_per_second:.0f}' for run in results.followup)} claims/s")

    def targets(self, results: SizeResults) -> list[Target]:
        config = results.config
        return [Target(f"{config.large:,}-student session vs {config.small:,}-student session (median of per-round "
                       f"ratios)", median(results.round_ratios()), 0.9, samples=len(results.round_ratios()))]

    def observations(self, results: SizeResults) -> list[tuple[str, float]]:
        if not results.followup:
            return []
        later = median([run.claims_per_second for run in results.followup])
        return [(f"{results.config.large:,}-student session continued for {len(results.followup)} more rounds vs "
                 f"fresh", ratio(later, results.rate(results.config.large)))]

    def panels(self, results: SizeResults) -> list[Panel]:
        return [lambda axes: _draw(axes, results)]


def _draw(axes: Any, results: SizeResults) -> None:
    """Median claims/s for each session size."""
    sizes = sorted(results.rounds)
    bars = axes.bar([f"{size:,}" for size in sizes], [results.rate(size) for size in sizes], color="tab:blue")
    axes.bar_label(bars, fmt="%.0f")
    axes.set_xlabel("pending students in the session")
    axes.set_ylabel("claims per second (median of rounds)")
    axes.set_title("Cost against session size")


PART = SessionSizePart()
