"""A "Get Next" press three ways: saturated capacity, then open-loop latency at fractions of the two-trip capacity.

The kinds (``bench.harness.presses``): the no-op pair (two empty Celery round
trips, the baseline), the two-trip press (``assign_next_student`` then
``complete_student``) and the one-trip press (``complete_and_next``). First
each real kind's saturated capacity in presses per second and what stock
callers leave in Redis (``bench.harness.capacity``). Then Poisson arrivals at
``fractions`` of the two-trip capacity: at each rate the three kinds' windows
take turns (forwards, then backwards) and a turn's windows replay the same
arrivals, so load drift and the luck of the draw cancel in the ratios. Latency
runs from the scheduled arrival to a press's last answer. A window with a
failed press stops the part.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from typing import Any

from bench.harness.callers import PressJob, WindowResult, check_window, statuses, summaries, values
from bench.harness.capacity import REAL_KINDS, Capacity, CapacityConfig, measure_capacity
from bench.harness.claims import seed_session, settle
from bench.harness.core import Harness, Panel, Part, RunOptions
from bench.harness.cpu import CpuMeter
from bench.harness.desks import PROCESSES, DeskPool
from bench.harness.integrity import ENDED, IntegrityReport, check
from bench.harness.presses import ASSIGN_TASK, KINDS, NOOP_PAIR, ONE_TRIP, PRESS, FinishJob, PressRecord
from bench.harness.targets import Target, latency_summary, percentile, ratio
from callqueue.workers.store import ensure_indexes

LABELS = {NOOP_PAIR: "no-op pair", PRESS: "two trips", ONE_TRIP: "one trip"}
ONE_TRIP_VS_TWO_P50 = 0.7
ONE_TRIP_VS_TWO_P99 = 0.8
ONE_TRIP_VS_NOOP_PAIR_P50 = 1.0
CAPACITY_ONE_VS_TWO = 1.4
RETIRED_P50, RETIRED_P99 = 1.3, 1.5  # two trips' assign latency vs the no-op pair's: retired, information only


@dataclass(frozen=True)
class OpenLoopConfig:
    """``fractions`` of the two-trip capacity to offer (targets at ``target_fractions``); senders per desk
    must outnumber a desk's presses in flight; ``press_task``: ``bench.claim_only`` shows what a bare claim
    costs in the two-trip press."""

    fractions: tuple[float, ...] = (0.1, 0.3)
    target_fractions: tuple[float, ...] = (0.1, 0.3)
    window_seconds: float = 4.0
    windows_per_kind: int = 4
    warmup_seconds: float = 2.0
    desks: int = 4
    threads_per_desk: int = 16
    assistants: int = 400
    outcome: str = "no_answer"
    client_timeout_seconds: float = 10.0
    press_task: str = ASSIGN_TASK
    capacity_seconds: float = 4.0
    capacity_windows_per_kind: int = 2
    capacity_students: int = 40_000


@dataclass
class RateResult:
    """The three kinds' windows at one offered rate, and the real presses' session."""

    fraction: float
    offered_per_second: float
    session_id: str
    students: int
    windows: dict[str, list[WindowResult]] = field(default_factory=lambda: {kind: [] for kind in KINDS})

    def records(self, kind: str) -> list[PressRecord]:
        return [record for window in self.windows[kind] for record in window.records]

    def latency(self, kind: str, fraction: float, timing: str = "total_ms") -> float:
        """A percentile of a timing (by default the whole press: arrival to its last answer), windows pooled."""
        return percentile(values(self.records(kind), timing), fraction)

    def latency_ratio(self, kind: str, against: str, fraction: float, timing: str = "total_ms") -> float:
        return ratio(self.latency(kind, fraction, timing), self.latency(against, fraction, timing))

    def samples(self, *kinds: str) -> int:
        return min(len(self.records(kind)) for kind in kinds)

    def to_json(self) -> dict[str, Any]:
        return {"fraction_of_capacity": self.fraction, "offered_presses_per_second": round(self.offered_per_second, 3),
                "session_id": self.session_id, "students_seeded": self.students,
                "kinds": {kind: {**summaries(self.records(kind)), "windows": [w.to_json() for w in windows]}
                          for kind, windows in self.windows.items()},
                "ratios": {f"{kind}_vs_{against}_{name}": round(self.latency_ratio(kind, against, q), 3)
                           for kind, against in ((ONE_TRIP, PRESS), (ONE_TRIP, NOOP_PAIR), (PRESS, NOOP_PAIR))
                           for name, q in (("p50", 0.5), ("p99", 0.99))}}


@dataclass
class OpenLoopResults:
    config: OpenLoopConfig
    capacity: Capacity
    rates: list[RateResult] = field(default_factory=list)
    checks: list[IntegrityReport] = field(default_factory=list)
    result_expires_seconds: int = 0

    @property
    def capacity_presses_per_second(self) -> float:
        """The two-trip press's saturated capacity: what the open loop offers fractions of."""
        return self.capacity.per_second(PRESS)

    def to_json(self) -> dict[str, Any]:
        return {"capacity_presses_per_second": round(self.capacity_presses_per_second, 3),
                "capacity": self.capacity.to_json(), "result_expires_seconds": self.result_expires_seconds,
                "rates": [rate.to_json() for rate in self.rates]}


