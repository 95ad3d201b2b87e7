"""A worker host cut off from the MongoDB primary while another host keeps serving (issue 9).

Two test hosts (network namespaces on a bridge, see ``devstack.netns``) each
run an ``assignments`` worker; the three-member replica set, Redis and the
batch worker run in the root namespace. 32 callers work through 2,000
students while host A's packets to and from the primary's port are dropped
for 15 seconds (its connections hang, as in a real partition; it still reaches
Redis and the secondaries), then let through again.

Afterwards nothing is doubled or lost, host B served during the cut, host A's
worker is the same process and serves again after the heal, and no press took
longer than twice the client's timeout. Without root, ``ip`` or ``iptables``
the test skips and says why.
"""

from __future__ import annotations

import json
import os
import statistics
import threading
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import pytest
from pymongo import MongoClient
from pymongo.database import Database

from devstack import netns
from devstack.assistants import AssistantLog, Behaviour, run_in_background
from devstack.audit import audit_session
from devstack.netns import TestHosts
from devstack.partition import PartitionStack, claim_times
from callqueue.producers.client import AssignmentClient
from tests.integration.helpers import seed
from callqueue.workers.store import STUDENTS as STUDENTS_COLLECTION

pytestmark = pytest.mark.slow

STUDENTS = 2_000
CALLER_PROCESSES, CALLER_THREADS = 2, 16
CLIENT_TIMEOUT_SECONDS = 8.0
PRESS_BOUND_SECONDS = 2 * CLIENT_TIMEOUT_SECONDS
CUT_SECONDS = 15.0
CUT_HOST, OTHER_HOST = "a", "b"
SESSION_ID = "partition-session"
PARTITION_ENV = {
    "MONGO_DB": "partition",
    "CALLQUEUE_LOG_FORMAT": "json",
    "CALLQUEUE_TASK_MAX_RETRIES": "12",
    "CALLQUEUE_TASK_RETRY_BACKOFF_MAX_SECONDS": "2",
    "CALLQUEUE_MONGO_SERVER_SELECTION_TIMEOUT_SECONDS": "2",
}


@dataclass
class CutWindow:
    """When host A was cut off from the primary, and whether the callers were still at work at the heal."""

    primary_port: int
    started: datetime
    healed: datetime
    callers_running_at_heal: bool


@pytest.fixture(scope="module")
def test_hosts() -> Iterator[TestHosts]:
    usable, reason = netns.available()
    if not usable:
        pytest.skip(f"worker hosts in network namespaces are not possible here: {reason}")
    with TestHosts([CUT_HOST, OTHER_HOST]) as hosts:
        yield hosts


@pytest.fixture(scope="module")
def partitioned(tmp_path_factory: pytest.TempPathFactory, test_hosts: TestHosts) -> Iterator[PartitionStack]:
    with PartitionStack(tmp_path_factory.mktemp("partition"), test_hosts, {**os.environ, **PARTITION_ENV}) as stack:
        yield stack


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def wait_for_claims(database: Database, at_least: int, timeout_seconds: float = 120.0) -> None:
    """Block until ``at_least`` students of the session have been claimed (the workload is under way)."""
    deadline = time.monotonic() + timeout_seconds
    query = {"call_session_id": SESSION_ID, "history.event": "claimed"}
    while database[STUDENTS_COLLECTION].count_documents(query) < at_least:
        assert time.monotonic() < deadline, f"fewer than {at_least} claims after {timeout_seconds:.0f}s"
        time.sleep(0.2)


def cut_primary_off(stack: PartitionStack, callers: threading.Thread) -> CutWindow:
    """Drop host A's traffic to the primary's port for ``CUT_SECONDS``, then let it through again."""
    primary = stack.replica_set.primary()
    assert primary is not None, "the replica set has no primary before the cut"
    stack.hosts.cut(CUT_HOST, stack.hosts.bridge_address, primary.port)
    started = utcnow()
    try:
        time.sleep(CUT_SECONDS)
    finally:
        stack.hosts.heal(CUT_HOST)
    return CutWindow(primary.port, started, utcnow(), callers.is_alive())


