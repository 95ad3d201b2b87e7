"""The domain figures Flower cannot know, exported for Prometheus."""

from __future__ import annotations

import re
import sys
import time
import urllib.request
from pathlib import Path
from typing import Callable, Iterator

import pytest

from devstack.processes import ManagedProcess, free_port, wait_until
from devstack.servers import project_env
from devstack.stack import Stack
from callqueue.producers.client import AssignmentClient
from tests.integration.helpers import seed
from callqueue.workers.exceptions import UnknownSession
from callqueue.workers.metrics import FLUSH_INTERVAL_SECONDS


@pytest.fixture()
def exporter(stack: Stack, server_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    port = free_port()
    process = ManagedProcess("exporter", [sys.executable, "-m", "producers", "metrics", "--port", str(port)],
                             tmp_path / "exporter.log", project_env(server_env))
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        process.start()
        wait_until(lambda: scrape(url) is not None, 30, "metrics exporter", process.alive)
        yield url
    finally:
        process.stop()


def scrape_until(url: str, done: Callable[[dict[str, float]], bool], seconds: float) -> dict[str, float]:
    """Scrape until ``done`` accepts the figures or ``seconds`` pass; the last figures either way."""
    deadline = time.monotonic() + seconds
    figures = scrape(url)
    while not done(figures) and time.monotonic() < deadline:
        time.sleep(0.1)
        figures = scrape(url)
    return figures


def scrape(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines() if line and not line.startswith("#")}


def test_exporter_counts_claims_rejections_and_session_figures(exporter: str, client: AssignmentClient,
                                                               session_id: str) -> None:
    seed(client, session_id, 10)
    time.sleep(FLUSH_INTERVAL_SECONDS * 1.5)  # counts of earlier tests have landed
    before = scrape(exporter)
    for assistant in ("a", "b", "c"):
        client.assign_next(session_id, assistant)
    with pytest.raises(UnknownSession):
        client.assign_next(f"{session_id}-missing", "a")

    claimed, unknown = 'callqueue_events_total{event="claimed"}', 'callqueue_rejections_total{code="unknown_session"}'

    def gain(figures: dict[str, float], name: str) -> float:
        return figures.get(name, 0.0) - before.get(name, 0.0)

    # Counts lag by at most one flush interval; wait a few, then they must be exact.
    after = scrape_until(exporter, lambda now: gain(now, claimed) >= 3 and gain(now, unknown) >= 1,
                         FLUSH_INTERVAL_SECONDS * 3)
    assert gain(after, claimed) == 3
    assert gain(after, unknown) == 1
    assert after[f'callqueue_session_students{{call_session_id="{session_id}",state="pending"}}'] == 7
    assert after[f'callqueue_session_students{{call_session_id="{session_id}",state="assigned"}}'] == 3
    assert after[f'callqueue_session_assistants_holding{{call_session_id="{session_id}"}}'] == 3
    assert not [name for name in after if re.search(r"password|secret", name)]


def test_exporter_tells_final_completions_from_retries_and_shows_scheduled_students(
        exporter: str, client: AssignmentClient, session_id: str) -> None:
    seed(client, session_id, 3)
    client.set_campaign(session_id, retry_rules={"no_answer": {"delay_seconds": 3600, "max_attempts": 2}})
    time.sleep(FLUSH_INTERVAL_SECONDS * 1.5)  # counts of earlier tests have landed
    before = scrape(exporter)
    for assistant, outcome in (("a", "no_answer"), ("b", "no_answer"), ("c", "reached")):
        held = client.assign_next(session_id, assistant)
        client.complete(session_id, held.student_id, assistant, outcome, held.assignment_token)

    retried, final = 'callqueue_events_total{event="completed_retry"}', 'callqueue_events_total{event="completed_final"}'

    def gain(figures: dict[str, float], name: str) -> float:
        return figures.get(name, 0.0) - before.get(name, 0.0)

    after = scrape_until(exporter, lambda now: gain(now, retried) >= 2 and gain(now, final) >= 1,
                         FLUSH_INTERVAL_SECONDS * 3)
    assert (gain(after, retried), gain(after, final)) == (2, 1)
    assert after[f'callqueue_session_students{{call_session_id="{session_id}",state="scheduled_retry"}}'] == 2
    assert after[f'callqueue_session_students{{call_session_id="{session_id}",state="completed"}}'] == 1
    assert after[f'callqueue_session_attempts{{call_session_id="{session_id}"}}'] == 3
