"""The claim engine without Celery: 1, 8 and 32 clients racing on one session, against the seed-style query.

Fresh identical data for every measurement; ours repeated and interleaved,
the seed-style query (``bench.harness.data``) once per client count, in its
own database with only its own index.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.harness.claims import OURS, SEED_STYLE, Claims, claim_jobs, fresh, measure
from bench.harness.core import Harness, Panel, Part
from bench.harness.integrity import HOLDING, check
from bench.harness.targets import Target, median, percentile, ratio

DATABASES = {OURS: "bench_engine", SEED_STYLE: "bench_seed_style"}
SESSION = "engine-session"


@dataclass(frozen=True)
class EngineConfig:
    students: int = 20_000
    clients: tuple[int, ...] = (1, 8, 32)
    seconds: float = 3.0
    repeats: int = 3
    seed_style_seconds: float = 8.0


@dataclass
class EngineResults:
    runs: dict[str, dict[int, list[Claims]]]
    checks: list[Any]

    def rate(self, kind: str, clients: int) -> float:
        """Median claims/s of ``kind`` with ``clients`` clients over the repeats."""
        return median([run.claims_per_second for run in self.runs.get(kind, {}).get(clients, [])])

    def to_json(self) -> dict[str, Any]:
        return {"runs": {kind: {str(clients): [run.to_json() for run in runs] for clients, runs in by_clients.items()}
                         for kind, by_clients in self.runs.items()},
                "median_claims_per_second": {kind: {str(clients): round(self.rate(kind, clients), 1) for clients in
                                                    by_clients} for kind, by_clients in self.runs.items()}}


class EnginePart(Part):
    name = "engine"
    description = "claims/s by racing clients without Celery, ours against the seed-style query"
    sizes, quick = EngineConfig, {"seconds": 1.5, "repeats": 1, "seed_style_seconds": 3.0}

    def run(self, config: EngineConfig, harness: Harness) -> EngineResults:
        harness.say(f"  {config.students:,} students, clients {list(config.clients)} as {harness.options.engine_mode}, "
                    f"{config.repeats} repeat(s)")
        results = EngineResults({}, [])
        runs = [(OURS, clients, f"ours-r{repeat}-c{clients}") for repeat in range(config.repeats)
                for clients in config.clients]
        runs += [(SEED_STYLE, clients, f"seed-c{clients}") for clients in config.clients]
        with harness.desks(max(config.clients)) as pool:
            meter = harness.servers.cpu_meter(None, pool.pids)
            for kind, clients, label in runs:
                database = harness.mongo[DATABASES[kind]]
                fresh(database, {SESSION: config.students}, seed_style=kind == SEED_STYLE)
                seats = [(SESSION, f"{label}-c{index}", ()) for index in range(clients)]
                seconds = config.seconds if kind == OURS else config.seed_style_seconds
                run = measure(pool, claim_jobs(harness.servers.mongo.url, database.name, seats, clients, label,
                                               seconds=seconds, kind=kind), label, database, meter)
                results.runs.setdefault(kind, {}).setdefault(clients, []).append(run)
                results.checks.append(check(f"engine {kind}, {clients} clients ({label})", database, run.answers,
                                            HOLDING))
                harness.say(f"  {kind:<10} {clients:>3} clients: {run.claims_per_second:9.1f} claims/s  (p50 "
                            f"{percentile(run.latencies_ms, 0.5):.2f} ms, p99 {percentile(run.latencies_ms, 0.99):.2f}"
                            f" ms; {run.cpu.line('claim') if run.cpu else ''})")
        return results

    def targets(self, results: EngineResults) -> list[Target]:
        samples = min((run.claims for runs in results.runs.get(OURS, {}).values() for run in runs), default=0)
        return [Target("engine, 8 clients vs seed-style query, 8 clients",
                       ratio(results.rate(OURS, 8), results.rate(SEED_STYLE, 8)), 10.0, samples=samples),
                Target("engine, 8 clients vs its own single client",
                       ratio(results.rate(OURS, 8), results.rate(OURS, 1)), 1.0, samples=samples)]

    def panels(self, results: EngineResults) -> list[Panel]:
        return [lambda axes: _draw(axes, results)]


def _draw(axes: Any, results: EngineResults) -> None:
    for kind, label, marker in ((OURS, "ours (claim index)", "o"), (SEED_STYLE, "seed-style query", "s")):
        clients = sorted(results.runs.get(kind, {}))
        rates = [max(results.rate(kind, count), 0.01) for count in clients]
        axes.plot(clients, rates, marker=marker, label=label)
        for count, rate in zip(clients, rates):
            axes.annotate(f"{rate:.0f}" if rate >= 10 else f"{rate:.2f}", (count, rate), textcoords="offset points",
                          xytext=(0, 6), ha="center", fontsize=8)
    axes.set_xscale("log", base=2)
    axes.set(yscale="log", xlabel="racing clients (no Celery)", ylabel="claims per second (log)",
             title="Claim engine, 20,000-student session")
    axes.legend()


PART = EnginePart()
