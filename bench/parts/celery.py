"""Through Celery: the no-op, the claim-only probe and ``assign_next_student`` on the same worker.

64 closed-loop callers call each task in windows that take turns (noop,
probe, assign, assign, probe, noop, ...) after a warm-up. The no-op is the
Celery round trip alone; the probe is the store's one claim and nothing
else, the best any claim through Celery could do here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bench.harness.callers import ASSIGN_TASK, CallResult, combine, measure_calls
from bench.harness.claims import fresh, seed_session, settle
from bench.harness.core import Harness, Panel, Part, RunOptions
from bench.harness.desks import PROCESSES
from bench.harness.integrity import HOLDING, IntegrityReport, check
from bench.harness.targets import Target, latency_summary, percentile, ratio
from bench.tasks import CLAIM_ONLY_TASK, NOOP_TASK

TASKS = (NOOP_TASK, CLAIM_ONLY_TASK, ASSIGN_TASK)
EXPECTED = {NOOP_TASK: "noop", CLAIM_ONLY_TASK: "assigned", ASSIGN_TASK: "assigned"}
SESSIONS = {ASSIGN_TASK: "celery-assign", CLAIM_ONLY_TASK: "celery-claim-only", NOOP_TASK: "celery-noop"}


@dataclass(frozen=True)
class CeleryConfig:
    callers: int = 64
    caller_processes: int = 4
    students: int = 20_000
    seconds: float = 4.0
    pairs: int = 4
    warmup_seconds: float = 2.0


@dataclass
class CeleryResults:
    windows: dict[str, list[CallResult]] = field(default_factory=dict)
    checks: list[IntegrityReport] = field(default_factory=list)

    def total(self, task: str) -> CallResult | None:
        """Every measured window of ``task`` as one (None when it has none)."""
        return combine(self.windows[task]) if self.windows.get(task) else None

    def noop_capacity(self) -> float:
        """Saturated no-op calls/s: what the open loop offers fractions of (over two, for a pair)."""
        total = self.total(NOOP_TASK)
        return total.per_second if total else float("nan")

    def to_json(self) -> dict[str, Any]:
        return {task: {"windows": [window.to_json() for window in windows], "total": combine(windows).to_json()}
                for task, windows in self.windows.items()}


class CeleryPart(Part):
    name = "celery"
    description = "no-op, claim-only probe and assign_next_student through Celery, 64 closed-loop callers"
    sizes, quick = CeleryConfig, {"seconds": 3.0, "pairs": 1, "warmup_seconds": 1.0}

    def config(self, options: RunOptions, **chosen: Any) -> CeleryConfig:
        return super().config(options, caller_processes=options.caller_processes or 4)

    def run(self, config: CeleryConfig, harness: Harness) -> CeleryResults:
        options = harness.options.workers
        harness.say(f"  {config.callers} callers over {config.caller_processes} processes; worker pool "
                    f"{options.pool} x{options.concurrency}, prefetch multiplier "
                    f"{options.prefetch_multiplier or 'from settings'}; {config.pairs} x {config.seconds:g}s "
                    f"windows per task")
        return measure_windows(harness, config)

    def targets(self, results: CeleryResults) -> list[Target]:
        noop, probe, assign = (combine(results.windows[task]) for task in TASKS)
        return [Target("Celery throughput, assign_next_student vs the claim-only probe (what the task adds)",
                       ratio(assign.per_second, probe.per_second), 0.95, samples=min(assign.calls, probe.calls)),
                Target("Celery p99 latency, assign_next_student vs no-op", ratio(_p99(assign), _p99(noop)), 1.5,
                       at_least=False, samples=min(assign.calls, noop.calls))]

    def observations(self, results: CeleryResults) -> list[tuple[str, float]]:
        noop, probe, assign = (combine(results.windows[task]) for task in TASKS)
        return [("Celery throughput, assign_next_student vs no-op (retired target, was >= 0.9x: the claim's own "
                 "MongoDB round trip does not fit in 10% of a no-op round trip on 2 shared cores)",
                 ratio(assign.per_second, noop.per_second)),
                ("Celery CPU cost per call, no-op / assign_next_student", ratio(_cpu(noop), _cpu(assign))),
                ("Celery throughput, claim-only probe vs no-op", ratio(probe.per_second, noop.per_second)),
                ("Celery CPU cost per call, no-op / claim-only probe", ratio(_cpu(noop), _cpu(probe))),
                ("Celery CPU cost per call, claim-only probe / assign_next_student", ratio(_cpu(probe), _cpu(assign)))]

    def panels(self, results: CeleryResults) -> list[Panel]:
        return [lambda axes: _draw(axes, results)]


def measure_windows(harness: Harness, config: CeleryConfig, tasks: tuple[str, ...] = TASKS) -> CeleryResults:
    """Warm-up, then interleaved windows of ``tasks`` on one worker; the claimed students audited."""
    servers, results = harness.servers, CeleryResults()
    database = harness.mongo[servers.settings.mongo_db]
    fresh(database, {SESSIONS[ASSIGN_TASK]: config.students} if ASSIGN_TASK in tasks else {})
    if CLAIM_ONLY_TASK in tasks:
        seed_session(database, SESSIONS[CLAIM_ONLY_TASK], config.students)
        settle(database)
    answers: dict[str, list[Any]] = {task: [] for task in tasks}
    with harness.desks(config.caller_processes, PROCESSES) as pool, servers.worker(harness.options.workers) as worker:
        meter = servers.cpu_meter(worker, pool.pids)
        windows = [(task, config.warmup_seconds, f"warm-{task}", None) for task in tasks]
        windows += [(task, config.seconds, f"{task}-w{pair}", meter) for pair in range(config.pairs)
                    for task in (tasks if pair % 2 == 0 else tasks[::-1])]
        for task, seconds, label, window_meter in windows:
            result = measure_calls(pool, servers.env_with(), task, EXPECTED[task], SESSIONS[task], config.callers,
                                   config.caller_processes, seconds, label, window_meter)
            answers[task].extend(result.answers)
            if window_meter is not None:
                results.windows.setdefault(task, []).append(result)
                harness.say(f"  {task:<30} {result.per_second:7.1f} calls/s  p50 "
                            f"{percentile(result.latencies_ms, 0.5):.2f} ms  p95 "
                            f"{percentile(result.latencies_ms, 0.95):.2f} ms  p99 {_p99(result):.2f} ms  "
                            f"{result.statuses}\n      {result.cpu[0].line() if result.cpu else ''}")
    results.checks = [check(f"celery {task}", database, answers[task], HOLDING)
                      for task in tasks if task != NOOP_TASK]
    return results


def _p99(result: CallResult) -> float:
    return percentile(result.latencies_ms, 0.99)


def _cpu(result: CallResult) -> float:
    return sum(result.cpu_per_call().values()) if result.cpu else float("nan")


def _draw(axes: Any, results: CeleryResults) -> None:
    names = ["p50_ms", "p95_ms", "p99_ms"]
    totals = [(task, total) for task in TASKS if (total := results.total(task)) is not None]
    width = 0.8 / max(len(totals), 1)
    for position, (task, total) in enumerate(totals):
        offset = (position - (len(totals) - 1) / 2) * width
        values = latency_summary(total.latencies_ms)
        bars = axes.bar([index + offset for index in range(len(names))], [values[name] for name in names], width,
                        label=f"{task} ({total.per_second:.0f}/s)")
        axes.bar_label(bars, fmt="%.0f", fontsize=8)
    axes.set_xticks(range(len(names)), ["p50", "p95", "p99"])
    axes.set(ylabel="round trip, ms", title=f"Through Celery, {totals[0][1].callers if totals else 0} callers")
    axes.legend()


PART = CeleryPart()
