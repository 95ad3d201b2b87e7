"""A session's list of allowed outcomes, through real workers: a typo is refused and changes nothing."""

from __future__ import annotations

import hashlib
import time
from typing import Any

import bson
import pytest
from pymongo.database import Database

from callqueue.config import Settings
from callqueue.producers.client import AssignmentClient
from callqueue.workers.exceptions import InvalidArgument
from callqueue.workers.store import SESSIONS, STUDENTS


def session_fingerprint(database: Database, session_id: str) -> str:
    """A digest of the session's document and of its students, byte for byte (BSON)."""
    digest = hashlib.sha256()
    for document in [database[SESSIONS].find_one({"_id": session_id}),
                     *database[STUDENTS].find({"call_session_id": session_id}, sort=[("_id", 1)])]:
        digest.update(bson.encode(document))
    return digest.hexdigest()


def batch(client: AssignmentClient, session_id: str, student_id: str, outcome: str) -> dict[str, Any]:
    """One batch item's result."""
    return client.complete_batch([{"call_session_id": session_id, "student_id": student_id,
                                   "outcome": outcome}])["items"][0]


def test_with_a_list_a_typo_is_refused_unchanged_and_without_one_any_outcome_is_accepted(
        client: AssignmentClient, session_id: str, app_database: Database, settings: Settings) -> None:
    client.import_students(session_id, [{"student_id": f"s{n}"} for n in range(3)])
    campaign = client.set_campaign(session_id, allowed_outcomes=["reached", "no_answer", "reached"])
    assert campaign["allowed_outcomes"] == ["reached", "no_answer"]
    with pytest.raises(InvalidArgument, match="retry rules name outcomes that allowed_outcomes leaves out: voicemail"):
        client.set_campaign(session_id, {"voicemail": {"delay_seconds": 60, "max_attempts": 2}})
    time.sleep(settings.session_cache_seconds + 0.5)  # every worker process has read the list
    held = client.assign_next(session_id, "alice")
    assert held is not None
    before = session_fingerprint(app_database, session_id)

    with pytest.raises(InvalidArgument) as typo:
        client.complete(session_id, held.student_id, "alice", "reachd", held.assignment_token)
    assert typo.value.message == "outcome 'reachd' is not one of this session's outcomes: reached, no_answer"
    assert typo.value.details["allowed_outcomes"] == ["reached", "no_answer"]
    refused = batch(client, session_id, "s1", "reachd")
    assert (refused["status"], refused["error"]["code"]) == ("rejected", "invalid_argument")
    assert "reached, no_answer" in refused["error"]["message"]
    assert session_fingerprint(app_database, session_id) == before

    assert client.complete(session_id, held.student_id, "alice", "reached", held.assignment_token).final
    assert batch(client, session_id, "s1", "no_answer")["status"] == "completed"
    assert "allowed_outcomes" not in client.set_campaign(session_id, allowed_outcomes=[])
    time.sleep(settings.session_cache_seconds + 0.5)
    assert batch(client, session_id, "s2", "reachd")["status"] == "completed"
    assert client.stats(session_id).completed_by_outcome == {"reached": 1, "no_answer": 1, "reachd": 1}
