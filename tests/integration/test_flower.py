"""Flower watching the real workers: its HTTP API, its Prometheus metrics and its tasks page in Chromium.

A Flower of its own (with basic auth, as in docker-compose) is started after
the stack's workers and before a burst of assignment requests, so it sees
every event of that burst. Flower receives events asynchronously, so every
check polls until a bounded deadline.
"""

from __future__ import annotations

import ast
import os
import secrets
import shutil
import signal
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from callqueue.config import Settings
from devstack.servers import Flower
from devstack.stack import Stack
from callqueue.producers.client import AssignmentClient
from callqueue.producers.results import Assigned

ASSIGN_TASK = "callqueue.assign_next_student"
BURST_SIZE = 12
DEADLINE_SECONDS = 30.0
CHROMIUM_PATHS = ("/usr/bin/chromium",)
WINDOW = (1600, 1000)
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync",
                  f"--window-size={WINDOW[0]},{WINDOW[1]}", "--virtual-time-budget=15000"]

T = TypeVar("T")


@dataclass(frozen=True)
class RunningFlower:
    """A started Flower and the login it requires."""

    server: Flower
    user: str
    password: str

    @property
    def auth(self) -> tuple[str, str]:
        return self.user, self.password

    def get(self, path: str, **params: Any) -> requests.Response:
        """GET ``path`` with the login."""
        return requests.get(f"{self.server.url}{path}", params=params, auth=self.auth, timeout=10)

    def page_url(self, path: str) -> str:
        """URL of a page with the login in it, for the browser."""
        return f"http://{self.user}:{self.password}@127.0.0.1:{self.server.port}{path}"


@dataclass(frozen=True)
class Burst:
    """The assignment requests sent while Flower watched."""

    session_id: str
    assigned: list[Assigned]


def poll(read: Callable[[], T], done: Callable[[T], bool], what: str,
         deadline_seconds: float = DEADLINE_SECONDS) -> T:
    """Call ``read`` until ``done`` accepts its value; fail with the last value after the deadline."""
    deadline = time.monotonic() + deadline_seconds
    while True:
        value = read()
        if done(value):
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not reached within {deadline_seconds:.0f}s; last value: {value!r}")
        time.sleep(0.25)


@pytest.fixture(scope="module")
def flower(stack: Stack, server_env: dict[str, str],
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningFlower]:
    """Flower with basic auth on the test broker, already receiving the workers' events."""
    user, password = "ops", secrets.token_urlsafe(18)
    server = Flower(tmp_path_factory.mktemp("flower"), {**server_env, "FLOWER_BASIC_AUTH": f"{user}:{password}"})
    try:
        running = RunningFlower(server.start(), user, password)
        names = {worker.hostname for worker in stack.workers}
        poll(lambda: running.get("/api/workers", status="true").json(),
             lambda alive: all(alive.get(name) for name in names), "Flower seeing every worker alive")
        yield running
    finally:
        server.stop()


@pytest.fixture(scope="module")
def burst(flower: RunningFlower, settings: Settings) -> Burst:
    """Import BURST_SIZE students, then ask for them all at once from BURST_SIZE assistants."""
    session_id = f"flower-{uuid.uuid4().hex[:12]}"
    with AssignmentClient(settings, timeout_seconds=15) as importer:
        importer.import_students(session_id, [{"student_id": f"s{i}", "name": f"Student {i}"}
                                              for i in range(BURST_SIZE)])

    def assign(index: int) -> Assigned:
        with AssignmentClient(settings, timeout_seconds=15) as client:
            assigned = client.assign_next(session_id, f"assistant-{index}")
        assert assigned is not None
        return assigned

    with ThreadPoolExecutor(max_workers=BURST_SIZE) as pool:
        assigned = list(pool.map(assign, range(BURST_SIZE)))
    return Burst(session_id, assigned)


def assignment_tasks(flower: RunningFlower, session_id: str | None = None) -> list[dict[str, Any]]:
    """Flower's assignment tasks, optionally only those of one call session."""
    tasks = flower.get("/api/tasks", taskname=ASSIGN_TASK).json().values()
    if session_id is None:
        return list(tasks)
    return [task for task in tasks if ast.literal_eval(task["kwargs"]).get("call_session_id") == session_id]


def succeeded_events(metrics_text: str, task_name: str) -> float:
    """Sum of ``flower_events_total{type="task-succeeded", task=task_name}`` over all workers."""
    total = 0.0
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if (sample.name == "flower_events_total" and sample.labels.get("task") == task_name
                    and sample.labels.get("type") == "task-succeeded"):
                total += sample.value
    return total


def test_flower_refuses_its_api_without_the_login(flower: RunningFlower) -> None:
    anonymous = requests.get(f"{flower.server.url}/api/workers", timeout=10)
    wrong = requests.get(f"{flower.server.url}/api/workers", auth=(flower.user, "wrong"), timeout=10)
    assert anonymous.status_code == 401
    assert wrong.status_code == 401
    assert flower.get("/api/workers").status_code == 200


