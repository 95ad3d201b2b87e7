"""``python -m producers`` as a newcomer runs it, against the test stack."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
