"""The demo as a newcomer runs it: its own servers, a clean summary, nothing left behind."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import requests

from devstack.demo import DemoOptions
from devstack.servers import PROJECT_ROOT, RedisServer

DEMO_VARIABLES = ("MONGO_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND")


def demo_env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in DEMO_VARIABLES}
    return {**env, "PYTHONPATH": PROJECT_ROOT, "COLUMNS": "120"}


def pids_in(output: str) -> list[int]:
    return [int(pid) for pid in re.findall(r"pid (\d+)", output)]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def summary_figure(output: str, label: str) -> str:
    found = re.search(rf"{re.escape(label)}\s*│\s*([^│]*?)\s*│", output)
    assert found, f"no {label!r} line in the summary:\n{output}"
    return found.group(1)


def assert_campaign_summary(output: str, students: int) -> None:
    """Some calls were retried and some called back (by the assistant who asked); every student on the
    do-not-call list was skipped; every student whose zone was open has exactly one final outcome, with every
    attempt in its history; the rest wait for their calling hours; no claim fell outside them."""
    retries = int(summary_figure(output, "retries scheduled (no_answer, 2 s later)"))
    callbacks = int(summary_figure(output, "callbacks scheduled"))
    kept, asked = map(int, summary_figure(output, "taken by the assistant who asked").split(" of "))
    assert retries > 0 and callbacks > 0 and kept == asked == callbacks
    final = int(summary_figure(output, "students with a final outcome"))
    assert int(summary_figure(output, "calls recorded (attempts)")) == final + retries + callbacks
    skipped = int(summary_figure(output, "skipped at import (do-not-call list)"))
    waiting = int(summary_figure(output, "waiting for their calling hours (zone closed)"))
    assert skipped == students // 100 and int(summary_figure(output, "students")) == students - skipped
    assert waiting > 0 and final > 0 and final + waiting == students - skipped  # some zones closed, some open
    assert int(summary_figure(output, "completed")) == final
    for label in ("still pending", "still waiting for a retry or callback", "students given two final outcomes",
                  "attempts not matching the history", "claims outside the student's calling hours"):
        assert summary_figure(output, label) == "0", label


def test_demo_runs_its_own_stack_and_reports_no_double_handouts() -> None:
    finished = subprocess.run([sys.executable, "-m", "devstack", "demo", "--students", "300", "--assistants", "8"],
                              capture_output=True, text=True, timeout=300, cwd=PROJECT_ROOT, env=demo_env())
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert re.search(r"students handed to two assistants\s*│\s*0\b", finished.stdout)
    assert re.search(r"Flower: http://127\.0\.0\.1:\d+/tasks", finished.stdout)
    assert re.search(r"Supervisor dashboard: http://127\.0\.0\.1:\d+/session\?id=demo-\d+", finished.stdout)
    assert re.search(r"Asia/Tokyo\s*│\s*\d\d:\d\d local\s*│\s*(open|closed)", finished.stdout)
    assert_campaign_summary(finished.stdout, students=300)
    requests = int(summary_figure(finished.stdout, "requests: first presses, save-and-next, releases"))
    calls = int(summary_figure(finished.stdout, "calls recorded (attempts)"))
    assert requests < int(summary_figure(finished.stdout, "assigned (hand-outs)")) + calls  # one trip per call
    started = pids_in(finished.stdout)
    assert len(started) == 7  # mongod, redis-server, two worker pools, beat, Flower, the dashboard
    assert not [pid for pid in started if alive(pid)]


def test_demo_on_a_three_member_replica_set_reports_no_double_handouts_and_stops_every_member() -> None:
    finished = subprocess.run([sys.executable, "-m", "devstack", "demo", "--students", "300", "--assistants", "8",
                               "--replica-set", "3"], capture_output=True, text=True, timeout=300,
                              cwd=PROJECT_ROOT, env=demo_env())
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert len(re.findall(r"MongoDB replica set rs0, member \d", finished.stdout)) == 3
    assert re.search(r"students handed to two assistants\s*│\s*0\b", finished.stdout)
    assert_campaign_summary(finished.stdout, students=300)
    started = pids_in(finished.stdout)
    assert len(started) == 9  # three mongod members, redis-server, two worker pools, beat, Flower, the dashboard
    assert not [pid for pid in started if alive(pid)]


def pasted(output: str, command: str, cwd: Path) -> subprocess.CompletedProcess:
    """``command`` run by bash after the held demo's ``cd`` and ``export`` lines, as a person pastes them into a
    new shell (in another folder, with none of the demo's variables and no PYTHONPATH)."""
    lines = [line for line in output.splitlines() if line.startswith(("cd ", "export "))]
    shell_env = {key: value for key, value in demo_env().items() if key not in ("PYTHONPATH", *DEMO_VARIABLES)}
    return subprocess.run(["bash", "-c", "\n".join([*lines, command])], capture_output=True, text=True,
                          timeout=120, cwd=cwd, env=shell_env)


def assert_the_exports_reach_the_stack(output: str, tmp_path: Path) -> None:
    """The printed stats command answers for the demo's session through the pasted exports; Flower's API
    answers with the printed login (and only with it), and lists the demo's calls but none of beat's jobs."""
    session = re.search(r"summary of (demo-\d+)", output).group(1)
    stats = next(line for line in output.splitlines() if re.search(r" -m producers stats --session ", line))
    answered = pasted(output, f"{stats} --json", tmp_path)
    assert answered.returncode == 0, answered.stdout + answered.stderr
    stats = json.loads(answered.stdout)
    assert stats["call_session_id"] == session and stats["completed"] > 0
    assert stats["completed"] + stats["waiting_for_window"] == stats["total"]  # the rest wait for their hours
    flower = dict(re.findall(r"(FLOWER_URL|FLOWER_BASIC_AUTH)=(\S+)", output))
    login = tuple(flower["FLOWER_BASIC_AUTH"].split(":", 1))
    assert requests.get(f"{flower['FLOWER_URL']}/api/workers", timeout=10).status_code == 401
    def listed() -> Counter[str]:
        tasks = requests.get(f"{flower['FLOWER_URL']}/api/tasks", auth=login, timeout=10).json()
        return Counter(task["name"] for task in tasks.values())

    before = listed()
    time.sleep(3 * DemoOptions().promote_interval_seconds)  # beat sends promote_due and reclaim_expired meanwhile
    after = listed()
    assert after["callqueue.assign_next_student"] > 0 or after["callqueue.complete_and_next"] > 0, after
    # Beat's jobs send no events; a promote_due Flower lists was a waiting assistant's nudge during the run.
    assert after["callqueue.reclaim_expired"] == 0 and after["callqueue.promote_due"] == before["callqueue.promote_due"]


def test_the_held_demo_hands_over_its_exports_and_ctrl_c_stops_every_process(tmp_path: Path) -> None:
    demo = subprocess.Popen([sys.executable, "-m", "devstack", "demo", "--students", "50", "--assistants", "3",
                             "--hold"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=PROJECT_ROOT, env=demo_env())
    output = ""
    try:
        deadline = time.monotonic() + 240
        while "Ctrl-C" not in output and time.monotonic() < deadline:
            output += demo.stdout.readline()
        started = pids_in(output)
        assert len(started) == 7 and all(alive(pid) for pid in started)
        assert_the_exports_reach_the_stack(output, tmp_path)
        demo.send_signal(signal.SIGINT)
        output += demo.communicate(timeout=120)[0]
    finally:
        if demo.poll() is None:
            demo.kill()
    assert demo.returncode in (0, 130), output
    assert not [pid for pid in started if alive(pid)]


def test_demo_uses_the_servers_named_in_the_environment(server_env: dict[str, str],
                                                       redis_server: RedisServer) -> None:
    # Redis databases of its own, so that the test session's workers never take the demo's tasks.
    env = {**demo_env(), "MONGO_URL": server_env["MONGO_URL"], "CELERY_BROKER_URL": redis_server.url(12),
           "CELERY_RESULT_BACKEND": redis_server.url(13)}
    finished = subprocess.run([sys.executable, "-m", "devstack", "demo", "--students", "60", "--assistants", "4"],
                              capture_output=True, text=True, timeout=300, cwd=PROJECT_ROOT, env=env)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    mongo_port = server_env["MONGO_URL"].rsplit(":", 1)[1].strip("/")
    assert re.search(rf"MongoDB\s*│\s*external: 127\.0\.0\.1:{mongo_port}", finished.stdout)
    assert re.search(r"Redis\s*│\s*external", finished.stdout)
    assert len(pids_in(finished.stdout)) == 5  # two worker pools, beat, Flower, dashboard: no servers of its own
