"""Hostile input through real workers: always a structured answer, never a crash, rejections change nothing.

Everything here runs against a private stack (its own database and Redis
databases, no beat), so ``fingerprint`` covers only what these calls did and
a worker crash cannot hurt the rest of the suite. Every call waits for its
answer while watching the worker processes, so a crash fails at once instead
of timing out.
"""

from __future__ import annotations

import copy
from datetime import datetime, timedelta, timezone
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any, Iterator

import pytest
from celery.result import AsyncResult
from hypothesis import HealthCheck, event, given, settings, strategies as st
from kombu.exceptions import EncodeError
from pymongo import MongoClient

from devstack.servers import RedisServer
from callqueue.producers.client import AssignmentClient
from callqueue.producers.results import Assigned
from tests.integration.helpers import fingerprint
from tests.integration.private_stack import PrivateStack, private_stack, publish_raw, queue_length
from callqueue.workers.app import ASSIGNMENTS_QUEUE, BATCH_QUEUE
from callqueue.workers.exceptions import InvalidArgument, NotHolder, UnknownStudent

# task name -> (parameters in order, statuses of an accepted call)
TASKS: dict[str, tuple[tuple[str, ...], frozenset[str]]] = {
    "callqueue.import_students": (("call_session_id", "students", "session_name", "route_by", "zone_by",
                                   "phone_by"), frozenset({"imported"})),
    "callqueue.assign_next_student": (("call_session_id", "assistant_id", "request_id", "skills"),
                                      frozenset({"assigned", "exhausted"})),
    "callqueue.complete_student": (("call_session_id", "student_id", "assistant_id", "outcome", "assignment_token",
                                    "callback_at", "callback_assistant"), frozenset({"completed"})),
    "callqueue.complete_and_next": (("call_session_id", "student_id", "assistant_id", "outcome", "assignment_token",
                                     "callback_at", "callback_assistant", "request_id", "skills"),
                                    frozenset({"completed_and_next"})),
    "callqueue.release_student": (("call_session_id", "student_id", "assistant_id", "assignment_token"),
                                  frozenset({"released"})),
    "callqueue.session_stats": (("call_session_id",), frozenset({"ok"})),
    "callqueue.assistant_stats": (("call_session_id",), frozenset({"ok"})),
    "callqueue.set_lease": (("call_session_id", "lease_seconds"), frozenset({"ok"})),
    "callqueue.heartbeat": (("call_session_id", "student_id", "assistant_id", "assignment_token"),
                            frozenset({"renewed"})),
    "callqueue.reclaim_expired": ((), frozenset({"ok"})),
    "callqueue.release_assistant": (("call_session_id", "assistant_id"), frozenset({"ok"})),
    "callqueue.complete_batch": (("items",), frozenset({"done"})),
    "callqueue.close_session": (("call_session_id", "outcome", "force"), frozenset({"closed"})),
    "callqueue.reopen_session": (("call_session_id",), frozenset({"open"})),
    "callqueue.set_campaign": (("call_session_id", "retry_rules", "callback_grace_seconds", "allowed_outcomes"),
                               frozenset({"ok"})),
    "callqueue.promote_due": ((), frozenset({"ok"})),
    "callqueue.set_calling_hours": (("call_session_id", "calling_hours"), frozenset({"ok"})),
    "callqueue.suppress": (("call_session_id", "numbers", "student_ids"), frozenset({"suppressed"})),
    "callqueue.unsuppress": (("call_session_id", "numbers", "student_ids"), frozenset({"unsuppressed"})),
    "callqueue.list_suppressed": (("call_session_id", "after", "limit"), frozenset({"ok"})),
}
REJECTION_CODES = frozenset({
    "invalid_argument", "missing_argument", "too_large", "unknown_session", "session_closed", "unknown_student",
    "not_holder", "not_assigned", "stale_token", "already_completed", "request_id_conflict",
    "request_already_served",
})
OPERATORS: list[Any] = [{"$ne": None}, {"$gt": ""}, {"$where": "sleep(1000)"}]
DEEP_ENOUGH_TO_ENCODE = 600
IN_A_MONTH = (datetime.now(timezone.utc) + timedelta(days=30)).isoformat()
TEN_THOUSAND = 10_000
MILLION = 1_000_000
VALID_HOURS = {"days": {"mon": ["09:00-20:00"], "sat": ["10:00-16:00"]}, "holidays": ["2026-12-25"],
               "default_zone": "America/New_York", "unknown_zone": "not_called"}

