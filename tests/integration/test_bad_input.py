"""Bad input gets a structured rejection, changes nothing, and the workers keep serving."""

from __future__ import annotations

from typing import Any

import pytest
from pymongo.database import Database

from callqueue.producers.client import AssignmentClient
from tests.integration.helpers import session_fingerprint, seed

BAD_CALLS: list[tuple[str, str, dict[str, Any]]] = [
    ("unknown session", "callqueue.assign_next_student", {"call_session_id": "no-such-session", "assistant_id": "a"}),
    ("empty assistant", "callqueue.assign_next_student", {"assistant_id": ""}),
    ("non-string assistant", "callqueue.assign_next_student", {"assistant_id": 42}),
    ("operator as session", "callqueue.assign_next_student", {"call_session_id": {"$ne": None}, "assistant_id": "a"}),
    ("operator as assistant", "callqueue.assign_next_student", {"assistant_id": {"$gt": ""}}),
    ("operator-like string", "callqueue.assign_next_student", {"assistant_id": "$where"}),
    ("oversized assistant", "callqueue.assign_next_student", {"assistant_id": "a" * 10_000}),
    ("missing assistant", "callqueue.assign_next_student", {"assistant_id": None, "_drop": "assistant_id"}),
    ("unknown argument", "callqueue.assign_next_student", {"assistant_id": "a", "colour": "red"}),
    ("operator as student", "callqueue.complete_student", {"student_id": {"$ne": None}}),
    ("token as string", "callqueue.complete_student", {"assignment_token": "1"}),
    ("token as bool", "callqueue.complete_student", {"assignment_token": True}),
    ("empty outcome", "callqueue.complete_student", {"outcome": ""}),
    ("outcome not a string", "callqueue.complete_student", {"outcome": ["reached"]}),
    ("missing outcome", "callqueue.complete_student", {"_drop": "outcome"}),
    ("release by non-holder", "callqueue.release_student", {"assistant_id": "mallory"}),
    ("students not a list", "callqueue.import_students", {"students": {"$set": {}}}),
    ("student with operator key", "callqueue.import_students", {"students": [{"$set": {"x": 1}}]}),
    ("priority as text", "callqueue.import_students", {"students": [{"name": "x", "priority": "high"}]}),
    ("stats of operator", "callqueue.session_stats", {"call_session_id": {"$exists": True}}),
]

CODES = {"invalid_argument", "missing_argument", "too_large", "unknown_session", "not_holder"}


def base_arguments(task: str, session_id: str, student_id: str, token: int) -> dict[str, Any]:
    return {
        "callqueue.assign_next_student": {"call_session_id": session_id, "assistant_id": "alice"},
        "callqueue.complete_student": {"call_session_id": session_id, "student_id": student_id,
                                       "assistant_id": "alice", "outcome": "reached", "assignment_token": token},
        "callqueue.release_student": {"call_session_id": session_id, "student_id": student_id,
                                      "assistant_id": "alice", "assignment_token": token},
        "callqueue.import_students": {"call_session_id": session_id, "students": [{"name": "x"}]},
        "callqueue.session_stats": {"call_session_id": session_id},
    }[task]


@pytest.mark.parametrize(("case", "task", "changes"), BAD_CALLS, ids=[case for case, _, _ in BAD_CALLS])
def test_bad_input_is_rejected_and_changes_nothing(client: AssignmentClient, session_id: str,
                                                   app_database: Database, case: str, task: str,
                                                   changes: dict[str, Any]) -> None:
    seed(client, session_id, 3)
    held = client.assign_next(session_id, "alice")
    arguments = {**base_arguments(task, session_id, held.student_id, held.assignment_token), **changes}
    arguments.pop(arguments.pop("_drop", "_none"), None)
    before = session_fingerprint(app_database, session_id)

    result = client.app.send_task(task, kwargs=arguments).get(timeout=15)

    assert result["status"] == "rejected", case
    assert result["error"]["code"] in CODES and result["error"]["message"]
    assert session_fingerprint(app_database, session_id) == before
    assert client.assign_next(session_id, "bob") is not None  # the worker still serves
