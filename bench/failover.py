"""``make bench BENCH_ARGS=--failover``: how long "Get Next" waits through each kind of failover.

Each event runs on a fresh call session of a 3-member replica set while 32
callers (two processes of 16 threads, producer clients with an 8 s timeout)
work through it. For each event it reports the longest press that began
around the event, the run's p99, how long the set had no primary, how many
task retries the failover cost (the ``failover_retry`` counter), how many
presses outlasted the client's timeout and were resent, and how many
elections the set held (more than the event needs means a member called one
needlessly: the risk of a short election timeout), and checks it
against the targets of ``docs/performance.md``. Every run is audited like the
failover tests; a doubled or lost student fails the benchmark.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from pymongo import MongoClient

from bench.report import RESULTS_DIR, _git_state
from bench.stats import percentile
from devstack.assistants import AssistantLog, Behaviour, run_in_processes
from devstack.audit import audit_session
from devstack.failover import (
    FailoverRun, FailoverStack, Scenario, freeze, kill_and_restart, run_scenario, step_downs,
)
from devstack.netns import TestHosts, available
from devstack.partition import PartitionStack
from producers.client import AssignmentClient
from workers.metrics import FLUSH_INTERVAL_SECONDS, read_counters, redis_client

CLIENT_TIMEOUT_SECONDS = 8.0
STUDENTS = 2_000
FREEZE_STUDENTS = 3_000
Say = Callable[[str], None]


@dataclass(frozen=True)
class EventResult:
    """One event's numbers and its target."""

    event: str
    election_timeout_ms: int
    longest_press_seconds: float
    p99_seconds: float
    no_primary_seconds: float
    failover_retries: int
    resent_presses: int
    elections: int
    target_seconds: float
    audit_clean: bool

    @property
    def passed(self) -> bool:
        return self.audit_clean and self.longest_press_seconds <= self.target_seconds

    def line(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        return (f"{self.event:<26} election {self.election_timeout_ms / 1000:>4.1f}s  longest {self.longest_press_seconds:6.2f}s "
                f"(target <= {self.target_seconds:5.1f}s) {verdict}  p99 {self.p99_seconds:5.2f}s  "
                f"no primary {self.no_primary_seconds:5.2f}s  failover retries {self.failover_retries:4d}  "
                f"resent {self.resent_presses:3d}  elections {self.elections}  "
                f"audit {'clean' if self.audit_clean else 'DIRTY'}")


def events(election_timeout_ms: int) -> list[tuple[str, Scenario, float, int]]:
    """(name, scenario, target in seconds, students) for each replica-set event."""
    election = election_timeout_ms / 1000
    return [
        ("planned step-down", step_downs([False]), 2.0, STUDENTS),
        ("forced step-down", step_downs([True]), election + 3.0, STUDENTS),
        ("primary killed", kill_and_restart(4.0), election + 3.0, STUDENTS),
        ("primary frozen 20 s", freeze(20.0), 12.0, FREEZE_STUDENTS),
    ]


def run_failover_benchmark(election_timeouts_ms: list[int], partition: bool, say: Say) -> list[EventResult]:
    """Every event for every election timeout, then the cut-off worker host; prints each line as it lands."""
    results: list[EventResult] = []
    base_env = {**os.environ, "CALLQUEUE_CLIENT_TIMEOUT_SECONDS": str(CLIENT_TIMEOUT_SECONDS)}
    for election_ms in election_timeouts_ms:
        with tempfile.TemporaryDirectory(prefix="callqueue-failover-") as workdir, \
                FailoverStack(Path(workdir), base_env, election_timeout_ms=election_ms) as stack:
            for name, scenario, target, students in events(election_ms):
                results.append(_measure(stack, name, scenario, target, students, election_ms))
                say(results[-1].line())
    if partition:
        cut = _measure_partition(base_env, say)
        if cut is not None:
            results.append(cut)
    return results


def _measure(stack: FailoverStack, name: str, scenario: Scenario, target: float, students: int,
             election_ms: int) -> EventResult:
    before, term_before = _failover_retries(stack.settings.broker_url), stack.replica_set.term()
    run = run_scenario(stack, name, scenario, f"bench-{name.replace(' ', '-')}-{time.time_ns()}",
                       students=students, behaviour=Behaviour(call_seconds=0.02,
                                                              timeout_seconds=CLIENT_TIMEOUT_SECONDS))
    window = run.windows[0]
    return EventResult(
        event=name, election_timeout_ms=election_ms,
        longest_press_seconds=round(run.longest_press_around(window), 3),
        p99_seconds=round(run.percentile(0.99), 3),
        no_primary_seconds=round((window.primary_again_at or window.began_at) - window.began_at, 3),
        failover_retries=_failover_retries(stack.settings.broker_url) - before,
        resent_presses=sum(seconds > CLIENT_TIMEOUT_SECONDS for seconds in run.presses),
        elections=stack.replica_set.term() - term_before, target_seconds=target, audit_clean=_clean(run, students))


def _clean(run: FailoverRun, students: int) -> bool:
    report = run.report
    return (report.clean and not run.errors and report.completed == students == report.students
            and all(log.exhausted for log in run.logs))


def _failover_retries(broker_url: str) -> int:
    """The workers' count of failover retries, once their last buffered counts have been written."""
    time.sleep(FLUSH_INTERVAL_SECONDS * 1.5)
    events_counted, _ = read_counters(redis_client(broker_url))
    return events_counted.get("failover_retry", 0)


def _measure_partition(base_env: dict[str, str], say: Say) -> EventResult | None:
    """Cut one of two worker hosts off from the primary for 15 s while 32 callers press."""
    ok, why = available()
    if not ok:
        say(f"worker host cut off: not measured ({why})")
        return None
    with tempfile.TemporaryDirectory(prefix="callqueue-partition-") as workdir, TestHosts(["a", "b"]) as hosts, \
            PartitionStack(Path(workdir), hosts, base_env) as stack:
        result = _cut_one_host(stack)
    say(result.line())
    return result


def _cut_one_host(stack: PartitionStack) -> EventResult:
    settings, session_id = stack.settings, f"bench-cut-{time.time_ns()}"
    rows = [{"student_id": f"s{n:05d}", "name": f"Student {n}"} for n in range(STUDENTS)]
    with AssignmentClient(settings, timeout_seconds=60) as client:
        for start in range(0, STUDENTS, 1000):
            client.import_students(session_id, rows[start:start + 1000])
    logs: list[AssistantLog] = []
    callers = threading.Thread(target=lambda: logs.extend(run_in_processes(
        settings, session_id, processes=2, threads_each=16,
        behaviour=Behaviour(call_seconds=0.02, timeout_seconds=CLIENT_TIMEOUT_SECONDS))))
    callers.start()
    time.sleep(3)
    primary = stack.replica_set.primary()
    began = time.time()
    stack.hosts.cut("a", stack.hosts.bridge_address, primary.port)
    time.sleep(15)
    stack.hosts.heal("a")
    callers.join(timeout=900)
    presses = sorted(s for log in logs for s in log.press_seconds)
    around = [s for log in logs for started, s in zip(log.press_started_at, log.press_seconds)
              if began - 2 <= started <= began + 15]
    with MongoClient(settings.mongo_url) as mongo:
        report = audit_session(mongo[settings.mongo_db], session_id,
                               [h for log in logs for h in log.handouts])
    clean = report.clean and report.completed == STUDENTS and all(log.exhausted and not log.errors for log in logs)
    return EventResult("worker host cut off", 0, round(max(around, default=0.0), 3),
                       round(percentile(presses, 0.99), 3),
                       0.0, _failover_retries(settings.broker_url),
                       sum(s > CLIENT_TIMEOUT_SECONDS for s in presses), 0, CLIENT_TIMEOUT_SECONDS, clean)


def write_results(results: list[EventResult], directory: Path = RESULTS_DIR) -> Path:
    """bench/results/failover-<time>.json with every event, its target and the commit measured."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"failover-{time.strftime('%Y%m%d-%H%M%S')}.json"
    document: dict[str, Any] = {
        "git": _git_state(), "load_average": list(os.getloadavg()), "cores": os.cpu_count(),
        "client_timeout_seconds": CLIENT_TIMEOUT_SECONDS,
        "events": [{**result.__dict__, "passed": result.passed} for result in results],
    }
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path
