"""``python -m bench`` (``make bench``): the default parts in one run, or the parts named with ``--part``."""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType

import click

from bench.harness.callers import ASSIGN_TASK
from bench.harness.core import RunOptions, WorkerOptions, run_parts
from bench.harness.desks import PROCESSES, THREADS
from bench.harness.report import document, print_summary, write_files
from bench.parts import PARTS
from bench.tasks import CLAIM_ONLY_TASK

NAMES = [part.name for part in PARTS]


@click.command()
@click.option("--list", "list_parts", is_flag=True, help="List the parts and exit.")
@click.option("--part", "parts", type=click.Choice(NAMES), multiple=True,
              help="Run this part (repeatable; in the registry's order). Default: every part but failover.")
@click.option("--quick", is_flag=True, help="A smoke run of a few minutes: short windows, smaller sessions.")
@click.option("--strict", is_flag=True, help="Exit with status 2 when a target fails.")
@click.option("--engine-mode", type=click.Choice([THREADS, PROCESSES]), default=THREADS, show_default=True,
              help="Claim desks as threads (each with its own MongoClient) or as processes.")
@click.option("--pool", "worker_pool", type=click.Choice(["prefork", "threads", "solo"]), default="prefork",
              show_default=True, help="Celery pool of the benchmark's assignment worker.")
@click.option("--concurrency", type=int, default=2, show_default=True, help="Worker pool size.")
@click.option("--prefetch", type=int, default=None, help="CALLQUEUE_WORKER_PREFETCH_MULTIPLIER of the workers.")
@click.option("--worker-loglevel", default=None, help="Override the workers' --loglevel (default: INFO).")
@click.option("--caller-processes", type=int, default=None, help="Processes the 64 Celery callers run in.")
@click.option("--open-loop-probe", is_flag=True,
              help="Open loop: the two-trip press claims with bench.claim_only, not assign_next_student.")
@click.option("--failover", is_flag=True, help="Same as --part failover.")
@click.option("--campaigns", is_flag=True, help="Same as --part campaigns.")
@click.option("--election-timeout-ms", "election_timeouts_ms", type=click.IntRange(500, 60_000), multiple=True,
              default=(10_000,), show_default=True,
              help="electionTimeoutMillis of the failover replica set; repeat to compare several.")
@click.option("--failover-part", type=click.Choice(["all", "replica-set", "partition"]), default="all",
              show_default=True, help="Failover: the replica-set events, the cut-off worker host, or both.")
def main(list_parts: bool, parts: tuple[str, ...], quick: bool, strict: bool, engine_mode: str, worker_pool: str,
         concurrency: int, prefetch: int | None, worker_loglevel: str | None, caller_processes: int | None,
         open_loop_probe: bool, failover: bool, campaigns: bool, election_timeouts_ms: tuple[int, ...],
         failover_part: str) -> None:
    """Measure what decides how "Get Next Student" feels; write bench/results/bench-<time>.json and .png.

    Exit status: 1 when a student was handed out twice or a part stopped,
    2 with --strict when a target failed, else 0.
    """
    if list_parts:
        for part in PARTS:
            click.echo(f"{part.name:<15} {'' if part.default else '(not in the default run) '}{part.description}")
        return
    names = set(parts) | ({"failover"} if failover else set()) | ({"campaigns"} if campaigns else set())
    chosen = [part for part in PARTS if part.name in names] if names else [part for part in PARTS if part.default]
    workers = WorkerOptions(pool=worker_pool, concurrency=concurrency, prefetch_multiplier=prefetch,
                            loglevel=worker_loglevel)
    options = RunOptions(quick, engine_mode, workers, caller_processes,
                         CLAIM_ONLY_TASK if open_loop_probe else ASSIGN_TASK, election_timeouts_ms, failover_part)
    signal.signal(signal.SIGTERM, _interrupt)
    load = {"start": list(os.getloadavg())}
    outcomes = run_parts(chosen, options, click.echo)
    load["end"] = list(os.getloadavg())
    goals = print_summary(outcomes, click.echo)
    json_path, png_path = write_files(outcomes, document(outcomes, options, load))
    click.echo(f"\nload average (1 min) at start {load['start'][0]:.1f}, at end {load['end'][0]:.1f} on "
               f"{os.cpu_count()} cores\nresults: {json_path}" + (f"\nchart:   {png_path}" if png_path else ""))
    if any(outcome.error for outcome in outcomes) or not all(report.ok for o in outcomes for report in o.checks):
        sys.exit(1)
    if strict and not all(goal.passed for goal in goals):
        sys.exit(2)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGTERM unwinds like Ctrl-C, so every ``finally`` stops what it started."""
    raise KeyboardInterrupt(f"signal {signum}")


if __name__ == "__main__":
    main()
