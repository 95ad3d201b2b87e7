"""``python -m producers health`` against the real test stack and against servers that are not there."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from click.testing import CliRunner, Result

from devstack.processes import free_port
from devstack.servers import project_env
from devstack.stack import Stack
from callqueue.producers.ops import health_command
from callqueue.workers.app import ASSIGNMENTS_QUEUE, BATCH_QUEUE

DOWN_PASSWORD = "health-test-password"


def run_health(env: dict[str, str], *args: str) -> Result:
    """Invoke the health command in-process with ``env`` as the environment."""
    return CliRunner().invoke(health_command, list(args), env=env, catch_exceptions=False)


def checks_by_component(result: Result) -> dict[str, dict[str, Any]]:
    """The ``--json`` report keyed by component name."""
    report = json.loads(result.output)
    return {check["component"]: check for check in report["checks"]}


def worker_named(stack: Stack, queue: str) -> str:
    """Node name of the stack's worker consuming ``queue``."""
    return next(worker.hostname for worker in stack.workers if worker.queue == queue)


def test_health_reports_every_component_up_with_the_workers_of_both_queues(
        stack: Stack, server_env: dict[str, str]) -> None:
    result = run_health(server_env, "--json")
    assert result.exit_code == 0, result.output
    checks = checks_by_component(result)
    assert json.loads(result.output)["healthy"] is True
    assert set(checks) == {"mongodb", "mongodb durability", "redis broker", "redis result backend",
                           f"queue {ASSIGNMENTS_QUEUE}", f"queue {BATCH_QUEUE}", "worker clocks"}
    assert all(check["ok"] for check in checks.values())
    assert [name for name, check in checks.items() if check["warning"]] == ["mongodb durability"]  # standalone
    assert worker_named(stack, ASSIGNMENTS_QUEUE) in checks[f"queue {ASSIGNMENTS_QUEUE}"]["detail"]
    assert worker_named(stack, BATCH_QUEUE) in checks[f"queue {BATCH_QUEUE}"]["detail"]
    for queue in (ASSIGNMENTS_QUEUE, BATCH_QUEUE):  # each worker reports its clock within the bound
        assert worker_named(stack, queue) in checks["worker clocks"]["detail"]


def test_health_table_lists_both_queues_as_up(stack: Stack, server_env: dict[str, str]) -> None:
    result = run_health(server_env)
    assert result.exit_code == 0, result.output
    assert "callqueue health: healthy" in result.output
    for queue in (ASSIGNMENTS_QUEUE, BATCH_QUEUE):
        row = next(line for line in result.output.splitlines() if f"queue {queue}" in line)
        assert " up " in row and "DOWN" not in row


def test_health_exits_nonzero_and_names_mongodb_when_no_server_answers(
        stack: Stack, server_env: dict[str, str]) -> None:
    env = {**server_env, "MONGO_URL": f"mongodb://127.0.0.1:{free_port()}/"}
    result = run_health(env, "--json", "--timeout", "0.5")
    assert result.exit_code == 1
    checks = checks_by_component(result)
    assert checks["mongodb"]["ok"] is False
    assert "ping failed: ServerSelectionTimeoutError" in checks["mongodb"]["detail"]
    assert checks["mongodb durability"]["ok"] is False
    assert all(check["ok"] for name, check in checks.items() if not name.startswith("mongodb"))


def test_health_table_marks_mongodb_down(stack: Stack, server_env: dict[str, str]) -> None:
    env = {**server_env, "MONGO_URL": f"mongodb://127.0.0.1:{free_port()}/"}
    result = run_health(env, "--timeout", "0.5")
    assert result.exit_code == 1
    assert "UNHEALTHY" in result.output
    row = next(line for line in result.output.splitlines() if "mongodb" in line)
    assert "DOWN" in row


def test_health_reports_an_unreachable_broker_without_printing_its_password(
        server_env: dict[str, str]) -> None:
    url = f"redis://:{DOWN_PASSWORD}@127.0.0.1:{free_port()}"
    env = {**server_env, "CELERY_BROKER_URL": f"{url}/0", "CELERY_RESULT_BACKEND": f"{url}/1"}
    result = run_health(env, "--json", "--timeout", "0.5")
    assert result.exit_code == 1
    checks = checks_by_component(result)
    assert checks["mongodb"]["ok"] is True
    assert checks["redis broker"]["ok"] is False and checks["redis result backend"]["ok"] is False
    assert checks[f"queue {ASSIGNMENTS_QUEUE}"]["detail"] == "not checked: the broker is down"
    assert DOWN_PASSWORD not in result.output


def test_health_fails_when_a_required_worker_does_not_answer(stack: Stack, server_env: dict[str, str]) -> None:
    result = run_health(server_env, "--json", "--queue", ASSIGNMENTS_QUEUE, "--worker", "ghost@nowhere")
    assert result.exit_code == 1
    checks = checks_by_component(result)
    assert checks["worker ghost@nowhere"] == {"component": "worker ghost@nowhere", "ok": False,
                                              "detail": "did not answer inspect", "warning": False}
    assert checks[f"queue {ASSIGNMENTS_QUEUE}"]["ok"] is True
    assert f"queue {BATCH_QUEUE}" not in checks


def test_health_without_workers_checks_only_the_servers(server_env: dict[str, str]) -> None:
    result = run_health(server_env, "--json", "--no-workers")
    assert result.exit_code == 0, result.output
    assert set(checks_by_component(result)) == {"mongodb", "mongodb durability", "redis broker",
                                                 "redis result backend"}


@pytest.mark.slow
def test_compose_worker_healthcheck_command_passes_for_a_live_worker(
        stack: Stack, server_env: dict[str, str]) -> None:
    worker = worker_named(stack, ASSIGNMENTS_QUEUE)
    argv = [sys.executable, "-m", "producers", "health", "--queue", ASSIGNMENTS_QUEUE, "--worker", worker]
    completed = subprocess.run(argv, env=project_env(server_env), capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert f"worker {worker}" in completed.stdout
