"""Open-loop latency of a "Get Next" press (``bench.harness.callers``) at fractions of the no-op pair's capacity.

The capacity is saturated no-op calls/s over two, from this run's Celery
part (or measured first when it did not run). At each rate the two kinds'
windows take turns (no-op, press, press, no-op, ...) and a turn's windows
replay the same arrivals, so load drift and the luck of the draw cancel in
the ratios. A window with a failed press stops the part.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from typing import Any

from bench.harness.callers import (
    ASSIGN_TASK, NOOP_PAIR, PRESS, PressJob, PressRecord, WindowResult, check_window, statuses, summaries, values,
)
from bench.harness.claims import seed_session, settle
from bench.harness.core import Harness, Panel, Part, RunOptions
from bench.harness.cpu import CpuMeter
from bench.harness.desks import PROCESSES, DeskPool
from bench.harness.integrity import ENDED, IntegrityReport, check
from bench.harness.targets import Target, latency_summary, percentile, ratio
from bench.parts.celery import CeleryConfig, measure_windows
from bench.tasks import NOOP_TASK
from workers.store import ensure_indexes

LABELS = {NOOP_PAIR: "no-op pair", PRESS: "assign + complete"}
P50_BOUND = 1.3
P99_BOUND = 1.5


@dataclass(frozen=True)
class OpenLoopConfig:
    """``fractions`` of the capacity to offer (targets at ``target_fractions``); senders per desk must
    outnumber a desk's presses in flight; ``press_task``: ``bench.claim_only`` shows what a bare claim costs."""

    fractions: tuple[float, ...] = (0.1, 0.3, 0.5)
    target_fractions: tuple[float, ...] = (0.1, 0.3)
    window_seconds: float = 4.0
    windows_per_kind: int = 4
    warmup_seconds: float = 2.0
    desks: int = 4
    threads_per_desk: int = 16
    assistants: int = 1000
    outcome: str = "no_answer"
    client_timeout_seconds: float = 10.0
    press_task: str = ASSIGN_TASK


@dataclass
class RateResult:
    """Both kinds' windows at one offered rate, and the real presses' session."""

    fraction: float
    offered_per_second: float
    session_id: str
    students: int
    windows: dict[str, list[WindowResult]] = field(default_factory=lambda: {NOOP_PAIR: [], PRESS: []})

    def records(self, kind: str) -> list[PressRecord]:
        return [record for window in self.windows[kind] for record in window.records]

    def latency(self, kind: str, fraction: float) -> float:
        """A percentile of the press latency (scheduled arrival to assign answer), windows pooled."""
        return percentile(values(self.records(kind), "assign_ms"), fraction)

    def latency_ratio(self, fraction: float) -> float:
        return ratio(self.latency(PRESS, fraction), self.latency(NOOP_PAIR, fraction))

    def to_json(self) -> dict[str, Any]:
        complete_p99 = [percentile(values(self.records(kind), "complete_ms"), 0.99) for kind in (PRESS, NOOP_PAIR)]
        return {"fraction_of_capacity": self.fraction, "offered_presses_per_second": round(self.offered_per_second, 3),
                "session_id": self.session_id, "students_seeded": self.students,
                "kinds": {kind: {**summaries(self.records(kind)), "windows": [w.to_json() for w in windows]}
                          for kind, windows in self.windows.items()},
                "ratios_press_vs_noop_pair": {
                    "assign_p50": round(self.latency_ratio(0.5), 3), "assign_p95": round(self.latency_ratio(0.95), 3),
                    "assign_p99": round(self.latency_ratio(0.99), 3),
                    "complete_p99": round(ratio(*complete_p99), 3)}}


@dataclass
class OpenLoopResults:
    config: OpenLoopConfig
    capacity_presses_per_second: float
    rates: list[RateResult] = field(default_factory=list)
    checks: list[IntegrityReport] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"capacity_presses_per_second": round(self.capacity_presses_per_second, 3),
                "rates": [rate.to_json() for rate in self.rates]}


