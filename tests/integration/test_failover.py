"""Get Next through replica-set failovers: elections, a crashed primary, a frozen one, a rollback.

One 3-member replica set (the same mongod binary, loopback ports) with its
own redis-server and worker pools serves every scenario of this module; each
scenario uses its own call session. In each, 32 callers (two processes of 16
threads, each with its own producer client, calls of 0.8 s on average) work through 1,200 students while
the fault happens, and the audit then replays every student's history:

* no student held by two assistants at once, nor completed twice;
* every student completed exactly once, none pending or held;
* every press answered (no caller error, every caller saw the session exhausted);
* every answer matches a ``claimed`` entry of the final history, so no caller
  was told of a claim that a failover took away.

Latency bounds here are generous; ``make bench BENCH_ARGS=--failover``
measures the targets.
"""

from __future__ import annotations

import uuid
from typing import Iterator

import pytest

from devstack.assistants import Behaviour
from devstack.replicaset import PULLED_REPLICATION, ReplicaSet
from devstack.failover import (
    FailoverRun, FailoverStack, Scenario, forced_rollback, freeze, kill_and_restart, run_scenario, step_downs,
)
from tests.integration.helpers import assert_nothing_lost_or_doubled

STUDENTS = 1_200
CALLERS = 32
# A call lasts up to 1.6 s (0.8 s on average), so 32 callers need at least 30 s for 1,200 students however
# fast the presses are: longer than every fault here (the freeze is over after 23 s).
CALL_SECONDS = 1.6
CLIENT_TIMEOUT_SECONDS = 8.0

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def failover(tmp_path_factory: pytest.TempPathFactory, server_env: dict[str, str],
             replica_set: ReplicaSet) -> Iterator[FailoverStack]:
    with FailoverStack(tmp_path_factory.mktemp("failover"), server_env, replica_set=replica_set) as running:
        yield running


@pytest.fixture(scope="module")
def pulled_failover(tmp_path_factory: pytest.TempPathFactory, server_env: dict[str, str]) -> Iterator[FailoverStack]:
    """A replica set of its own whose secondaries pull the oplog (see ``PULLED_REPLICATION``).

    It keeps MongoDB's default election timeout (10 s). After the secondaries
    are frozen, a claim is surely the primary's alone only once the getMore a
    secondary had waiting was answered, which takes up to half the election
    timeout; the primary steps down after a whole one. With 4 s the primary
    stepped down 2.5 s after the freeze, in 1 run of 4, with no such claim.
    """
    workdir = tmp_path_factory.mktemp("pulled")
    with ReplicaSet(workdir, member_args=PULLED_REPLICATION) as replica_set, \
            FailoverStack(workdir, server_env, replica_set=replica_set) as running:
        yield running


def drain_through(failover: FailoverStack, name: str, scenario: Scenario) -> FailoverRun:
    run = run_scenario(failover, name, scenario, f"failover-{name}-{uuid.uuid4().hex[:8]}", students=STUDENTS,
                       behaviour=Behaviour(call_seconds=CALL_SECONDS, timeout_seconds=CLIENT_TIMEOUT_SECONDS))
    print(f"\n{name}: longest press {run.longest_press:.2f}s, p99 {run.percentile(0.99):.2f}s, "
          f"{len(run.presses)} presses in {run.seconds:.0f}s\n" + "\n".join(run.timeline.lines()))
    return run


def test_stepping_the_primary_down_with_and_without_force_loses_and_doubles_nothing(
        failover: FailoverStack) -> None:
    run = drain_through(failover, "step-downs", step_downs([False, True]))
    assert_nothing_lost_or_doubled(run, CALLERS, STUDENTS)
    assert [window.name for window in run.windows] == ["planned step-down", "forced step-down"]
    assert run.longest_press < 3 * CLIENT_TIMEOUT_SECONDS


def test_a_killed_primary_restarted_on_its_data_loses_and_doubles_nothing(failover: FailoverStack) -> None:
    run = drain_through(failover, "kill", kill_and_restart(down_seconds=4))
    assert_nothing_lost_or_doubled(run, CALLERS, STUDENTS)
    assert run.longest_press < 3 * CLIENT_TIMEOUT_SECONDS


def test_a_primary_frozen_for_twenty_seconds_holds_no_press_for_the_whole_freeze(
        failover: FailoverStack) -> None:
    run = drain_through(failover, "freeze", freeze(frozen_seconds=20))
    assert_nothing_lost_or_doubled(run, CALLERS, STUDENTS)
    assert run.longest_press < 20.0, "a press waited out the whole freeze"


def test_claims_rolled_back_with_a_lost_primary_were_never_told_to_a_caller(
        pulled_failover: FailoverStack) -> None:
    """If the old primary rejoined with nothing to roll back, that run still must lose and double nothing,
    but it proves nothing about rollbacks: the fault is then made once more, in a new session."""
    run = drain_through(pulled_failover, "rollback", forced_rollback(unreplicated_seconds=3))
    if not run.rolled_back_claim_entries:
        assert_nothing_lost_or_doubled(run, CALLERS, STUDENTS, faults_outlived=False)
        print("the old primary rolled back nothing: once more")
        run = drain_through(pulled_failover, "rollback", forced_rollback(unreplicated_seconds=3))
    print(f"rolled-back claims: {len(run.rolled_back_claim_entries)}, "
          f"of which redone by the same request: {len(run.rolled_back_claim_entries - run.rolled_back_claims)}")
    assert run.rolled_back_claim_entries, "the old primary rolled back no claim twice: the scenario proved nothing"
    assert run.rolled_back_claims_told_to_callers() == []
    assert_nothing_lost_or_doubled(run, CALLERS, STUDENTS)