def test_flower_lists_every_worker_of_both_queues(flower: RunningFlower, stack: Stack) -> None:
    names = {worker.hostname for worker in stack.workers}
    listed = poll(lambda: flower.get("/api/workers", refresh="true").json(),
                  lambda workers: names <= set(workers), "every worker in /api/workers")
    queues = {name: {queue["name"] for queue in listed[name].get("active_queues", [])} for name in names}
    assert queues == {worker.hostname: {worker.queue} for worker in stack.workers}
    assert all(flower.get("/api/workers", status="true").json()[name] for name in names)


def test_flower_lists_every_assignment_task_as_succeeded(flower: RunningFlower, burst: Burst) -> None:
    tasks = poll(lambda: assignment_tasks(flower, burst.session_id),
                 lambda found: len(found) == BURST_SIZE and all(t["state"] == "SUCCESS" for t in found),
                 f"{BURST_SIZE} SUCCESS tasks in /api/tasks")
    results = [ast.literal_eval(task["result"]) for task in tasks]
    assert {result["student_id"] for result in results} == {item.student_id for item in burst.assigned}
    assert {ast.literal_eval(task["kwargs"])["assistant_id"] for task in tasks} == \
        {item.assigned_to for item in burst.assigned}
    assert all(task["worker"] for task in tasks)


def test_flower_state_filter_returns_the_succeeded_assignments(flower: RunningFlower, burst: Burst) -> None:
    succeeded = poll(lambda: flower.get("/api/tasks", taskname=ASSIGN_TASK, state="SUCCESS").json(),
                     lambda found: len(found) >= BURST_SIZE, "SUCCESS filter of /api/tasks")
    assert all(task["name"] == ASSIGN_TASK and task["state"] == "SUCCESS" for task in succeeded.values())
    assert flower.get("/api/tasks", taskname=ASSIGN_TASK, state="FAILURE").json() == {}


def test_flower_metrics_count_every_succeeded_assignment(flower: RunningFlower, burst: Burst) -> None:
    """``/metrics`` answers without the login (Prometheus scrapes it) and counts each success."""
    metrics_url = f"{flower.server.url}/metrics"
    counted = poll(lambda: succeeded_events(requests.get(metrics_url, timeout=10).text, ASSIGN_TASK),
                   lambda total: total >= BURST_SIZE, "task-succeeded events in /metrics")
    assert counted == len(flower.get("/api/tasks", taskname=ASSIGN_TASK, state="SUCCESS").json())
    metrics = requests.get(metrics_url, timeout=10).text
    assert "flower_task_runtime_seconds_count" in metrics
    assert 'flower_worker_online{worker="' in metrics


def test_flower_log_never_contains_its_login_password(flower: RunningFlower, burst: Burst) -> None:
    log = flower.server.process.log_path.read_text(errors="replace")
    assert "Visit me at" in log or "Broker" in log
    assert flower.password not in log


class TaskRows(HTMLParser):
    """Collects the text of each ``<tr>`` inside the tasks table's ``<tbody>``."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[str] = []
        self._in_body = False
        self._row: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self._row = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "tbody":
            self._in_body = False
        elif tag == "tr" and self._row is not None:
            self.rows.append(" ".join(self._row))
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._row is not None and data.strip():
            self._row.append(data.strip())


@dataclass(frozen=True)
class Browser:
    """Debian's Chromium binary and a throwaway profile directory."""

    binary: str
    profile: Path


def run_chromium(browser: Browser, args: list[str], timeout_seconds: float = 120.0) -> str:
    """Run headless Chromium once and return its stdout; its whole process group is killed afterwards."""
    process = subprocess.Popen([browser.binary, *CHROMIUM_FLAGS, f"--user-data-dir={browser.profile}", *args],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                               text=True, start_new_session=True)
    try:
        stdout, _ = process.communicate(timeout=timeout_seconds)
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()
    assert process.returncode == 0, f"chromium exited with {process.returncode}"
    return stdout


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk."""
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")


@pytest.fixture()
def chromium(tmp_path: Path) -> Browser:
    """Headless Chromium, or a skip naming the Debian package to install."""
    binary = shutil.which("chromium") or next((p for p in CHROMIUM_PATHS if os.access(p, os.X_OK)), None)
    if binary is None:
        pytest.skip("chromium is not installed: apt-get install chromium (Debian's package)")
    return Browser(binary, tmp_path / "chromium-profile")


def test_flower_tasks_page_shows_every_assignment_row_in_chromium(
        flower: RunningFlower, burst: Burst, chromium: Browser, artifacts_dir: Path) -> None:
    poll(lambda: assignment_tasks(flower, burst.session_id),
         lambda found: sum(t["state"] == "SUCCESS" for t in found) == BURST_SIZE, "burst seen by Flower")
    page = flower.page_url(f"/tasks?name={ASSIGN_TASK}")
    dom = run_chromium(chromium, ["--dump-dom", page])
    parser = TaskRows()
    parser.feed(dom)
    assign_rows = [row for row in parser.rows if row.startswith(ASSIGN_TASK)]
    assert len(assign_rows) == BURST_SIZE, parser.rows
    assert all("SUCCESS" in row for row in assign_rows)
    screenshot = artifacts_dir / "flower-tasks.png"
    screenshot.unlink(missing_ok=True)
    run_chromium(chromium, [f"--screenshot={screenshot}", page])
    assert png_size(screenshot) == WINDOW
    assert screenshot.stat().st_size > 20_000