class OpenLoopPart(Part):
    name = "open-loop"
    description = ("saturated capacity of the two-trip and one-trip press, then their latency and the no-op "
                   "pair's under Poisson arrivals at 10/30% of the two-trip capacity")
    sizes = OpenLoopConfig
    quick = {"window_seconds": 2.0, "windows_per_kind": 2, "warmup_seconds": 1.0, "capacity_seconds": 2.0,
             "capacity_windows_per_kind": 1, "capacity_students": 20_000}

    def config(self, options: RunOptions, **chosen: Any) -> OpenLoopConfig:
        return super().config(options, press_task=options.press_task)

    def run(self, config: OpenLoopConfig, harness: Harness) -> OpenLoopResults:
        database = harness.mongo[harness.servers.settings.mongo_db]
        capacity_session = f"capacity-{uuid.uuid4().hex[:6]}"
        seed_session(database, capacity_session, config.capacity_students)
        ensure_indexes(database)
        settle(database)
        environ = harness.servers.env_with()
        with harness.servers.worker(harness.options.workers) as worker, harness.desks(config.desks, PROCESSES) as pool:
            meter = harness.servers.cpu_meter(worker, pool.pids)
            capacity = measure_capacity(harness, pool, meter, environ, CapacityConfig(
                config.desks, config.threads_per_desk, config.warmup_seconds, config.capacity_seconds,
                config.capacity_windows_per_kind, config.client_timeout_seconds, config.outcome, config.press_task),
                capacity_session)
            results = OpenLoopResults(config, capacity, result_expires_seconds=harness.servers.settings
                                      .result_expires_seconds)
            if not results.capacity_presses_per_second > 0:
                raise ValueError(f"the two-trip capacity must be positive, got {results.capacity_presses_per_second!r}")
            plans, warmup = _plans(config, results.capacity_presses_per_second)
            for plan in (warmup, *plans):
                seed_session(database, plan.session_id, plan.students)
            settle(database)
            harness.say(f"  open loop at {', '.join(f'{p.fraction:.0%} = {p.offered_per_second:.1f}/s' for p in plans)}"
                        f" of the two-trip capacity; {config.desks} desks x {config.threads_per_desk} senders, "
                        f"{config.assistants} assistants per kind; {config.windows_per_kind} x "
                        f"{config.window_seconds:g}s windows per kind and rate")
            answers = [answer for kind in KINDS for record in _window(pool, meter, environ, config, warmup, kind,
                                                                      config.warmup_seconds, "warm-up").records
                       if (answer := record.answer) is not None]
            for rate in plans:
                for turn in range(config.windows_per_kind):
                    for kind in (KINDS if turn % 2 == 0 else KINDS[::-1]):
                        rate.windows[kind].append(_window(pool, meter, environ, config, rate, kind,
                                                          config.window_seconds, f"turn{turn}"))
                results.rates.append(rate)
                for kind in KINDS:
                    harness.say(_rate_line(rate, kind))
            finished = pool.run([FinishJob(environ, config.client_timeout_seconds, config.outcome)] * config.desks)
        one_trip = [answer for desk in finished.results for answer in desk]
        two_trip = [r.answer for rate in results.rates for r in rate.records(PRESS) if r.answer is not None]
        results.checks = [check("open loop: capacity and every rate, both kinds", database,
                                [*answers, *two_trip, *capacity.two_trip_answers, *one_trip], ENDED)]
        return results

    def targets(self, results: OpenLoopResults) -> list[Target]:
        """Capacity, one trip vs two; at each target rate the one-trip press's p50/p99 against the two-trip
        press's and its p50 against the no-op pair's, windows pooled."""
        capacity = results.capacity
        goals = [Target("saturated capacity, one-trip press (complete_and_next) vs two-trip press "
                        f"({capacity.per_second(ONE_TRIP):.0f} vs {capacity.per_second(PRESS):.0f} presses/s)",
                        ratio(capacity.per_second(ONE_TRIP), capacity.per_second(PRESS)), CAPACITY_ONE_VS_TWO,
                        samples=min(len(capacity.latencies_ms[kind]) for kind in REAL_KINDS))]
        for rate in _target_rates(results):
            name = (f"open loop at {rate.fraction:.0%} of two-trip capacity ({rate.offered_per_second:.1f} "
                    f"presses/s), one-trip press")
            samples = rate.samples(*KINDS)
            goals += [Target(f"{name} p50 vs two-trip p50", rate.latency_ratio(ONE_TRIP, PRESS, 0.5),
                             ONE_TRIP_VS_TWO_P50, at_least=False, samples=samples),
                      Target(f"{name} p99 vs two-trip p99", rate.latency_ratio(ONE_TRIP, PRESS, 0.99),
                             ONE_TRIP_VS_TWO_P99, at_least=False, samples=samples),
                      Target(f"{name} p50 vs no-op pair p50", rate.latency_ratio(ONE_TRIP, NOOP_PAIR, 0.5),
                             ONE_TRIP_VS_NOOP_PAIR_P50, at_least=False, samples=samples)]
        return goals

    def observations(self, results: OpenLoopResults) -> list[tuple[str, float]]:
        """The retired targets (two trips' assign latency vs the no-op pair's, were <= 1.3x p50 and <= 1.5x
        p99) and the whole two-trip press against the no-op pair."""
        lines = []
        for rate in _target_rates(results):
            at = f"open loop at {rate.fraction:.0%}"
            lines += [(f"{at}, two-trip assign p50 vs no-op pair (retired target, was <= {RETIRED_P50}x)",
                       rate.latency_ratio(PRESS, NOOP_PAIR, 0.5, "assign_ms")),
                      (f"{at}, two-trip assign p99 vs no-op pair (retired target, was <= {RETIRED_P99}x)",
                       rate.latency_ratio(PRESS, NOOP_PAIR, 0.99, "assign_ms")),
                      (f"{at}, whole two-trip press p50 vs no-op pair", rate.latency_ratio(PRESS, NOOP_PAIR, 0.5)),
                      (f"{at}, whole one-trip press p99 vs no-op pair",
                       rate.latency_ratio(ONE_TRIP, NOOP_PAIR, 0.99))]
        cpu = [results.capacity.cpu(kind) for kind in REAL_KINDS]
        if all(cpu):
            lines.append(("CPU per press, two-trip / one-trip (all components, saturated)",
                          ratio(*(sum(use.per_operation_ms.values()) for use in cpu))))
        return lines

    def panels(self, results: OpenLoopResults) -> list[Panel]:
        return [lambda axes: _draw(axes, results)]