def claims_per_host(stack: PartitionStack, database: Database, window: CutWindow) -> dict[str, dict[str, int]]:
    """For each host: how many claims its worker made before, during and after the cut."""
    times = claim_times(database, SESSION_ID)
    counts: dict[str, dict[str, int]] = {}
    for host in stack.hosts.hosts:
        at = [times[claim] for claim in stack.claims_of(host, SESSION_ID) if claim in times]
        counts[host] = {"before": sum(t < window.started for t in at),
                        "during": sum(window.started <= t <= window.healed for t in at),
                        "after": sum(t > window.healed for t in at)}
    counts["unattributed"] = {"claims": len(times) - sum(sum(c.values()) for c in counts.values())}
    return counts


def press_summary(logs: list[AssistantLog], window: CutWindow) -> dict[str, Any]:
    """Longest press, p99, how many took longer than the client's timeout, and the presses begun during the cut."""
    presses = sorted(seconds for log in logs for seconds in log.press_seconds)
    begun, ended = window.started.timestamp(), window.healed.timestamp()
    during_cut = [seconds for log in logs for started, seconds in zip(log.press_started_at, log.press_seconds)
                  if begun <= started <= ended]
    return {"presses": len(presses), "longest_seconds": round(presses[-1], 3),
            "p99_seconds": round(statistics.quantiles(presses, n=100)[98], 3),
            "median_seconds": round(statistics.median(presses), 3),
            "over_client_timeout": sum(p > CLIENT_TIMEOUT_SECONDS for p in presses),
            "begun_during_cut": len(during_cut),
            "longest_begun_during_cut_seconds": round(max(during_cut, default=0.0), 3)}


def record(measured: dict[str, Any], artifacts_dir: Path) -> None:
    """Print the measurements and keep them in tests/artifacts for the benchmark notes."""
    text = json.dumps(measured, indent=2, default=str)
    print(f"\npartition measurements:\n{text}")
    (artifacts_dir / "partition.json").write_text(text + "\n")


def test_a_worker_host_cut_off_from_the_primary_holds_nobody_and_doubles_nothing(
        partitioned: PartitionStack, artifacts_dir: Path) -> None:
    settings = partitioned.settings
    with AssignmentClient(settings, timeout_seconds=30) as client:
        seed(client, SESSION_ID, STUDENTS)
    worker_pids = {host: worker.process.pid for host, worker in partitioned.workers.items()}
    with MongoClient(settings.mongo_url, tz_aware=True) as mongo:
        database = mongo[settings.mongo_db]
        callers, logs = run_in_background(
            settings, SESSION_ID, processes=CALLER_PROCESSES, threads_each=CALLER_THREADS,
            behaviour=Behaviour(call_seconds=0.6, timeout_seconds=CLIENT_TIMEOUT_SECONDS))
        wait_for_claims(database, STUDENTS // 10)
        window = cut_primary_off(partitioned, callers)
        callers.join(timeout=600)
        handouts = [handout for log in logs for handout in log.handouts]
        report = audit_session(database, SESSION_ID, handouts)
        served = claims_per_host(partitioned, database, window)

    presses = press_summary(logs, window) if logs else {}
    record({"window": asdict(window), "presses": presses, "claims_per_host": served}, artifacts_dir)
    assert not callers.is_alive(), "callers did not finish"
    assert window.callers_running_at_heal, "the cut ended after the workload: it tested nothing"
    assert [log.errors for log in logs if log.errors] == []
    assert len(logs) == CALLER_PROCESSES * CALLER_THREADS and all(log.exhausted for log in logs)
    assert report.clean, (report.double_handouts[:5], report.answers_not_in_history[:5],
                          report.tokens_given_twice[:5], report.completed_twice[:5])
    assert (report.students, report.completed, report.pending, report.held) == (STUDENTS, STUDENTS, 0, 0)
    assert len({handout.student_id for handout in handouts}) == STUDENTS
    assert served[OTHER_HOST]["during"] > 0, "host B served nobody while host A was cut off"
    assert {host: worker.process.pid for host, worker in partitioned.workers.items()} == worker_pids
    assert all(worker.process.alive() for worker in partitioned.workers.values())
    assert served[CUT_HOST]["after"] > 0, "host A's worker served nobody after the heal"
    assert presses["longest_seconds"] <= PRESS_BOUND_SECONDS, presses
