"""Batch completion jobs on their own queue: bulk, idempotent, with progress."""

from __future__ import annotations

import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from pymongo.database import Database

from callqueue.config import Settings
from callqueue.producers.client import AssignmentClient
from tests.integration.helpers import session_fingerprint, seed
from callqueue.workers.exceptions import SessionClosed
from callqueue.workers.models import PENDING


def all_items(session_id: str, count: int, outcome: str = "loaded") -> list[dict]:
    return [{"call_session_id": session_id, "student_id": f"{session_id}:s{n:05d}", "outcome": outcome}
            for n in range(count)]


def test_complete_batch_of_10000_reports_progress_and_a_second_run_changes_nothing(
        client: AssignmentClient, session_id: str, app_database: Database) -> None:
    seed(client, session_id, 10_000)
    held = client.assign_next(session_id, "alice")
    items = all_items(session_id, 10_000) + [
        {"call_session_id": session_id, "student_id": "no-such-student", "outcome": "loaded"},
        {"call_session_id": session_id, "student_id": {"$ne": None}, "outcome": "loaded"},
    ]
    seen: list[tuple[int, int]] = []

    first = client.complete_batch(items, on_progress=lambda done, total: seen.append((done, total)))

    assert (first["total"], first["completed"], first["rejected"], first["unchanged"]) == (10_002, 9_999, 3, 0)
    codes = {r["index"]: r["error"]["code"] for r in first["items"] if r["status"] == "rejected"}
    held_index = next(n for n, item in enumerate(items) if item["student_id"] == held.student_id)
    assert codes == {held_index: "not_holder",  # a live assignment is never overwritten
                     10_000: "unknown_student", 10_001: "invalid_argument"}
    assert any(0 < done < total == 10_002 for done, total in seen), seen
    before = session_fingerprint(app_database, session_id)

    second = client.complete_batch(items)

    assert (second["completed"], second["unchanged"], second["rejected"]) == (9_999, 9_999, 3)
    assert session_fingerprint(app_database, session_id) == before
    assert client.stats(session_id).completed_by_outcome == {"loaded": 9_999}


def test_batch_items_with_holder_and_token_complete_held_students(client: AssignmentClient, session_id: str) -> None:
    seed(client, session_id, 2)
    held = client.assign_next(session_id, "alice")
    result = client.complete_batch([
        {"call_session_id": session_id, "student_id": held.student_id, "outcome": "reached",
         "assistant_id": "alice", "assignment_token": held.assignment_token},
        {"call_session_id": session_id, "student_id": held.student_id, "outcome": "reached",
         "assistant_id": "alice"},
    ])
    assert [r["status"] for r in result["items"]] == ["completed", "rejected"]
    assert result["items"][1]["error"]["code"] == "invalid_argument"


def test_close_session_while_16_assistants_keep_pressing(client: AssignmentClient, settings: Settings,
                                                         session_id: str, app_database: Database) -> None:
    seed(client, session_id, 3_000)
    closed_at: list[float] = []
    refusals: list[str] = []

    def keep_pressing(assistant: str) -> None:
        with AssignmentClient(settings, timeout_seconds=30) as own:
            while True:
                try:
                    held = own.assign_next(session_id, assistant)
                except SessionClosed:
                    refusals.append(assistant)
                    return
                if held is None:
                    return
                own.complete(session_id, held.student_id, assistant, "reached", held.assignment_token)

    with ThreadPoolExecutor(16) as pool:
        futures = [pool.submit(keep_pressing, f"assistant-{n}") for n in range(16)]
        time.sleep(3)
        summary = client.close_session(session_id, outcome="session_closed")
        closed_at.append(time.time())
        for future in futures:
            future.result(timeout=120)

    students = app_database.call_session_students
    assert summary["closed_students"] > 0 and len(refusals) == 16
    assert students.count_documents({"call_session_id": session_id, "closed_with_session": True,
                                     "assigned_to": {"$ne": None}}) == 0
    assert students.count_documents({"call_session_id": session_id, "filter_status": PENDING}) == 0
    late_claims = students.count_documents({"call_session_id": session_id, "history": {"$elemMatch": {
        "event": "claimed", "at": {"$gt": _utc(closed_at[0])}}}})
    assert late_claims == 0
    with pytest.raises(SessionClosed):
        client.assign_next(session_id, "latecomer")
    reopened = client.reopen_session(session_id)
    assert reopened["reopened_students"] == summary["closed_students"]
    assert client.assign_next(session_id, "latecomer") is not None


def test_get_next_stays_fast_while_a_large_batch_job_runs(client: AssignmentClient, settings: Settings,
                                                          session_id: str) -> None:
    seed(client, session_id, 400)
    batch_session = f"{session_id}-batch"
    seed(client, batch_session, 30_000)
    quiet = press_latencies(client, session_id, "quiet", 80)
    progress: list[int] = []
    job = threading.Thread(target=lambda: AssignmentClient(settings).complete_batch(
        all_items(batch_session, 30_000), on_progress=lambda done, total: progress.append(done)))
    job.start()
    try:
        while not progress:
            time.sleep(0.05)
        busy = press_latencies(client, session_id, "busy", 80)
        still_running = job.is_alive()
    finally:
        job.join(timeout=300)
    assert still_running, "the batch job ended before the measurement did; make it larger"
    ratio = statistics.median(busy) / statistics.median(quiet)
    assert ratio <= 2.0, f"Get Next median {statistics.median(busy) * 1000:.1f} ms during the batch, " \
                         f"{statistics.median(quiet) * 1000:.1f} ms without"


def press_latencies(client: AssignmentClient, session_id: str, prefix: str, presses: int) -> list[float]:
    latencies = []
    for n in range(presses):
        started = time.perf_counter()
        held = client.assign_next(session_id, f"{prefix}-{n}")
        latencies.append(time.perf_counter() - started)
        client.complete(session_id, held.student_id, f"{prefix}-{n}", "reached", held.assignment_token)
    return latencies


def _utc(seconds: float):  # type: ignore[no-untyped-def]
    from datetime import datetime, timezone
    return datetime.fromtimestamp(seconds, timezone.utc)