def _target_rates(results: OpenLoopResults) -> list[RateResult]:
    return [rate for rate in results.rates
            if any(math.isclose(rate.fraction, wanted) for wanted in results.config.target_fractions)]


def _plans(config: OpenLoopConfig, capacity: float) -> tuple[list[RateResult], RateResult]:
    """A session per rate with students for every expected press of both real kinds and a wide margin;
    and the warm-up's."""
    tag = uuid.uuid4().hex[:6]
    plans = [RateResult(fraction, fraction * capacity, f"openloop-{tag}-{round(fraction * 100)}",
                        _students(2 * fraction * capacity * config.window_seconds * config.windows_per_kind)
                        + config.assistants)
             for fraction in config.fractions]
    top = max(plans, key=lambda plan: plan.offered_per_second)
    return plans, RateResult(top.fraction, top.offered_per_second, f"openloop-{tag}-warm",
                             _students(2 * top.offered_per_second * config.warmup_seconds) + config.assistants)


def _students(expected_presses: float) -> int:
    """Enough students that a Poisson count of presses runs short with negligible chance."""
    return math.ceil(expected_presses + 6 * math.sqrt(expected_presses)) + 100


def _window(pool: DeskPool, meter: CpuMeter, environ: dict[str, str], config: OpenLoopConfig, plan: RateResult,
            kind: str, seconds: float, turn: str) -> WindowResult:
    """One window: every desk its share of the rate; done when every scheduled press is answered."""
    prefix = "ot" if kind == ONE_TRIP else "oa"  # one-trip assistants hold a student between presses
    jobs = [PressJob(environ, kind, plan.session_id,
                     tuple(f"{prefix}-{index:04d}" for index in range(desk, config.assistants, config.desks)),
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
    total = latency_summary(values(records, "total_ms"))
    busy = [window.cpu.machine_busy_share for window in windows if window.cpu]
    compared = "" if kind == NOOP_PAIR else (f" = {result.latency_ratio(kind, NOOP_PAIR, 0.5):.2f}x / "
                                             f"{result.latency_ratio(kind, NOOP_PAIR, 0.99):.2f}x the no-op pair's")
    if kind == ONE_TRIP:
        compared += (f", {result.latency_ratio(kind, PRESS, 0.5):.2f}x / {result.latency_ratio(kind, PRESS, 0.99):.2f}x"
                     " the two-trip press's")
    return (f"  {result.fraction:>4.0%} {result.offered_per_second:6.1f}/s {LABELS[kind]:<11} {len(records):5d} "
            f"presses ({len(records) / sum(window.seconds for window in windows):.1f}/s): p50 {total['p50_ms']:.1f} "
            f"p95 {total['p95_ms']:.1f} p99 {total['p99_ms']:.1f} max {total['max_ms']:.1f} ms{compared}; "
            f"generator lag p99 {percentile(values(records, 'lag_ms'), 0.99):.1f} ms, waited for a sender "
            f"{sum(r.waited_for_sender for r in records)}; {statuses(records)}; "
            f"machine busy {sum(busy) / max(len(busy), 1):.0%}")


def _draw(axes: Any, results: OpenLoopResults) -> None:
    loads = [rate.offered_per_second for rate in results.rates]
    for kind, color in ((NOOP_PAIR, "tab:gray"), (PRESS, "tab:blue"), (ONE_TRIP, "tab:green")):
        for fraction, style in ((0.5, "-"), (0.99, "--")):
            axes.plot(loads, [rate.latency(kind, fraction) for rate in results.rates], linestyle=style, marker="o",
                      color=color, label=f"{LABELS[kind]}, p{round(fraction * 100)}")
    axes.set_xticks(loads, [f"{rate.offered_per_second:.1f}/s\n{rate.fraction:.0%}" for rate in results.rates])
    axes.set(ylim=(0, None), xlabel="offered presses/s (share of the two-trip capacity)",
             ylabel="scheduled arrival to last answer, ms", title="Open loop: a press three ways")
    axes.legend(fontsize=8)


PART = OpenLoopPart()
