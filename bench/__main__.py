"""``python -m bench`` (``make bench``): the whole benchmark in one run, or ``--quick`` for a smoke run."""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
from types import FrameType

import click

from bench.campaigns import CampaignsConfig, run_campaigns_benchmark
from bench.campaigns import write_results as write_campaign_results
from bench.failover import run_failover_benchmark
from bench.failover import write_results as write_failover_results
from bench.pool import PROCESSES, THREADS, BenchError
from bench.report import print_summary, summarise, targets, to_json, write_files
from bench.run import BenchConfig, run_benchmark
from bench.servers import WorkerOptions
from bench.tasks import CLAIM_ONLY_TASK


@click.command()
@click.option("--quick", is_flag=True, help="A few minutes: one repeat, short windows, smaller sessions (a smoke run).")
@click.option("--engine-mode", type=click.Choice([THREADS, PROCESSES]), default=THREADS, show_default=True,
              help="Racing engine clients as threads of one process (each with its own MongoClient) "
                   "or as processes; threads measured faster on 2 cores (docs/performance.md).")
@click.option("--pool", "worker_pool", type=click.Choice(["prefork", "threads", "solo"]), default="prefork",
              show_default=True, help="Celery pool of the benchmark's assignment worker.")
@click.option("--concurrency", type=int, default=2, show_default=True, help="Worker pool size.")
@click.option("--prefetch", type=int, default=None,
              help="Override CALLQUEUE_WORKER_PREFETCH_MULTIPLIER for the workers (default: settings).")
@click.option("--worker-loglevel", default=None, help="Override the workers' --loglevel (default: INFO).")
@click.option("--caller-processes", type=int, default=None, help="Processes the 64 Celery callers run in.")
@click.option("--strict", is_flag=True, help="Exit with status 2 when a target ratio fails.")
@click.option("--open-loop-probe", is_flag=True,
              help="Open-loop part with the claim-only probe (bench.claim_only) pressed instead of "
                   "assign_next_student: what a bare claim costs an assistant, with no task around it.")
@click.option("--failover", is_flag=True,
              help="Instead: measure presses through replica-set failovers and a cut-off worker host.")
@click.option("--campaigns", is_flag=True,
              help="Instead: only the campaigns part (claims/s with routing tags vs none, callback due -> claimed).")
@click.option("--election-timeout-ms", "election_timeouts_ms", type=click.IntRange(500, 60_000), multiple=True,
              default=(10_000,), show_default=True,
              help="electionTimeoutMillis of the failover replica set; repeat to compare several.")
@click.option("--failover-part", type=click.Choice(["all", "replica-set", "partition"]), default="all",
              show_default=True, help="With --failover: the replica-set events, the cut-off worker host, or both.")
def main(quick: bool, engine_mode: str, worker_pool: str, concurrency: int, prefetch: int | None,
         worker_loglevel: str | None, caller_processes: int | None, strict: bool, open_loop_probe: bool,
         failover: bool, campaigns: bool, election_timeouts_ms: tuple[int, ...], failover_part: str) -> None:
    """Measure the claim engine, the Celery round trip, open-loop latency, many and huge sessions, campaigns.

    Writes bench/results/*.json and *.png.
    """
    signal.signal(signal.SIGTERM, _interrupt)
    if failover:
        timeouts = [] if failover_part == "partition" else list(election_timeouts_ms)
        _failover(timeouts, failover_part != "replica-set", strict)
        return
    if campaigns:
        _campaigns(CampaignsConfig.quick() if quick else CampaignsConfig(), engine_mode, strict)
        return
    workers = WorkerOptions(pool=worker_pool, concurrency=concurrency, prefetch_multiplier=prefetch,
                            loglevel=worker_loglevel)
    overrides = {"engine_mode": engine_mode, "workers": workers}
    if caller_processes:
        overrides["celery_caller_processes"] = caller_processes
    config = BenchConfig.quick(**overrides) if quick else BenchConfig(**overrides)
    if open_loop_probe:
        config = dataclasses.replace(config, open_loop=dataclasses.replace(config.open_loop,
                                                                           press_task=CLAIM_ONLY_TASK))
    load = {"start": list(os.getloadavg())}
    try:
        results = run_benchmark(config, say=_say)
    except BenchError as exc:
        raise click.ClickException(str(exc)) from exc
    load["end"] = list(os.getloadavg())
    summary = summarise(results)
    goals = targets(summary, results, config)
    print_summary(summary, results, goals, config, say=_say)
    json_path, png_path = write_files(to_json(config, results, summary, goals, load), summary, results)
    _say(f"\nload average (1 min) at start {load['start'][0]:.1f}, at end {load['end'][0]:.1f} "
         f"on {os.cpu_count()} cores")
    _say(f"results: {json_path}\nchart:   {png_path}")
    if not all(report.ok for report in results.integrity):
        sys.exit(1)
    if strict and not all(goal.passed for goal in goals):
        sys.exit(2)


def _failover(election_timeouts_ms: list[int], partition: bool, strict: bool) -> None:
    """The failover mode: every event's longest press against its target; exit 1 on a dirty audit."""
    results = run_failover_benchmark(election_timeouts_ms, partition=partition, say=_say)
    _say(f"results: {write_failover_results(results)}")
    if not all(result.audit_clean for result in results):
        sys.exit(1)
    if strict and not all(result.passed for result in results):
        sys.exit(2)


def _campaigns(config: CampaignsConfig, engine_mode: str, strict: bool) -> None:
    """The campaigns part alone: its checks and targets; exit 1 on a student handed out twice."""
    try:
        results = run_campaigns_benchmark(config, _say, engine_mode)
    except BenchError as exc:
        raise click.ClickException(str(exc)) from exc
    for report in results.integrity():
        _say(report.line())
    goals = results.targets()
    for goal in goals:
        _say(goal.line())
    _say(f"results: {write_campaign_results(results)}")
    if not all(report.ok for report in results.integrity()):
        sys.exit(1)
    if strict and not all(goal.passed for goal in goals):
        sys.exit(2)


def _say(line: str) -> None:
    click.echo(line)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGTERM unwinds like Ctrl-C, so every ``finally`` stops what it started."""
    raise KeyboardInterrupt(f"signal {signum}")


if __name__ == "__main__":
    main()