# (task, field) for every id, token and text field a caller sends; "[0]" is the first import row or batch item.
ID_FIELDS: list[tuple[str, str]] = [
    ("callqueue.import_students", "call_session_id"),
    ("callqueue.import_students", "students[0].student_id"),
    ("callqueue.assign_next_student", "call_session_id"),
    ("callqueue.assign_next_student", "assistant_id"),
    ("callqueue.assign_next_student", "request_id"),
    ("callqueue.complete_student", "call_session_id"),
    ("callqueue.complete_student", "student_id"),
    ("callqueue.complete_student", "assistant_id"),
    ("callqueue.complete_student", "outcome"),
    ("callqueue.release_student", "call_session_id"),
    ("callqueue.release_student", "student_id"),
    ("callqueue.release_student", "assistant_id"),
    ("callqueue.session_stats", "call_session_id"),
    ("callqueue.assistant_stats", "call_session_id"),
    ("callqueue.set_lease", "call_session_id"),
    ("callqueue.heartbeat", "call_session_id"),
    ("callqueue.heartbeat", "student_id"),
    ("callqueue.heartbeat", "assistant_id"),
    ("callqueue.release_assistant", "call_session_id"),
    ("callqueue.release_assistant", "assistant_id"),
    ("callqueue.complete_batch", "items[0].call_session_id"),
    ("callqueue.complete_batch", "items[0].student_id"),
    ("callqueue.complete_batch", "items[0].outcome"),
    ("callqueue.complete_batch", "items[0].assistant_id"),
    ("callqueue.close_session", "call_session_id"),
    ("callqueue.close_session", "outcome"),
    ("callqueue.reopen_session", "call_session_id"),
    ("callqueue.import_students", "route_by"),
    ("callqueue.import_students", "students[0].language"),
    ("callqueue.complete_student", "callback_at"),
    ("callqueue.complete_student", "callback_assistant"),
    ("callqueue.set_campaign", "call_session_id"),
    ("callqueue.complete_batch", "items[0].callback_at"),
    ("callqueue.complete_batch", "items[0].callback_assistant"),
    ("callqueue.complete_and_next", "call_session_id"),
    ("callqueue.complete_and_next", "request_id"),
    ("callqueue.import_students", "zone_by"),
    ("callqueue.import_students", "phone_by"),
    ("callqueue.set_calling_hours", "call_session_id"),
    ("callqueue.suppress", "call_session_id"),
    ("callqueue.unsuppress", "call_session_id"),
    ("callqueue.list_suppressed", "call_session_id"),
]
TOKEN_FIELDS: list[tuple[str, str]] = [
    ("callqueue.complete_student", "assignment_token"),
    ("callqueue.release_student", "assignment_token"),
    ("callqueue.heartbeat", "assignment_token"),
    ("callqueue.complete_batch", "items[0].assignment_token"),
    ("callqueue.set_lease", "lease_seconds"),
    ("callqueue.set_campaign", "retry_rules"),
    ("callqueue.set_campaign", "callback_grace_seconds"),
    ("callqueue.assign_next_student", "skills"),
    ("callqueue.complete_and_next", "assignment_token"),
    ("callqueue.complete_and_next", "skills"),
    ("callqueue.set_calling_hours", "calling_hours"),
    ("callqueue.suppress", "numbers"),
    ("callqueue.suppress", "student_ids"),
    ("callqueue.unsuppress", "numbers"),
    ("callqueue.list_suppressed", "after"),
    ("callqueue.list_suppressed", "limit"),
    ("callqueue.import_students", "students[0].tz"),
    ("callqueue.import_students", "students[0].phone"),
]
TEXT_FIELDS: list[tuple[str, str]] = [("callqueue.import_students", "session_name")]


def field_id(task: str, field: str) -> str:
    return f"{task.removeprefix('callqueue.')}-{field}"


@pytest.fixture(scope="module")
def hostile(server_env: dict[str, str], redis_server: RedisServer,
            mongo_client: MongoClient) -> Iterator[PrivateStack]:
    with private_stack(server_env, redis_server, mongo_client, "hostile", broker_db=6, backend_db=7) as running:
        with running.client() as warm_up:  # both pools touch MongoDB once, so indexes and collections exist
            running.call(warm_up, "callqueue.import_students",
                         kwargs={"call_session_id": "warm-up", "students": [{"name": "warm-up"}]})
            running.call(warm_up, "callqueue.session_stats", kwargs={"call_session_id": "warm-up"})
        yield running


@pytest.fixture()
def client(hostile: PrivateStack) -> Iterator[AssignmentClient]:
    with hostile.client() as assignment_client:
        yield assignment_client


@dataclass(frozen=True)
class Seeded:
    """A fresh session of four students; alice holds one of them."""

    session_id: str
    student_ids: tuple[str, ...]
    held: Assigned


@pytest.fixture()
def seeded(hostile: PrivateStack, client: AssignmentClient) -> Seeded:
    session_id = f"hostile-{uuid.uuid4().hex[:12]}"
    client.import_students(session_id, [{"student_id": f"st{n}", "name": f"Student {n}"} for n in range(4)])
    held = client.assign_next(session_id, "alice")
    assert held is not None
    stored = hostile.database["call_session_students"].find({"call_session_id": session_id}, {"_id": 1})
    return Seeded(session_id, tuple(sorted(document["_id"] for document in stored)), held)