class OpenLoopPart(Part):
    name = "open-loop"
    description = "press latency under Poisson arrivals at 10/30/50% of the no-op pair's capacity"
    sizes, quick = OpenLoopConfig, {"window_seconds": 2.0, "windows_per_kind": 2, "warmup_seconds": 1.0}

    def config(self, options: RunOptions, **chosen: Any) -> OpenLoopConfig:
        return super().config(options, press_task=options.press_task)

    def run(self, config: OpenLoopConfig, harness: Harness) -> OpenLoopResults:
        capacity = _capacity(harness, config) / 2
        if not capacity > 0:
            raise ValueError(f"the no-op pair's capacity must be positive, got {capacity!r}")
        database = harness.mongo[harness.servers.settings.mongo_db]
        plans, warmup = _plans(config, capacity)
        for plan in (warmup, *plans):
            seed_session(database, plan.session_id, plan.students)
        ensure_indexes(database)
        settle(database)
        rates = ", ".join(f"{plan.fraction:.0%} = {plan.offered_per_second:.1f}/s" for plan in plans)
        harness.say(f"  {config.press_task} then complete at {rates} of the no-op pair's capacity ({capacity:.1f} "
                    f"presses/s); {config.desks} desks x {config.threads_per_desk} senders, {config.assistants} "
                    f"assistants; {config.windows_per_kind} x {config.window_seconds:g}s windows per kind and rate "
                    f"(no-op, press, press, no-op, ...)")
        results = OpenLoopResults(config, capacity)
        environ, warm_answers = harness.servers.env_with(), []
        with harness.servers.worker(harness.options.workers) as worker, harness.desks(config.desks, PROCESSES) as pool:
            meter = harness.servers.cpu_meter(worker, pool.pids)
            for kind in (NOOP_PAIR, PRESS):
                window = _window(pool, meter, environ, config, warmup, kind, config.warmup_seconds, "warm-up")
                warm_answers += [record.answer for record in window.records if record.answer is not None]
            for rate in plans:
                for turn in range(config.windows_per_kind):
                    for kind in ((NOOP_PAIR, PRESS) if turn % 2 == 0 else (PRESS, NOOP_PAIR)):
                        rate.windows[kind].append(_window(pool, meter, environ, config, rate, kind,
                                                          config.window_seconds, f"turn{turn}"))
                results.rates.append(rate)
                for kind in (NOOP_PAIR, PRESS):
                    harness.say(_rate_line(rate, kind))
        results.checks = [check("open loop warm-up", database, warm_answers, ENDED)]
        results.checks += [check(f"open loop {rate.fraction:.0%} of capacity", database,
                                 [r.answer for r in rate.records(PRESS) if r.answer is not None], ENDED)
                           for rate in results.rates]
        return results

    def targets(self, results: OpenLoopResults) -> list[Target]:
        """At each target rate: the press's p50 and p99 latency against the no-op pair's, windows pooled."""
        goals = []
        for rate in results.rates:
            if any(math.isclose(rate.fraction, wanted) for wanted in results.config.target_fractions):
                name = (f"open loop at {rate.fraction:.0%} of no-op capacity ({rate.offered_per_second:.1f} "
                        f"presses/s), {results.config.press_task} latency from scheduled arrival vs no-op pair")
                samples = min(len(rate.records(PRESS)), len(rate.records(NOOP_PAIR)))
                goals += [Target(f"{name}, p50", rate.latency_ratio(0.5), P50_BOUND, at_least=False, samples=samples),
                          Target(f"{name}, p99", rate.latency_ratio(0.99), P99_BOUND, at_least=False, samples=samples)]
        return goals

    def panels(self, results: OpenLoopResults) -> list[Panel]:
        return [lambda axes: _draw(axes, results)]


def _capacity(harness: Harness, config: OpenLoopConfig) -> float:
    """Saturated no-op calls/s from this run's Celery part, or measured now (one short no-op window)."""
    celery = harness.results.get("celery")
    if celery is not None:
        return celery.noop_capacity()
    harness.say("  (no Celery part in this run: measuring the no-op capacity first)")
    return measure_windows(harness, CeleryConfig(seconds=3.0, pairs=1, warmup_seconds=1.0),
                           (NOOP_TASK,)).noop_capacity()


