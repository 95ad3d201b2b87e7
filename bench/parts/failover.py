"""How long "Get Next" waits through each kind of failover (not in the default run: ``--part failover``).

Each event is a ``devstack.failover`` scenario on a 3-member replica set while
32 callers (client timeout 8 s) work through a fresh session; then a worker
host is cut off from the primary for 15 s (``devstack.partition``). The
target is the longest press begun from 2 s before the fault until it was
over; it stands only when presses began in that window and the callers were
still at work when the fault ended, as in ``tests/integration/test_failover.py``.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.harness.core import Harness, Part, RunOptions
from bench.harness.integrity import COMPLETED, DRAINED, Answer, IntegrityReport, from_audit
from bench.harness.targets import Target
from devstack.assistants import Behaviour
from devstack.failover import (
    LEAD_IN_SECONDS, FailoverRun, FailoverStack, FaultWindow, Scenario, Timeline, freeze, kill_and_restart,
    run_scenario, step_downs,
)
from devstack.netns import TestHosts, available
from devstack.partition import PartitionStack
from devstack.replicaset import ReplicaSet
from callqueue.workers.metrics import FLUSH_INTERVAL_SECONDS, read_counters, redis_client

CLIENT_TIMEOUT_SECONDS = 8.0
STUDENTS = 2_000
FREEZE_STUDENTS = 3_000
CUT_SECONDS = 15.0


@dataclass(frozen=True)
class FailoverConfig:
    election_timeouts_ms: tuple[int, ...] = (10_000,)
    events: str = "all"  # or only "replica-set" or "partition"


@dataclass(frozen=True)
class EventResult:
    """One event's numbers, its target, and whether the measurement stands."""

    event: str
    election_timeout_ms: int
    longest_press_seconds: float
    p99_seconds: float
    no_primary_seconds: float
    failover_retries: int
    resent_presses: int
    elections: int
    target_seconds: float
    presses_in_window: int
    callers_outlived_fault: bool
    caller_errors: int
    callers_not_done: int

    def target(self) -> Target:
        problems = [problem for problem, found in (
            ("the callers had finished before the fault ended", not self.callers_outlived_fault),
            (f"{self.caller_errors} caller errors", self.caller_errors),
            (f"{self.callers_not_done} callers never saw the session exhausted", self.callers_not_done)) if found]
        election = f", election timeout {self.election_timeout_ms / 1000:g}s" if self.election_timeout_ms else ""
        return Target(f"{self.event}{election}: longest press around the fault", self.longest_press_seconds,
                      self.target_seconds, at_least=False, unit="s", samples=self.presses_in_window,
                      problem="; ".join(problems) or None)

    def line(self) -> str:
        return (f"  {self.event:<26} election {self.election_timeout_ms / 1000:>4.1f}s  longest "
                f"{self.longest_press_seconds:6.2f}s (target <= {self.target_seconds:5.1f}s, {self.presses_in_window} "
                f"presses in the window)  p99 {self.p99_seconds:5.2f}s  no primary {self.no_primary_seconds:5.2f}s  "
                f"failover retries {self.failover_retries:4d}  resent {self.resent_presses:3d}  "
                f"elections {self.elections}")


@dataclass
class FailoverResults:
    events: list[EventResult] = field(default_factory=list)
    checks: list[IntegrityReport] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"client_timeout_seconds": CLIENT_TIMEOUT_SECONDS, "events": [asdict(event) for event in self.events]}


