"""Failover scenarios on a real replica set, with callers pressing "Get Next" throughout.

Shared by the failover tests (which assert the audit and generous bounds) and
``make bench BENCH_ARGS=--failover`` (which reports the numbers). A
``FailoverStack`` is a replica set, a redis-server and the worker pools; a
scenario injects one kind of fault while 32 callers work through a session,
and ``run_scenario`` returns what the callers saw and what the audit found.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable

import bson
from pymongo import MongoClient
from pymongo.database import Database

from callqueue.config import Settings
from devstack.assistants import AssistantLog, Behaviour, run_in_background
from devstack.audit import AuditReport, Handout, audit_session
from devstack.replicaset import DEFAULT_ELECTION_TIMEOUT_MS, ReplicaSet
from devstack.servers import MongoServer, RedisServer
from devstack.stack import ServersStack, StackOptions
from callqueue.producers.client import AssignmentClient
from callqueue.workers.store import STUDENTS

FAILOVER_ENV = {
    "CALLQUEUE_TASK_MAX_RETRIES": "12",
    "CALLQUEUE_TASK_RETRY_BACKOFF_MAX_SECONDS": "2",
    "CALLQUEUE_MONGO_SERVER_SELECTION_TIMEOUT_SECONDS": "2",
    "CALLQUEUE_REDIS_MAX_RETRIES": "10",
    "CALLQUEUE_CLIENT_RETRIES": "25",
}
LEAD_IN_SECONDS = 3.0


class Timeline:
    """What the scenario did and when, in seconds since it started."""

    def __init__(self) -> None:
        self.started = time.time()
        self.entries: list[tuple[float, str]] = []

    def note(self, what: str) -> float:
        at = time.time()
        self.entries.append((at - self.started, what))
        return at

    def lines(self) -> list[str]:
        return [f"{offset:6.1f}s {what}" for offset, what in self.entries]


@dataclass
class FaultWindow:
    """One fault: when it began, when the set had a (new) primary again, and when the fault was over."""

    name: str
    began_at: float
    primary_again_at: float | None = None
    ended_at: float | None = None


Scenario = Callable[[ReplicaSet, Timeline], list[FaultWindow]]


class FailoverStack(ServersStack):
    """A replica set (its own, or one passed in), a redis-server and worker pools, stopped by PID on exit."""

    def __init__(self, workdir: Path, base_env: dict[str, str], members: int = 3,
                 election_timeout_ms: int = DEFAULT_ELECTION_TIMEOUT_MS, assignment_concurrency: int = 3,
                 database: str = "failover", replica_set: ReplicaSet | None = None) -> None:
        self.replica_set = replica_set or ReplicaSet(workdir, members=members,
                                                     election_timeout_ms=election_timeout_ms)
        super().__init__(self.replica_set, RedisServer(workdir), {**base_env, **FAILOVER_ENV, "MONGO_DB": database},
                         StackOptions(assignment_concurrency=assignment_concurrency, flower=False, beat=False),
                         owns_mongo=replica_set is None)


@dataclass
class FailoverRun:
    """What the callers saw during one scenario, and what the audit of the session found."""

    scenario: str
    logs: list[AssistantLog]
    report: AuditReport
    timeline: Timeline
    windows: list[FaultWindow]
    callers_outlived_faults: bool
    seconds: float
    rolled_back: list[dict] = field(default_factory=list)
    final_claims: set[tuple[str, int, str]] = field(default_factory=set)

    @property
    def presses(self) -> list[float]:
        return sorted(seconds for log in self.logs for seconds in log.press_seconds)

    @property
    def longest_press(self) -> float:
        return max(self.presses, default=0.0)

    def percentile(self, fraction: float) -> float:
        presses = self.presses
        return presses[min(len(presses) - 1, int(fraction * len(presses)))] if presses else 0.0

    @property
    def errors(self) -> list[str]:
        return [error for log in self.logs for error in log.errors]

    @property
    def handouts(self) -> list[Handout]:
        return [handout for log in self.logs for handout in log.handouts]

    def longest_press_around(self, window: FaultWindow, before_seconds: float = 2.0) -> float:
        """The longest press that started from shortly before the fault until the fault was over."""
        end = max(window.ended_at or 0.0, window.primary_again_at or 0.0, window.began_at)
        return max((seconds for log in self.logs
                    for started, seconds in zip(log.press_started_at, log.press_seconds)
                    if window.began_at - before_seconds <= started <= end), default=0.0)

    @property
    def rolled_back_claim_entries(self) -> set[tuple[str, int, str]]:
        """Claims (student, token, assistant) in the documents a member set aside when it rolled back.

        A claim the same request made again on the new primary shows here and
        in the final history alike: the request got its student once.
        """
        claims = set()
        for document in self.rolled_back:
            for entry in document.get("history", []):
                if entry.get("event") == "claimed":
                    claims.add((document["_id"], entry.get("token"), entry.get("assistant_id")))
        return claims

    @property
    def rolled_back_claims(self) -> set[tuple[str, int, str]]:
        """Rolled-back claims that are not in the final history: claims that disappeared."""
        return self.rolled_back_claim_entries - self.final_claims

    def rolled_back_claims_told_to_callers(self) -> list[tuple[str, int, str]]:
        """Rolled-back claims that some caller was nevertheless told about (must be none)."""
        told = {(h.student_id, h.assignment_token, h.assistant_id) for h in self.handouts}
        return sorted(self.rolled_back_claims & told)


def run_scenario(failover: FailoverStack, name: str, scenario: Scenario, session_id: str,
                 students: int = 2000, processes: int = 2, threads_each: int = 16,
                 behaviour: Behaviour | None = None) -> FailoverRun:
    """Seed the session, start the callers, inject the faults, wait for the callers, audit."""
    settings = failover.settings
    seed_students(settings, session_id, students)
    behaviour = behaviour or Behaviour(call_seconds=0.02, timeout_seconds=8)
    timeline = Timeline()
    callers, logs = run_in_background(settings, session_id, processes, threads_each, behaviour)
    windows = scenario(failover.replica_set, timeline)
    outlived = callers.is_alive()
    timeline.note(f"faults over; callers still running: {outlived}")
    callers.join(timeout=900)
    timeline.note("callers done")
    failover.replica_set.wait_until_healthy()
    run = FailoverRun(name, logs, AuditReport(), timeline, windows, outlived, time.time() - timeline.started)
    with MongoClient(failover.replica_set.url) as mongo:
        database = mongo[settings.mongo_db]
        run.report = audit_session(database, session_id, run.handouts)
        run.final_claims = _final_claims(database, session_id)
    run.rolled_back = [document for document in rolled_back_documents(failover.replica_set)
                       if document.get("call_session_id") == session_id]
    return run


def seed_students(settings: Settings, session_id: str, count: int) -> None:
    """Import ``count`` students into the session through the producer client, 1,000 per call."""
    rows = [{"student_id": f"s{n:05d}", "name": f"Student {n}", "phone": f"+1555{n:07d}"} for n in range(count)]
    with AssignmentClient(settings, timeout_seconds=60) as client:
        for start in range(0, count, 1000):
            client.import_students(session_id, rows[start:start + 1000], "failover session")


def _final_claims(database: Database, session_id: str) -> set[tuple[str, int, str]]:
    claims = set()
    for document in database[STUDENTS].find({"call_session_id": session_id}, {"history": 1}):
        claims.update((document["_id"], entry["token"], entry["assistant_id"])
                      for entry in document.get("history", []) if entry.get("event") == "claimed")
    return claims


# -- scenarios ------------------------------------------------------------------


def step_downs(forced: Iterable[bool], every_seconds: float = 4.0) -> Scenario:
    """Step the primary down once per entry of ``forced``, ``every_seconds`` apart."""
    plan = list(forced)

    def scenario(replica_set: ReplicaSet, timeline: Timeline) -> list[FaultWindow]:
        windows = []
        time.sleep(LEAD_IN_SECONDS)
        for force in plan:
            name = "forced step-down" if force else "planned step-down"
            window = FaultWindow(name, timeline.note(name))
            old = replica_set.step_down(force=force)
            # A planned step-down hands over to a caught-up secondary. After a forced one the old primary
            # may stand again when its step-down period ends, as early as the others' election timeout,
            # and win: any primary then ends the window.
            new = replica_set.wait_for_primary(60, other_than=None if force else old)
            window.primary_again_at = window.ended_at = timeline.note(f"new primary on port {new.port}")
            windows.append(window)
            time.sleep(every_seconds)
        return windows

    return scenario


def kill_and_restart(down_seconds: float = 4.0) -> Scenario:
    """SIGKILL the primary, and start it again on the same data ``down_seconds`` later."""
    return _primary_lost("primary killed", "SIGKILL", ReplicaSet.kill, ReplicaSet.restart, down_seconds,
                         "restarted on its data directory")


def freeze(frozen_seconds: float = 20.0) -> Scenario:
    """SIGSTOP the primary for ``frozen_seconds``, then SIGCONT it."""
    return _primary_lost("primary frozen", "SIGSTOP", ReplicaSet.freeze, ReplicaSet.thaw, frozen_seconds,
                         "SIGCONT")


def _primary_lost(name: str, how: str, lose: Callable[[ReplicaSet, MongoServer], None],
                  undo: Callable[[ReplicaSet, MongoServer], None], lost_seconds: float, undone: str) -> Scenario:
    """Lose the primary with ``lose``, wait for the election, and ``undo`` it ``lost_seconds`` after the loss."""

    def scenario(replica_set: ReplicaSet, timeline: Timeline) -> list[FaultWindow]:
        time.sleep(LEAD_IN_SECONDS)
        old = replica_set.wait_for_primary(30)
        window = FaultWindow(name, timeline.note(f"{how} primary on port {old.port}"))
        lose(replica_set, old)
        undo_at = time.monotonic() + lost_seconds
        new = replica_set.wait_for_primary(lost_seconds + 60, other_than=old)
        window.primary_again_at = timeline.note(f"new primary on port {new.port}")
        time.sleep(max(0.0, undo_at - time.monotonic()))
        undo(replica_set, old)
        window.ended_at = timeline.note(f"port {old.port}: {undone}")
        return [window]

    return scenario


# A rejoining former primary has written its rollback files within 4 s in every run seen; waiting longer
# only delays the verdict of a run in which it had nothing to roll back.
ROLLBACK_WAIT_SECONDS = 30.0


def forced_rollback(unreplicated_seconds: float = 3.0) -> Scenario:
    """Make the primary accept writes no secondary gets, then take its role away, so that it rolls them back.

    Both secondaries are frozen, so the primary applies claims that wait in
    vain for a majority; then the primary is frozen and the secondaries thawed:
    they elect one of themselves, which goes on without those writes. When the
    old primary is thawed it learns of the new term, steps down, and rolls back
    what only it had, writing those documents to ``dbpath/rollback``.
    """

    def scenario(replica_set: ReplicaSet, timeline: Timeline) -> list[FaultWindow]:
        time.sleep(LEAD_IN_SECONDS)
        old = replica_set.wait_for_primary(30)
        # Callers that are still starting would leave the primary idle while the secondaries are frozen.
        replica_set.wait_for_updates(old, 20)
        secondaries = [member for member in replica_set.members if member is not old]
        window = FaultWindow("rollback", timeline.note("SIGSTOP both secondaries"))
        for member in secondaries:
            replica_set.freeze(member)
        frozen_wall = datetime.now(timezone.utc).replace(tzinfo=None)
        frozen_at = replica_set.oplog_position(old)
        time.sleep(unreplicated_seconds)
        replica_set.wait_for_writes_only_it_has(old, frozen_at, frozen_wall)
        replica_set.freeze(old)
        timeline.note(f"SIGSTOP primary on port {old.port} with writes no majority has")
        for member in secondaries:
            replica_set.thaw(member)
        new = replica_set.wait_for_primary(60, other_than=old)
        window.primary_again_at = timeline.note(f"new primary on port {new.port}")
        time.sleep(2)
        replica_set.thaw(old)
        files = replica_set.wait_for_rollback_files(old, ROLLBACK_WAIT_SECONDS)
        window.ended_at = timeline.note(f"old primary thawed and rolled back; rollback files: {len(files)}")
        if not files:
            for state in replica_set.states():
                timeline.note(state)
        return [window]

    return scenario


def rolled_back_documents(replica_set: ReplicaSet) -> list[dict]:
    """Every document any member set aside in a rollback."""
    documents = []
    for member in replica_set.members:
        for path in replica_set.rollback_files(member):
            with open(path, "rb") as handle:
                documents.extend(bson.decode_file_iter(handle))
    return documents