def _plans(config: OpenLoopConfig, capacity: float) -> tuple[list[RateResult], RateResult]:
    """A session per rate with students for every expected press and a wide margin; and the warm-up's."""
    tag = uuid.uuid4().hex[:6]
    plans = [RateResult(fraction, fraction * capacity, f"openloop-{tag}-{round(fraction * 100)}",
                        _students(fraction * capacity * config.window_seconds * config.windows_per_kind))
             for fraction in config.fractions]
    top = max(plans, key=lambda plan: plan.offered_per_second)
    return plans, RateResult(top.fraction, top.offered_per_second, f"openloop-{tag}-warm",
                             _students(top.offered_per_second * config.warmup_seconds))


def _students(expected_presses: float) -> int:
    """Enough students that a Poisson count of presses runs short with negligible chance."""
    return math.ceil(expected_presses + 6 * math.sqrt(expected_presses)) + 100


def _window(pool: DeskPool, meter: CpuMeter, environ: dict[str, str], config: OpenLoopConfig, plan: RateResult,
            kind: str, seconds: float, turn: str) -> WindowResult:
    """One window: every desk its share of the rate; done when every scheduled press is answered."""
    jobs = [PressJob(environ, kind, plan.session_id,
                     tuple(f"oa-{index:04d}" for index in range(desk, config.assistants, config.desks)),
                     plan.offered_per_second / config.desks, seconds, f"openloop:{plan.fraction}:{turn}:{desk}",
                     config.threads_per_desk, config.client_timeout_seconds, config.outcome, config.press_task)
            for desk in range(config.desks)]
    measurement = pool.run(jobs, on_go=meter.start)
    records = [record for run in measurement.results for record in run.records]
    window = WindowResult(f"{kind}-{round(plan.fraction * 100)}-{turn}", plan.offered_per_second, seconds,
                          max(run.finished for run in measurement.results) - measurement.started, records,
                          meter.stop(len(records)))
    check_window(window)
    return window


def _rate_line(result: RateResult, kind: str) -> str:
    records, windows = result.records(kind), result.windows[kind]
    assign = latency_summary(values(records, "assign_ms"))
    complete = latency_summary(values(records, "complete_ms"))
    busy = [window.cpu.machine_busy_share for window in windows if window.cpu]
    compared = "" if kind == NOOP_PAIR else (f" = {result.latency_ratio(0.5):.2f}x / "
                                             f"{result.latency_ratio(0.99):.2f}x the no-op pair's p50 / p99")
    return (f"  {result.fraction:>4.0%} {result.offered_per_second:6.1f}/s {LABELS[kind]:<17} {len(records):5d} "
            f"presses ({len(records) / sum(window.seconds for window in windows):.1f}/s): assign p50 "
            f"{assign['p50_ms']:.1f} "
            f"p95 {assign['p95_ms']:.1f} p99 {assign['p99_ms']:.1f} max {assign['max_ms']:.1f} ms{compared}; "
            f"complete p50 {complete['p50_ms']:.1f} p99 {complete['p99_ms']:.1f} ms; generator lag p99 "
            f"{percentile(values(records, 'lag_ms'), 0.99):.1f} ms, waited for a sender "
            f"{sum(r.waited_for_sender for r in records)}; {statuses(records)}; "
            f"machine busy {sum(busy) / max(len(busy), 1):.0%}")


def _draw(axes: Any, results: OpenLoopResults) -> None:
    loads = [rate.offered_per_second for rate in results.rates]
    for kind, color in ((NOOP_PAIR, "tab:gray"), (PRESS, "tab:blue")):
        for fraction, style in ((0.5, "-"), (0.99, "--")):
            axes.plot(loads, [rate.latency(kind, fraction) for rate in results.rates], linestyle=style, marker="o",
                      color=color, label=f"{LABELS[kind]}, p{round(fraction * 100)}")
    axes.set_xticks(loads, [f"{rate.offered_per_second:.1f}/s\n{rate.fraction:.0%}" for rate in results.rates])
    axes.set(ylim=(0, None), xlabel="offered presses/s (share of the no-op pair's capacity)",
             ylabel="scheduled arrival to assign answer, ms", title="Open loop: Poisson presses, assign then complete")
    axes.legend(fontsize=8)


PART = OpenLoopPart()
