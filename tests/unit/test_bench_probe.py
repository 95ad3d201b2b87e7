"""The benchmark's claim-only probe makes the same claim as the real task (against a real mongod)."""

from __future__ import annotations

import pytest
from pymongo.database import Database

import bench.tasks
from callqueue.workers.store import AssignmentStore, NewStudent


def test_the_claim_only_probe_claims_each_student_once_in_claim_order(
        store: AssignmentStore, engine_database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench.tasks, "get_database", lambda settings: engine_database)
    store.import_students("s", None, [NewStudent({"n": 0}), NewStudent({"n": 1}, priority=5)])
    answers = [bench.tasks.claim_only("s", assistant, f"r-{assistant}") for assistant in ("a", "b", "c")]
    assert [answer["status"] for answer in answers] == ["assigned", "assigned", "exhausted"]
    assert [answer["student"]["n"] for answer in answers[:2]] == [1, 0]