def base_call(task: str, seeded: Seeded) -> dict[str, Any]:
    """A call of ``task`` that the workers accept (``assert_accepted`` checks its answer)."""
    session, held = seeded.session_id, seeded.held
    hold = {"call_session_id": session, "student_id": held.student_id, "assistant_id": "alice",
            "assignment_token": held.assignment_token}
    return copy.deepcopy({
        "callqueue.import_students": {"call_session_id": session, "session_name": "Evening", "route_by": "language",
                                      "zone_by": "tz", "phone_by": "phone",
                                      "students": [{"student_id": "new-1", "name": "New", "language": "es",
                                                    "tz": "America/Chicago", "phone": "+1 312 555 0100"}]},
        "callqueue.assign_next_student": {"call_session_id": session, "assistant_id": "bob",
                                          "request_id": f"{session}-bob-1", "skills": ["es", "fr"]},
        "callqueue.complete_student": {**hold, "outcome": "call_back", "callback_at": IN_A_MONTH,
                                       "callback_assistant": "alice"},
        "callqueue.complete_and_next": {**hold, "outcome": "reached", "request_id": f"{session}-alice-2",
                                        "skills": ["es"]},
        "callqueue.release_student": hold,
        "callqueue.session_stats": {"call_session_id": session},
        "callqueue.assistant_stats": {"call_session_id": session},
        "callqueue.set_lease": {"call_session_id": session, "lease_seconds": 60},
        "callqueue.heartbeat": hold,
        "callqueue.release_assistant": {"call_session_id": session, "assistant_id": "alice"},
        "callqueue.complete_batch": {"items": [{**hold, "outcome": "reached"}]},
        "callqueue.close_session": {"call_session_id": session, "outcome": "session_closed", "force": False},
        "callqueue.reopen_session": {"call_session_id": session},
        "callqueue.reclaim_expired": {},
        "callqueue.set_campaign": {"call_session_id": session, "callback_grace_seconds": 60,
                                   "retry_rules": {"no_answer": {"delay_seconds": 60, "max_attempts": 2}}},
        "callqueue.promote_due": {},
        "callqueue.set_calling_hours": {"call_session_id": session, "calling_hours": VALID_HOURS},
        "callqueue.suppress": {"call_session_id": session, "numbers": ["+12125550100"],
                               "student_ids": [held.student_id]},
        "callqueue.unsuppress": {"call_session_id": session, "numbers": ["+12125550100"], "student_ids": None},
        "callqueue.list_suppressed": {"call_session_id": session, "after": None, "limit": 10},
    }[task])


def assert_accepted(task: str, answer: dict[str, Any]) -> None:
    """The base call really did what it says (so a rejection of its hostile variant is meaningful)."""
    assert answer["status"] in TASKS[task][1], answer
    if task == "callqueue.complete_batch":
        assert answer["completed"] == 1, answer
    if task == "callqueue.release_assistant":
        assert answer["released"] == 1, answer


