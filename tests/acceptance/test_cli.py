"""``python -m producers`` as a newcomer runs it, against the test stack."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from devstack.processes import free_port
from devstack.servers import PROJECT_ROOT
from devstack.stack import Stack


def producers(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "producers", "--timeout", "15", *args],
                          capture_output=True, text=True, timeout=120, cwd=PROJECT_ROOT,
                          env={**env, "PYTHONPATH": PROJECT_ROOT})


def test_import_next_complete_and_stats_from_the_command_line(stack: Stack, server_env: dict[str, str],
                                                              session_id: str, tmp_path: Path) -> None:
    csv_file = tmp_path / "students.csv"
    csv_file.write_text("student_id,name,phone,priority\nA1,Ann,+15550001,0\nB2,Bo,+15550002,3\n")
    imported = producers(server_env, "import", str(csv_file), "--session", session_id, "--name", "CLI test")
    assert imported.returncode == 0, imported.stderr
    assert json.loads(imported.stdout)["inserted"] == 2

    got = producers(server_env, "next", "--session", session_id, "--assistant", "alice")
    assigned = json.loads(got.stdout)
    assert got.returncode == 0 and assigned["student"]["name"] == "Bo"  # priority 3 first

    done = producers(server_env, "complete", "--session", session_id, "--student", assigned["student_id"],
                     "--assistant", "alice", "--token", str(assigned["assignment_token"]), "--outcome", "reached")
    assert done.returncode == 0 and json.loads(done.stdout)["outcome"] == "reached"

    stats = json.loads(producers(server_env, "stats", "--session", session_id, "--json").stdout)
    assert (stats["total"], stats["pending"], stats["completed"]) == (2, 1, 1)
    assert (stats["scheduled"], stats["attempts"]) == (0, 1)


def test_a_rejection_prints_the_structured_error_and_exits_2(stack: Stack, server_env: dict[str, str],
                                                             session_id: str) -> None:
    refused = producers(server_env, "next", "--session", session_id, "--assistant", "alice")
    assert refused.returncode == 2
    assert json.loads(refused.stdout)["error"]["code"] == "unknown_session"


def test_importing_a_json_file_twice_adds_nothing_the_second_time(stack: Stack, server_env: dict[str, str],
                                                                  session_id: str, tmp_path: Path) -> None:
    json_file = tmp_path / "students.json"
    json_file.write_text(json.dumps({"students": [{"name": f"S{n}"} for n in range(30)]}))
    first = producers(server_env, "import", str(json_file), "--session", session_id, "--chunk-size", "7")
    second = producers(server_env, "import", str(json_file), "--session", session_id)
    assert json.loads(first.stdout)["inserted"] == 30
    assert (json.loads(second.stdout)["inserted"], json.loads(second.stdout)["duplicates"]) == (0, 30)
    assert "30/30" in first.stderr  # the progress bar reached the end


def test_a_malformed_file_is_refused_before_anything_is_sent(stack: Stack, server_env: dict[str, str],
                                                             session_id: str, tmp_path: Path) -> None:
    bad = tmp_path / "students.csv"
    bad.write_text("name,priority\nAnn,high\n")
    refused = producers(server_env, "import", str(bad), "--session", session_id)
    assert refused.returncode == 2 and "priority must be an integer" in refused.stdout
    assert producers(server_env, "stats", "--session", session_id, "--json").returncode == 2


def test_batch_commands_follow_the_job_with_a_progress_bar(stack: Stack, server_env: dict[str, str],
                                                           session_id: str, tmp_path: Path) -> None:
    students = tmp_path / "students.csv"
    students.write_text("student_id,name\n" + "".join(f"s{n},Student {n}\n" for n in range(40)))
    assert producers(server_env, "import", str(students), "--session", session_id).returncode == 0
    items = tmp_path / "outcomes.csv"
    items.write_text("call_session_id,student_id,outcome\n"
                     + "".join(f"{session_id},{session_id}:s{n},loaded\n" for n in range(30)))

    loaded = producers(server_env, "complete-batch", str(items))
    assert loaded.returncode == 0, loaded.stderr
    assert (json.loads(loaded.stdout)["completed"], json.loads(loaded.stdout)["rejected"]) == (30, 0)
    assert "completing 30 items" in loaded.stderr

    closed = producers(server_env, "close", "--session", session_id, "--outcome", "not_reached")
    assert json.loads(closed.stdout)["closed_students"] == 10
    refused = producers(server_env, "next", "--session", session_id, "--assistant", "alice")
    assert refused.returncode == 2 and json.loads(refused.stdout)["error"]["code"] == "session_closed"
    reopened = producers(server_env, "reopen", "--session", session_id)
    assert json.loads(reopened.stdout)["reopened_students"] == 10
    assert producers(server_env, "next", "--session", session_id, "--assistant", "alice").returncode == 0


def test_campaign_routing_retries_and_a_personal_callback_from_the_command_line(
        stack: Stack, server_env: dict[str, str], session_id: str, tmp_path: Path) -> None:
    csv_file = tmp_path / "students.csv"
    csv_file.write_text("student_id,name,language\nA1,Ann,fr\nB2,Bo,\nC3,Cy,de\n")
    imported = producers(server_env, "import", str(csv_file), "--session", session_id, "--route-by", "language")
    assert imported.returncode == 0, imported.stderr

    campaign = producers(server_env, "campaign", "--session", session_id, "--retry", "no_answer=3600:2",
                         "--grace", "60")
    assert campaign.returncode == 0, campaign.stderr
    assert json.loads(campaign.stdout) == {
        "status": "ok", "call_session_id": session_id, "callback_grace_seconds": 60,
        "retry_rules": {"no_answer": {"delay_seconds": 3600, "max_attempts": 2}}}

    untagged = json.loads(producers(server_env, "next", "--session", session_id, "--assistant", "alice").stdout)
    assert untagged["student"]["name"] == "Bo"  # Ann (fr) comes first in order, but alice has no skill
    retried = json.loads(producers(
        server_env, "complete", "--session", session_id, "--student", untagged["student_id"], "--assistant",
        "alice", "--token", str(untagged["assignment_token"]), "--outcome", "no_answer").stdout)
    assert (retried["next"], retried["final"], retried["attempt"]) == ("retry", False, 1)
    assert retried["next_attempt_at"] is not None

    french = json.loads(producers(server_env, "next", "--session", session_id, "--assistant", "bob",
                                  "--skill", "es", "--skill", "fr").stdout)
    assert french["student"]["name"] == "Ann"
    callback_at = (datetime.now(timezone.utc) + timedelta(seconds=1)).isoformat()
    called_back = json.loads(producers(
        server_env, "complete", "--session", session_id, "--student", french["student_id"], "--assistant", "bob",
        "--token", str(french["assignment_token"]), "--outcome", "call_back_later",
        "--callback-at", callback_at, "--callback-assistant", "bob").stdout)
    assert (called_back["next"], called_back["callback_assistant"]) == ("callback", "bob")

    stats = json.loads(producers(server_env, "stats", "--session", session_id, "--json").stdout)
    assert (stats["scheduled_retries"], stats["attempts"], stats["completed"], stats["total"]) == (1, 2, 0, 3)
    table = producers(server_env, "stats", "--session", session_id)
    assert "scheduled retries" in table.stdout and "attempts" in table.stdout

    # Once due, the callback is bob's alone: his press without the fr skill takes Ann, not Cy (de) or anyone.
    deadline = time.monotonic() + 30
    while True:
        again = json.loads(producers(server_env, "next", "--session", session_id, "--assistant", "bob").stdout)
        if again["status"] == "assigned" or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert (again["status"], again["student"]["name"]) == ("assigned", "Ann")

    cleared = producers(server_env, "campaign", "--session", session_id, "--no-retries")
    assert json.loads(cleared.stdout)["retry_rules"] == {}
    malformed = producers(server_env, "campaign", "--session", session_id, "--retry", "no_answer=soon")
    assert malformed.returncode == 2 and "OUTCOME=DELAY_SECONDS:MAX_ATTEMPTS" in malformed.stderr


def test_complete_next_saves_and_hands_out_the_next_one_and_waits_for_a_scheduled_one(
        stack: Stack, server_env: dict[str, str], session_id: str, tmp_path: Path) -> None:
    rows = tmp_path / "students.json"
    rows.write_text(json.dumps([{"student_id": "A1", "name": "Ann"}, {"student_id": "B2", "name": "Bo"}]))
    assert producers(server_env, "import", str(rows), "--session", session_id).returncode == 0
    assert producers(server_env, "campaign", "--session", session_id, "--retry", "no_answer=2:2").returncode == 0
    first = json.loads(producers(server_env, "next", "--session", session_id, "--assistant", "alice").stdout)

    def save_and_next(held: dict[str, Any], outcome: str, *extra: str) -> dict[str, Any]:
        done = producers(server_env, "complete-next", "--session", session_id, "--student", held["student_id"],
                         "--assistant", "alice", "--token", str(held["assignment_token"]), "--outcome", outcome,
                         *extra)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    second = save_and_next(first, "reached")
    assert (second["completion"]["outcome"], second["next"]["status"]) == ("reached", "assigned")
    assert second["next"]["student_id"] != first["student_id"]
    waited = save_and_next(second["next"], "no_answer", "--wait", "20")
    assert waited["completion"]["next"] == "retry"
    assert (waited["next"]["status"], waited["next"]["student_id"]) == ("assigned", second["next"]["student_id"])
    last = save_and_next(waited["next"], "reached")
    assert last["next"] == {"status": "exhausted", "call_session_id": session_id, "reason": "none_left",
                            "next_due_at": None, "scheduled": 0, "held_by_others": 0}


def test_complete_takes_the_id_as_imported_and_an_unknown_id_names_the_forms_tried(
        stack: Stack, server_env: dict[str, str], session_id: str, tmp_path: Path) -> None:
    csv_file = tmp_path / "students.csv"
    csv_file.write_text("student_id,name\ns2,Eve\n")
    assert producers(server_env, "import", str(csv_file), "--session", session_id).returncode == 0
    assigned = json.loads(producers(server_env, "next", "--session", session_id, "--assistant", "alice").stdout)
    assert (assigned["student_id"], assigned["import_id"]) == (f"{session_id}:s2", "s2")

    holder = ("--session", session_id, "--assistant", "alice", "--token", str(assigned["assignment_token"]))
    unknown = producers(server_env, "complete", *holder, "--student", "s9", "--outcome", "reached")
    assert unknown.returncode == 2 and json.loads(unknown.stdout)["error"]["code"] == "unknown_student"
    assert f"student 's9' is not in call session '{session_id}' (tried as the import's id, stored as " \
           f"'{session_id}:s9')" in json.loads(unknown.stdout)["error"]["message"]
    done = producers(server_env, "complete", *holder, "--student", "s2", "--outcome", "reached")
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["student_id"] == f"{session_id}:s2"
    assert json.loads(done.stdout)["import_id"] == "s2"


def timed_cli(env: dict[str, str], *args: str) -> tuple[subprocess.CompletedProcess, float]:
    """``python -m producers ARGS`` and its wall time, in seconds."""
    started = time.monotonic()
    finished = subprocess.run([sys.executable, "-m", "producers", *args], capture_output=True, text=True,
                              timeout=120, cwd=PROJECT_ROOT, env={**env, "PYTHONPATH": PROJECT_ROOT})
    return finished, time.monotonic() - started


def test_a_dead_redis_is_reported_within_the_client_timeout_naming_its_url_without_the_password() -> None:
    dead = f"redis://:hunter2@127.0.0.1:{free_port()}"
    env = {**os.environ, "CELERY_BROKER_URL": f"{dead}/0", "CELERY_RESULT_BACKEND": f"{dead}/1",
           "CALLQUEUE_CLIENT_TIMEOUT_SECONDS": "4"}
    _, startup = timed_cli(env, "stats", "--help")  # the interpreter and imports, without a call

    failed, seconds = timed_cli(env, "stats", "--session", "any")

    assert failed.returncode == 3, failed.stdout + failed.stderr
    error = json.loads(failed.stdout)["error"]
    assert error["code"] == "BrokerUnavailable"
    masked = dead.replace("hunter2", "**")
    assert f"running at {masked}/0 (CELERY_BROKER_URL) and {masked}/1 (CELERY_RESULT_BACKEND)" in error["message"]
    assert "hunter2" not in failed.stdout + failed.stderr and "must be restarted" not in error["message"]
    assert seconds - startup < 4


def test_without_broker_urls_the_cli_says_what_to_set_instead_of_trying_a_default_redis() -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("CELERY_")}
    refused, _ = timed_cli(env, "next", "--session", "any", "--assistant", "alice")
    assert refused.returncode == 3
    error = json.loads(refused.stdout)["error"]
    assert error["code"] == "ConfigurationError"
    assert error["message"].startswith("CELERY_BROKER_URL and CELERY_RESULT_BACKEND are not set")


def test_calling_hours_zones_and_do_not_call_from_the_command_line(stack: Stack, server_env: dict[str, str],
                                                                  session_id: str, tmp_path: Path) -> None:
    csv_file = tmp_path / "students.csv"
    csv_file.write_text("student_id,name,tz,phone\nA1,Ann,Pacific/Kiritimati,+1 212 555 0101\n"
                        "B2,Bo,,+1 312 555 0102\nC3,Cy,,\n")
    imported = producers(server_env, "import", str(csv_file), "--session", session_id, "--zone-by", "tz",
                         "--phone-by", "phone")
    assert imported.returncode == 0, imported.stderr
    assert (json.loads(imported.stdout)["inserted"], json.loads(imported.stdout)["suppressed"]) == (3, 0)
    today = datetime.now(timezone.utc).date()
    holidays = [arg for offset in (-1, 0, 1) for arg in ("--holiday", (today + timedelta(days=offset)).isoformat())]
    hours = producers(server_env, "hours", "--session", session_id, "--day", "mon-sun=00:00-24:00", "--zone", "UTC",
                      "--unknown-zone", "not_called", *holidays)
    assert hours.returncode == 0, hours.stdout + hours.stderr
    answer = json.loads(hours.stdout)["calling_hours"]
    assert answer["days"]["wed"] == ["00:00-24:00"] and answer["unknown_zone"] == "not_called"
    stats = json.loads(producers(server_env, "stats", "--session", session_id, "--json").stdout)
    assert (stats["waiting_for_window"], stats["pending"]) == (3, 0)  # a holiday everywhere, Cy never
    table = producers(server_env, "stats", "--session", session_id).stdout
    assert "waiting for their calling hours" in table

    suppressed = producers(server_env, "suppress", "--number", "+12125550101", "--session", session_id)
    assert json.loads(suppressed.stdout)["do_not_call"] == 1
    listed = json.loads(producers(server_env, "suppressed", "--session", session_id).stdout)
    assert [entry["value"] for entry in listed["entries"]] == ["+12125550101"]
    again = producers(server_env, "import", str(csv_file), "--session", session_id, "--phone-by", "phone")
    assert (json.loads(again.stdout)["suppressed"], json.loads(again.stdout)["duplicates"]) == (1, 2)
    removed = producers(server_env, "unsuppress", "--number", "+1 212 555 0101", "--session", session_id)
    assert json.loads(removed.stdout)["removed"] == 1
    removed_hours = producers(server_env, "hours", "--session", session_id, "--none")
    assert json.loads(removed_hours.stdout)["calling_hours"] is None
    bad = producers(server_env, "hours", "--session", session_id, "--day", "mon=25:00-26:00", "--zone", "UTC")
    assert bad.returncode == 2 and json.loads(bad.stdout)["error"]["code"] == "invalid_argument"