class FailoverPart(Part):
    name = "failover"
    description = "presses through replica-set failovers and a worker host cut off from the primary"
    default = False

    def config(self, options: RunOptions, **chosen: Any) -> FailoverConfig:
        return FailoverConfig(options.election_timeouts_ms, options.failover_part)

    def run(self, config: FailoverConfig, harness: Harness) -> FailoverResults:
        results = FailoverResults()
        base_env = {**os.environ, "CALLQUEUE_CLIENT_TIMEOUT_SECONDS": str(CLIENT_TIMEOUT_SECONDS)}
        for election_ms in config.election_timeouts_ms if config.events != "partition" else ():
            election = election_ms / 1000
            events = [("planned step-down", step_downs([False]), 2.0, STUDENTS),
                      ("forced step-down", step_downs([True]), election + 3.0, STUDENTS),
                      ("primary killed", kill_and_restart(4.0), election + 3.0, STUDENTS),
                      ("primary frozen 20 s", freeze(20.0), 12.0, FREEZE_STUDENTS)]
            with tempfile.TemporaryDirectory(prefix="callqueue-failover-") as workdir, \
                    FailoverStack(Path(workdir), base_env, election_timeout_ms=election_ms) as stack:
                for name, scenario, target, students in events:
                    _measure(stack, stack.replica_set, name, scenario, target, students, election_ms, results, harness)
        if config.events != "replica-set":
            ok, why = available()
            if not ok:
                harness.say(f"  worker host cut off: not measured ({why})")
                return results
            with tempfile.TemporaryDirectory(prefix="callqueue-partition-") as workdir, \
                    TestHosts(["a", "b"]) as hosts, PartitionStack(Path(workdir), hosts, base_env) as stack:
                _measure(stack, stack.replica_set, "worker host cut off", _cut_off(hosts), CLIENT_TIMEOUT_SECONDS,
                         STUDENTS, 0, results, harness)
        return results

    def targets(self, results: FailoverResults) -> list[Target]:
        return [event.target() for event in results.events]


def _cut_off(hosts: TestHosts) -> Scenario:
    """Drop host a's traffic to the primary for ``CUT_SECONDS`` (connections hang, as in a real partition)."""
    def scenario(replica_set: ReplicaSet, timeline: Timeline) -> list[FaultWindow]:
        time.sleep(LEAD_IN_SECONDS)
        primary = replica_set.primary()
        window = FaultWindow("cut", timeline.note(f"host a cut off from the primary on port {primary.port}"))
        hosts.cut("a", hosts.bridge_address, primary.port)
        time.sleep(CUT_SECONDS)
        hosts.heal("a")
        window.ended_at = timeline.note("healed")
        return [window]

    return scenario


def _measure(stack: Any, replica_set: ReplicaSet, name: str, scenario: Scenario, target: float, students: int,
             election_ms: int, results: FailoverResults, harness: Harness) -> None:
    """One scenario on ``stack`` (a ``FailoverStack`` or a ``PartitionStack``), its event and its audit."""
    broker = stack.settings.broker_url
    before, term_before = _failover_retries(broker), replica_set.term()
    run: FailoverRun = run_scenario(stack, name, scenario, f"bench-{name.replace(' ', '-')}-{time.time_ns()}",
                                    students=students,
                                    behaviour=Behaviour(call_seconds=0.02, timeout_seconds=CLIENT_TIMEOUT_SECONDS))
    window = run.windows[0]
    end = max(window.ended_at or 0.0, window.primary_again_at or 0.0, window.began_at)
    in_window = sum(window.began_at - 2.0 <= started <= end for log in run.logs for started in log.press_started_at)
    event = EventResult(
        name, election_ms, round(run.longest_press_around(window), 3), round(run.percentile(0.99), 3),
        round((window.primary_again_at or window.began_at) - window.began_at, 3), _failover_retries(broker) - before,
        sum(seconds > CLIENT_TIMEOUT_SECONDS for seconds in run.presses), replica_set.term() - term_before, target,
        in_window, run.callers_outlived_faults, len(run.errors), sum(1 for log in run.logs if not log.exhausted))
    results.events.append(event)
    answers = [Answer("", h.student_id, h.assistant_id, h.assignment_token, COMPLETED) for h in run.handouts]
    results.checks.append(from_audit(f"failover: {name}", run.report, answers, DRAINED))
    harness.say(event.line())


def _failover_retries(broker_url: str) -> int:
    """The workers' count of failover retries, once their last buffered counts have been written."""
    time.sleep(FLUSH_INTERVAL_SECONDS * 1.5)
    return read_counters(redis_client(broker_url))[0].get("failover_retry", 0)


PART = FailoverPart()