def with_value(arguments: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of ``arguments`` with ``path`` (``name`` or ``list[0].name``) set to ``value``."""
    changed = copy.deepcopy(arguments)
    match = re.fullmatch(r"(\w+)\[0\]\.(\w+)", path)
    if match:
        changed[match.group(1)][0][match.group(2)] = value
    else:
        changed[path] = value
    return changed


def rejection(task: str, answer: dict[str, Any]) -> dict[str, Any]:
    """The error of a rejected call (for a batch job: of its only item)."""
    if task == "callqueue.complete_batch":
        assert answer["status"] == "done" and answer["rejected"] == 1 and answer["completed"] == 0, answer
        answer = answer["items"][0]
    assert answer["status"] == "rejected", answer
    return answer["error"]


def rejection_whole(answer: dict[str, Any]) -> dict[str, Any]:
    """The error of a call refused as a whole (batch jobs included)."""
    assert answer["status"] == "rejected", {key: answer[key] for key in answer if key != "items"}
    return answer["error"]


def assert_structured(task: str, answer: Any) -> None:
    """A documented status, or a rejection with a known code and a message."""
    assert isinstance(answer, dict), answer
    if answer.get("status") == "rejected":
        error = answer.get("error")
        assert isinstance(error, dict) and error.get("code") in REJECTION_CODES, answer
        assert isinstance(error.get("message"), str) and error["message"], answer
    else:
        assert answer.get("status") in TASKS[task][1], answer
    if task == "callqueue.complete_batch" and answer.get("status") == "done":
        for item in answer["items"]:
            assert item["status"] in ("completed", "rejected"), item
            if item["status"] == "rejected":
                assert item["error"]["code"] in REJECTION_CODES and item["error"]["message"], item


def nested(depth: int) -> dict[str, Any]:
    """An object nested ``depth`` levels deep, built without recursion."""
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"a": value}
    return value


# -- strategies -------------------------------------------------------------------------------------------

TRICKY_TEXT = ["$ne", "$where", "$gt", "$", "$$ROOT", "$assigned_to", "a.b", "x$y", ".", "..", ".*", "^",
               "", " ", "\t", "\x00", "a\x00b", "\x7f", "\u202e", "\U0001f600", "x" * 128, "x" * 129,
               "reached", "alice", "null", "true", "{}", "[]"]
HUGE_INTS = [2**31, 2**62, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**40, -(10**40), 0, -1]
KEYS = st.one_of(st.text(max_size=10), st.sampled_from(
    ["$ne", "$gt", "$where", "$set", "$in", "a.b", "x$y", "", "\x00", "_id", "student_id", "priority",
     "position", "call_session_id", "assistant_id", "assignment_token", "outcome", "history"]))
EXTRA_KEYWORDS = st.one_of(st.sampled_from(["self", "colour", "", "$where", "a.b", "args", "kwargs", "request",
                                            "task_id", "call_session_id", "students", "items"]),
                           st.text(max_size=8))
LEAVES = st.one_of(
    st.none(), st.booleans(), st.integers(), st.sampled_from(HUGE_INTS),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=40), st.sampled_from(TRICKY_TEXT),
    st.text(alphabet="$.:ab", max_size=6),
)
JSON_VALUES = st.recursive(
    LEAVES,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(KEYS, children, max_size=4)),
    max_leaves=12,
)


def plausible(seeded: Seeded) -> dict[str, st.SearchStrategy[Any]]:
    """Values that may well be accepted for each parameter, so hostile calls reach past the first check."""
    sessions = st.sampled_from([seeded.session_id, seeded.session_id, f"{seeded.session_id}-other"])
    students = st.sampled_from([*seeded.student_ids, seeded.held.student_id])
    assistants = st.sampled_from(["alice", "bob", "a.b", "x$y"])
    tokens = st.sampled_from([seeded.held.assignment_token, 1, 2, 3])
    row = st.fixed_dictionaries(
        {"name": st.text(max_size=10)},
        optional={"student_id": st.sampled_from(["st0", "st9", "a.b", "x$y"]),
                  "priority": st.integers(-3, 3), "position": st.integers(0, 50),
                  "extra": JSON_VALUES},
    )
    item = st.fixed_dictionaries(
        {"call_session_id": sessions, "student_id": students, "outcome": st.sampled_from(["reached", "voicemail"])},
        optional={"assistant_id": assistants, "assignment_token": tokens},
    )
    return {
        "call_session_id": sessions,
        "assistant_id": assistants,
        "request_id": st.one_of(st.none(), st.sampled_from(["req-1", "req-2", "a.b"])),
        "student_id": students,
        "assignment_token": tokens,
        "outcome": st.sampled_from(["reached", "voicemail", "a.b"]),
        "students": st.lists(st.one_of(row, JSON_VALUES), min_size=1, max_size=3),
        "session_name": st.one_of(st.none(), st.text(max_size=20)),
        "lease_seconds": st.one_of(st.none(), st.integers(1, 3600)),
        "items": st.lists(st.one_of(item, JSON_VALUES), min_size=1, max_size=3),
        "force": st.booleans(),
        "route_by": st.one_of(st.none(), st.sampled_from(["name", "language", "student_id", "a.b"])),
        "skills": st.one_of(st.none(), st.lists(st.sampled_from(["es", "fr", "$ne", "a.b", ""]), max_size=3)),
        "callback_at": st.one_of(st.none(), st.sampled_from(
            [IN_A_MONTH, "2026-01-01T00:00:00Z", "2030-01-01T09:00:00", "tomorrow",
             "0001-01-01T00:00:00+05:00", "9999-12-31T23:00:00-05:00"])),
        "callback_assistant": st.one_of(st.none(), assistants),
        "retry_rules": st.one_of(st.none(), st.dictionaries(
            st.sampled_from(["no_answer", "busy", "$ne", "a.b"]),
            st.one_of(st.fixed_dictionaries({"delay_seconds": st.integers(-1, 90),
                                             "max_attempts": st.integers(0, 4)}), JSON_VALUES),
            max_size=2)),
        "callback_grace_seconds": st.one_of(st.none(), st.integers(-1, 600)),
        "zone_by": st.one_of(st.none(), st.sampled_from(["tz", "name", "student_id", "$tz"])),
        "phone_by": st.one_of(st.none(), st.sampled_from(["phone", "name", "priority"])),
        "calling_hours": st.one_of(st.none(), st.just(VALID_HOURS), st.fixed_dictionaries(
            {"days": st.dictionaries(st.sampled_from(["mon", "sun", "xyz"]), st.lists(st.sampled_from(
                ["09:00-20:00", "25:00-26:00", "20:00-09:00", "10:00-12:00", "11:00-13:00", ""]), max_size=3)),
             "default_zone": st.sampled_from(["America/Chicago", "Mars/Base", "localtime", "../../etc/passwd"])},
            optional={"holidays": st.lists(st.sampled_from(["2026-12-25", "2026-02-30", "x"]), max_size=2),
                      "unknown_zone": st.sampled_from(["default_zone", "not_called", "guess"])})),
        "numbers": st.one_of(st.none(), st.lists(st.sampled_from(
            ["+12125550100", "+1 312 555 0100", "555-0100", "+1", "hello", "$ne"]), max_size=3)),
        "student_ids": st.one_of(st.none(), st.lists(st.one_of(students, st.sampled_from(["other:s1", "$ne"])),
                                                     max_size=3)),
        "after": st.one_of(st.none(), st.sampled_from(["number:+1", "student:", "$ne"])),
        "limit": st.one_of(st.integers(-1, 2000), st.just(100)),
    }


@st.composite
def calls(draw: st.DrawFn, params: tuple[str, ...],
          likely: dict[str, st.SearchStrategy[Any]]) -> tuple[list[Any], dict[str, Any]]:
    """(args, kwargs) by keyword, positionally or both; arguments missing, doubled or extra."""

    def value(name: str | None) -> Any:
        if name in likely and draw(st.integers(0, 3)) > 0:
            return draw(likely[name])
        return draw(JSON_VALUES)

    mode = draw(st.sampled_from(["keyword", "positional", "mixed"]))
    if mode == "keyword":
        count = 0
    elif mode == "positional":  # the right number half of the time, else too few or too many
        count = draw(st.one_of(st.just(len(params)), st.integers(0, len(params) + 2)))
    else:
        count = draw(st.integers(0, len(params)))
    args = [value(params[index] if index < len(params) else None) for index in range(count)]
    kwargs: dict[str, Any] = {}
    if mode != "positional":
        for index, name in enumerate(params):
            if index < count:
                if draw(st.integers(0, 19)) == 0:  # the same argument by position and by name
                    kwargs[name] = value(name)
            elif draw(st.integers(0, 19)) > 0:  # else left out
                kwargs[name] = value(name)
        if draw(st.integers(0, 5)) == 0:
            kwargs.update(draw(st.dictionaries(EXTRA_KEYWORDS, JSON_VALUES, min_size=1, max_size=2)))
    return args, kwargs


# -- the contract covers every task --------------------------------------------------------------------------


def test_every_registered_callqueue_task_is_covered_here(hostile: PrivateStack,
                                                         client: AssignmentClient) -> None:
    names = [worker.hostname for worker in hostile.stack.workers]
    registered = client.app.control.inspect(destination=names, timeout=5).registered()
    assert set(registered) == set(names)
    for tasks in registered.values():
        assert {name for name in tasks if name.startswith("callqueue.")} == set(TASKS)


# -- property-based ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", sorted(TASKS))
@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_arbitrary_json_arguments_get_a_structured_answer_and_rejections_change_nothing(
        hostile: PrivateStack, client: AssignmentClient, seeded: Seeded, task: str, data: st.DataObject) -> None:
    params, _statuses = TASKS[task]
    args, kwargs = data.draw(calls(params, plausible(seeded)), label="args, kwargs")
    before = fingerprint(hostile.database)

    answer = hostile.call(client, task, args, kwargs)

    assert_structured(task, answer)
    event(answer["error"]["code"] if answer["status"] == "rejected" else answer["status"])
    if answer["status"] == "rejected":
        assert fingerprint(hostile.database) == before


def test_workers_serve_a_valid_request_after_hostile_input(hostile: PrivateStack, client: AssignmentClient) -> None:
    session_id = f"after-{uuid.uuid4().hex[:12]}"
    imported = client.import_students(session_id, [{"student_id": "s1", "name": "Ann"}])
    held = client.assign_next(session_id, "carol")
    assert imported.inserted == 1 and held is not None and held.student["name"] == "Ann"
    assert client.complete(session_id, held.student_id, "carol", "reached", held.assignment_token).status == \
        "completed"
    assert client.stats(session_id).completed == 1
    hostile.check_intact()


@pytest.mark.parametrize("task", sorted(TASKS))
def test_keyword_named_self_is_rejected_like_any_unknown_argument(hostile: PrivateStack, client: AssignmentClient,
                                                                  seeded: Seeded, task: str) -> None:
    """``self`` is just a JSON key to a caller; it must not collide with the task's own parameter."""
    before = fingerprint(hostile.database)

    answer = hostile.call(client, task, kwargs={**base_call(task, seeded), "self": None})

    assert rejection_whole(answer)["code"] == "missing_argument"
    assert fingerprint(hostile.database) == before
    hostile.check_intact()


# -- MongoDB operator injection --------------------------------------------------------------------------------


@pytest.mark.parametrize(("task", "field"), ID_FIELDS + TOKEN_FIELDS + TEXT_FIELDS,
                         ids=[field_id(task, field) for task, field in ID_FIELDS + TOKEN_FIELDS + TEXT_FIELDS])
def test_operator_in_any_field_is_rejected_and_changes_nothing(hostile: PrivateStack, client: AssignmentClient,
                                                               seeded: Seeded, task: str, field: str) -> None:
    valid = base_call(task, seeded)
    hostile_values = OPERATORS + (["$where", "$ne"] if (task, field) in ID_FIELDS else [])
    for value in hostile_values:
        before = fingerprint(hostile.database)

        error = rejection(task, hostile.call(client, task, kwargs=with_value(valid, field, value)))

        assert error["code"] == "invalid_argument", (value, error)
        argument = error["details"]["argument"]
        assert argument == field or field.startswith(f"{argument}."), (value, error)  # the field or its row
        assert fingerprint(hostile.database) == before, value
    assert_accepted(task, hostile.call(client, task, kwargs=valid))
    hostile.check_intact()


# -- ids with "$" or "." inside are plain values ---------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".b", "$y", ".*", ".$where", ":st0"])
def test_session_id_lookalike_with_dot_dollar_or_colon_matches_nothing(hostile: PrivateStack, client: AssignmentClient,
                                                           seeded: Seeded, suffix: str) -> None:
    lookalike = f"{seeded.session_id}{suffix}"
    before = fingerprint(hostile.database)
    for task, kwargs in [
        ("callqueue.assign_next_student", {"call_session_id": lookalike, "assistant_id": "bob"}),
        ("callqueue.session_stats", {"call_session_id": lookalike}),
        ("callqueue.assistant_stats", {"call_session_id": lookalike}),
        ("callqueue.set_lease", {"call_session_id": lookalike, "lease_seconds": 5}),
        ("callqueue.release_assistant", {"call_session_id": lookalike, "assistant_id": "alice"}),
        ("callqueue.close_session", {"call_session_id": lookalike}),
        ("callqueue.complete_student", {"call_session_id": lookalike, "student_id": seeded.held.student_id,
                                        "assistant_id": "alice", "outcome": "reached",
                                        "assignment_token": seeded.held.assignment_token}),
    ]:
        error = rejection(task, hostile.call(client, task, kwargs=kwargs))
        assert error["code"] in {"unknown_session", "unknown_student"}, (task, error)
    assert fingerprint(hostile.database) == before


def test_assistant_ids_with_dot_or_dollar_are_ordinary_distinct_assistants(client: AssignmentClient) -> None:
    session = f"assistants-{uuid.uuid4().hex[:12]}"
    client.import_students(session, [{"student_id": f"s{n}", "name": f"Student {n}"} for n in range(6)])
    dotted = client.assign_next(session, "a.b")
    dollar = client.assign_next(session, "x$y")
    plain = client.assign_next(session, "a")
    assert dotted and dollar and plain
    assert len({dotted.student_id, dollar.student_id, plain.student_id}) == 3
    again = client.assign_next(session, "a.b")
    assert again is not None and again.student_id == dotted.student_id and again.already_held
    assert set(client.stats(session).holders) == {"a.b", "x$y", "a"}

    assert client.release_assistant(session, "a") == 1  # releases only what "a" itself holds
    assert set(client.stats(session).holders) == {"a.b", "x$y"}
    done = client.complete(session, dotted.student_id, "a.b", "reached.by$phone", dotted.assignment_token)
    assert done.status == "completed" and done.outcome == "reached.by$phone"
    stats = client.stats(session)
    assert stats.completed_by_outcome == {"reached.by$phone": 1}
    assert set(stats.holders) == {"x$y"}
    with pytest.raises(NotHolder):
        client.complete(session, dollar.student_id, "x", "reached", dollar.assignment_token)


@pytest.mark.parametrize("assistant", ["plain", "a.b", "x$y"])
def test_assistant_holding_the_last_student_gets_it_back_not_exhausted(client: AssignmentClient,
                                                                       assistant: str) -> None:
    """README: an assistant who already holds a student gets that same student back (already_held)."""
    session = f"last-{uuid.uuid4().hex[:12]}"
    client.import_students(session, [{"student_id": "only", "name": "Only one"}])
    held = client.assign_next(session, assistant)
    assert held is not None

    again = client.assign_next(session, assistant)

    assert again is not None, "exhausted, although the assistant holds a student"
    assert again.student_id == held.student_id and again.already_held


def test_student_and_request_ids_with_dot_or_dollar_are_plain_values(client: AssignmentClient) -> None:
    session = f"plain-{uuid.uuid4().hex[:12]}"
    rows = [{"student_id": "s.1", "name": "Dot"}, {"student_id": "s$1", "name": "Dollar"}]
    assert client.import_students(session, rows).inserted == 2
    first = client.assign_next(session, "alice", request_id="r.1")
    second = client.assign_next(session, "bob", request_id="r$1")
    assert first and second
    assert {first.student["name"], second.student["name"]} == {"Dot", "Dollar"}
    assert first.student_id != second.student_id
    assert client.assign_next(session, "alice", request_id="r.1").student_id == first.student_id
    lookalike = first.student_id.replace("s.1", "s.*").replace("s$1", "s.*")
    with pytest.raises(UnknownStudent):
        client.complete(session, lookalike, "alice", "reached", first.assignment_token)
    assert client.complete(session, first.student_id, "alice", "reached", first.assignment_token).status == \
        "completed"


def test_student_ids_of_sessions_sharing_a_prefix_never_collide(client: AssignmentClient) -> None:
    """Session "X" with student "b:c" and session "X:b" with student "c" are two different students."""
    base = f"prefix-{uuid.uuid4().hex[:12]}"
    first = client.import_students(base, [{"student_id": "b:c", "name": "In the first session"}])
    second = client.import_students(f"{base}:b", [{"student_id": "c", "name": "In the second session"}])

    assert first.inserted == 1
    assert (second.inserted, second.duplicates) == (1, 0)
    assert client.stats(f"{base}:b").pending == 1
    held = client.assign_next(f"{base}:b", "alice")
    assert held is not None and held.student["name"] == "In the second session"


# -- calling hours, zones, phone numbers and do-not-call lists ----------------------------------------------------


@pytest.mark.parametrize("hours, code", [
    ({"days": {"mon": ["25:00-26:00"]}, "default_zone": "UTC"}, "invalid_argument"),
    ({"days": {"mon": ["09:00-12:00", "11:30-13:00"]}, "default_zone": "UTC"}, "invalid_argument"),
    ({"days": {"mon": ["20:00-09:00"]}, "default_zone": "UTC"}, "invalid_argument"),
    ({"days": {"mon": [f"{h:02d}:00-{h:02d}:30" for h in range(9)]}, "default_zone": "UTC"}, "too_large"),
    ({"days": {"mon": ["09:00-20:00"]}, "default_zone": "Mars/Olympus_Mons"}, "invalid_argument"),
    ({"days": {"mon": ["09:00-20:00"]}, "default_zone": "../../../etc/passwd"}, "invalid_argument"),
    ({"days": {"mon": ["09:00-20:00"]}, "default_zone": "UTC", "holidays": ["2026-12-25"] * 501}, "too_large"),
    ({"days": {"mon": ["09:00-20:00"]}}, "invalid_argument"),
    ("09:00-20:00", "invalid_argument"),
], ids=["25h", "overlapping", "reversed", "nine-ranges", "unknown-zone", "path-zone", "holidays", "no-zone", "text"])
def test_malformed_calling_hours_are_refused_and_change_nothing(hostile: PrivateStack, client: AssignmentClient,
                                                                seeded: Seeded, hours: Any, code: str) -> None:
    before = fingerprint(hostile.database)
    answer = hostile.call(client, "callqueue.set_calling_hours",
                          kwargs={"call_session_id": seeded.session_id, "calling_hours": hours})
    error = rejection_whole(answer)
    assert (error["code"], error["details"]["argument"]) == (code, "calling_hours"), error
    assert fingerprint(hostile.database) == before


@pytest.mark.parametrize("column, value", [
    ("tz", "Mars/Olympus_Mons"), ("tz", "../../etc/passwd"), ("tz", "localtime"), ("tz", 42),
    ("phone", "212-555-0100"), ("phone", "+1"), ("phone", "call me maybe"), ("phone", 12125550100),
])
def test_bad_zones_and_unparsable_phone_numbers_refuse_the_whole_import(
        hostile: PrivateStack, client: AssignmentClient, seeded: Seeded, column: str, value: Any) -> None:
    rows = [{"student_id": "fine", "tz": "America/Chicago", "phone": "+13125550100"},
            {"student_id": "bad", "tz": "Europe/Paris", "phone": "+33142685300", column: value}]
    before = fingerprint(hostile.database)
    answer = hostile.call(client, "callqueue.import_students", kwargs={
        "call_session_id": seeded.session_id, "students": rows, "zone_by": "tz", "phone_by": "phone"})
    error = rejection_whole(answer)
    assert (error["code"], error["details"]["argument"]) == ("invalid_argument", f"students[1].{column}"), error
    assert fingerprint(hostile.database) == before


def test_oversized_or_malformed_suppression_lists_are_refused_and_change_nothing(
        hostile: PrivateStack, client: AssignmentClient, seeded: Seeded) -> None:
    limit = hostile.settings.max_suppression_entries
    numbers = [f"+1212{n:07d}" for n in range(limit + 1)]
    calls = [
        ("too_large", "numbers", {"numbers": numbers}),
        ("too_large", "student_ids", {"call_session_id": seeded.session_id,
                                      "student_ids": [f"{seeded.session_id}:x{n}" for n in range(limit + 1)]}),
        ("too_large", "numbers", {"call_session_id": seeded.session_id, "numbers": numbers[:limit // 2 + 1],
                                  "student_ids": [f"{seeded.session_id}:x{n}" for n in range(limit // 2 + 1)]}),
        ("invalid_argument", "numbers[1]", {"numbers": ["+12125550100", "555-0100"]}),
        ("invalid_argument", "numbers", {"numbers": []}),
        ("invalid_argument", "student_ids", {"student_ids": [seeded.held.student_id]}),
    ]
    for task in ("callqueue.suppress", "callqueue.unsuppress"):
        for code, argument, kwargs in calls:
            before = fingerprint(hostile.database)
            error = rejection_whole(hostile.call(client, task, kwargs=kwargs))
            assert (error["code"], error["details"]["argument"]) == (code, argument), (task, argument, error)
            assert fingerprint(hostile.database) == before
    error = rejection_whole(hostile.call(client, "callqueue.list_suppressed", kwargs={"limit": 1_000_000}))
    assert error["code"] == "invalid_argument"


# -- sizes --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("task", "field"), ID_FIELDS + TEXT_FIELDS,
                         ids=[field_id(task, field) for task, field in ID_FIELDS + TEXT_FIELDS])
def test_value_over_the_size_limit_is_rejected_too_large(hostile: PrivateStack, client: AssignmentClient,
                                                         seeded: Seeded, task: str, field: str) -> None:
    limit = hostile.settings.max_id_length
    valid = base_call(task, seeded)
    # a student id as handed out is "<session id>:<row id>", so only the absurd length applies to it
    handed_out_student_id = field.endswith("student_id") and task != "callqueue.import_students"
    for length in (1_000_000,) if handed_out_student_id else (limit + 1, 1_000_000):
        before = fingerprint(hostile.database)

        error = rejection(task, hostile.call(client, task, kwargs=with_value(valid, field, "x" * length)))

        assert error["code"] == "too_large", (length, error)
        assert fingerprint(hostile.database) == before
    assert_accepted(task, hostile.call(client, task, kwargs=valid))


def test_ids_exactly_at_the_size_limit_work(hostile: PrivateStack, client: AssignmentClient) -> None:
    limit = hostile.settings.max_id_length
    session = f"limit-{uuid.uuid4().hex}".ljust(limit, "s")
    assistant, request, student = "a" * limit, "r" * limit, "t" * limit
    assert client.import_students(session, [{"student_id": student, "name": "Long"}]).inserted == 1
    held = client.assign_next(session, assistant, request_id=request)
    assert held is not None and held.student["name"] == "Long"
    assert client.complete(session, held.student_id, assistant, "o" * limit, held.assignment_token).status == \
        "completed"


@pytest.mark.parametrize(("task", "argument", "element"), [
    ("callqueue.import_students", "students", {"name": "x"}),
    ("callqueue.complete_batch", "items", {}),
])
def test_million_element_list_is_rejected_too_large_and_the_worker_lives(
        hostile: PrivateStack, client: AssignmentClient, seeded: Seeded, task: str, argument: str,
        element: dict[str, Any]) -> None:
    kwargs = with_value(base_call(task, seeded), argument, [element] * MILLION)
    before = fingerprint(hostile.database)

    error = rejection_whole(hostile.call(client, task, kwargs=kwargs))

    assert error["code"] == "too_large"
    assert error["details"]["argument"] == argument
    assert fingerprint(hostile.database) == before
    hostile.check_intact()
    assert_accepted(task, hostile.call(client, task, kwargs=base_call(task, seeded)))


# -- deeply nested input --------------------------------------------------------------------------------------


def test_payload_nested_ten_thousand_levels_is_refused_by_the_client_before_sending(
        hostile: PrivateStack, client: AssignmentClient, seeded: Seeded) -> None:
    """Python's JSON encoder cannot write it: the caller's own input error, not an outage; nothing is queued."""
    before = fingerprint(hostile.database)
    with pytest.raises((EncodeError, InvalidArgument), match="recursion|nested|deep"):
        client.import_students(seeded.session_id, [{"name": "deep", "nested": nested(TEN_THOUSAND)}])
    assert queue_length(hostile.settings.broker_url, BATCH_QUEUE) == 0
    assert fingerprint(hostile.database) == before
    hostile.check_intact()


def test_hand_built_message_nested_ten_thousand_levels_is_dropped_and_the_worker_lives(
        hostile: PrivateStack, client: AssignmentClient, seeded: Seeded) -> None:
    """A message no worker can decode is logged and discarded (its caller sees no result), nothing else."""
    task_id = str(uuid.uuid4())
    deep = '{"a":' * TEN_THOUSAND + "{}" + "}" * TEN_THOUSAND
    body = (f'[[{json.dumps(seeded.session_id)}, [{{"name": "deep", "nested": {deep}}}]], {{}}, '
            '{"callbacks": null, "errbacks": null, "chain": null, "chord": null}]')
    before = fingerprint(hostile.database)

    publish_raw(hostile.settings.broker_url, BATCH_QUEUE, "callqueue.import_students", task_id, body,
                "application/json", "utf-8")

    record = hostile.wait_for_log_record(BATCH_QUEUE, task_id)
    assert "Can't decode message body" in record and "RecursionError" in record
    assert AsyncResult(task_id, app=client.app).state == "PENDING"
    assert queue_length(hostile.settings.broker_url, BATCH_QUEUE) == 0
    assert fingerprint(hostile.database) == before
    hostile.check_intact()
    assert client.import_students(seeded.session_id, [{"student_id": "after-deep", "name": "x"}]).inserted == 1


def test_payload_nested_as_deep_as_a_client_can_send_is_rejected_cleanly(
        hostile: PrivateStack, client: AssignmentClient) -> None:
    """600 levels: Celery's JSON encoder sends it; each pool must answer invalid_argument and live on."""
    deep = nested(DEEP_ENOUGH_TO_ENCODE)
    sends = {
        BATCH_QUEUE: ("callqueue.import_students",
                      {"call_session_id": "deep-session", "students": [{"name": "deep", "nested": deep}]}),
        ASSIGNMENTS_QUEUE: ("callqueue.session_stats", {"call_session_id": deep}),
    }
    before = fingerprint(hostile.database)
    messages = {queue: hostile.send(client, task, kwargs=kwargs) for queue, (task, kwargs) in sends.items()}

    outcomes: dict[str, tuple[str, Any]] = {}
    for queue, message in messages.items():
        try:
            outcomes[queue] = hostile.wait(message, queue=queue)
        except AssertionError as exc:  # the pool's main process exited, or never answered
            outcomes[queue] = ("NO ANSWER", str(exc)[-1500:])

    for queue, (task, _kwargs) in sends.items():
        state, answer = outcomes[queue]
        assert state == "SUCCESS", f"{task} on {queue}: {answer}"
        assert rejection_whole(answer)["code"] == "invalid_argument"
    assert fingerprint(hostile.database) == before
    hostile.check_intact()
    assert queue_length(hostile.settings.broker_url, BATCH_QUEUE) == 0
    assert queue_length(hostile.settings.broker_url, ASSIGNMENTS_QUEUE) == 0
