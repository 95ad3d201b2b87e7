"""What the store's documents look like: collections, indexes, and the update pipelines.

Shared by the stages of the store (``claim``, ``sessions``, ``leases``,
``batch``); nothing here talks to MongoDB except ``ensure_indexes``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterator, Mapping, TypeVar

from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.collection import Collection
from pymongo.database import Database

from workers.exceptions import AlreadyCompleted, NotAssigned, NotHolder, Rejected, StaleToken
from workers.models import PENDING, StudentState
from workers.store.durability import WRITE_CONCERN, translating_driver_errors

SESSIONS = "call_sessions"
STUDENTS = "call_session_students"

CLAIM_ORDER = [("rank", ASCENDING), ("priority", DESCENDING), ("position", ASCENDING)]
CLAIM_INDEX = "claim_order_by_lane"
RETIRED_CLAIM_INDEX = "claim_order"
WAKE_INDEX = "due_wakeups"
ONE_PER_ASSISTANT_INDEX = "one_student_per_assistant"
REQUEST_INDEX = "session_request_ids"
RETIRED_REQUEST_INDEX = "served_request_ids"  # request ids unique across sessions: not shardable by session
SESSION_STATUS_INDEX = "session_status"
LEASE_INDEX = "lease_expiry"
# Read by the supervision stage (workers/store/supervision.py) only; no claim reads or changes their keys
# except EVENTS_INDEX, which gains the key of the history entry a claim appends.
EVENTS_INDEX = "session_events"
WAITING_INDEX = "session_waiting"
PENDING_AGE_INDEX = "pending_by_age"
SESSION_AGE_INDEX = "session_status_age"
SESSION_CHUNK = 1000

# A pending student's lane says who may claim it; a claim names the lanes it may take from.
# Personal lanes sort after the others on purpose: a press's personal range is usually empty, and
# MongoDB's seek into an empty range walks on to the next index keys. After the pool's lanes those are
# quiet; before them they would be the pool's head, where every claim leaves a deleted key behind.
ROUTE_LANE = "r:"       # + the routing tag ("" for untagged): the shared pool
SCHEDULED_LANE = "s:"   # waiting for a callback time or a retry delay: nobody may claim it
PERSONAL_LANE = "u:"    # + an assistant id: a due personal callback, only for that assistant
PERSONAL_RANK = 0       # a due personal callback comes before everything else for its assistant
POOL_RANK = 1           # everyone else: by priority, then position

Progress = Callable[[int, int], None]

ASSIGNMENT_FIELDS = {
    "call_session_id": 1, "student": 1, "assigned_to": 1, "assignment_token": 1,
    "assigned_at": 1, "history": {"$slice": -1},
}
STATE_FIELDS = {
    "call_session_id": 1, "filter_status": 1, "assigned_to": 1, "assignment_token": 1, "last_completion": 1,
    "completed_at": 1, "completed_by": 1, "lease_expires_at": 1, "history": {"$slice": -1},
}

T = TypeVar("T")


@translating_driver_errors
def ensure_indexes(database: Database) -> None:
    """Create the indexes the claim depends on (a no-op when they exist).

    ``claim_order_by_lane`` serves the claim's equality filter and its sort.
    A claim names a few lanes (``$in``); MongoDB scans one index range per
    lane, each already in claim order, and merges them (``SORT_MERGE``),
    stopping at the first match: no in-memory sort, and the cost grows with
    the number of lanes in the press, not with the size of the session.
    ``due_wakeups`` holds only the students waiting for a time (a callback, a
    retry delay, the end of a personal grace period), for the promotion.
    """
    students = database.get_collection(STUDENTS, write_concern=WRITE_CONCERN)
    if RETIRED_CLAIM_INDEX in students.index_information():
        _upgrade_to_lanes(students)
    students.create_indexes([
        IndexModel(
            [("call_session_id", ASCENDING), ("filter_status", ASCENDING),
             ("lane", ASCENDING), ("assigned_to", ASCENDING), *CLAIM_ORDER],
            name=CLAIM_INDEX,
        ),
        IndexModel([("wake_at", ASCENDING)], name=WAKE_INDEX,
                   partialFilterExpression={"wake_at": {"$exists": True}}),
        IndexModel(
            [("call_session_id", ASCENDING), ("assigned_to", ASCENDING)],
            name=ONE_PER_ASSISTANT_INDEX,
            unique=True,
            partialFilterExpression={"filter_status": PENDING, "assigned_to": {"$type": "string"}},
        ),
        # A request id names one press within its session (unique per session, so the index can live on a
        # collection sharded by call_session_id: a unique index there must start with the shard key).
        IndexModel([("call_session_id", ASCENDING), ("claim_request_ids", ASCENDING)], name=REQUEST_INDEX,
                   unique=True, partialFilterExpression={"claim_request_ids": {"$exists": True}}),
        IndexModel([("lease_expires_at", ASCENDING)], name=LEASE_INDEX),
        *SUPERVISION_INDEXES,
    ])
    if RETIRED_REQUEST_INDEX in students.index_information():
        students.drop_index(RETIRED_REQUEST_INDEX)  # only now: the session-scoped index already holds
    database.get_collection(SESSIONS, write_concern=WRITE_CONCERN).create_indexes([
        IndexModel([("status", ASCENDING)], name=SESSION_STATUS_INDEX),
        # The sessions of one status, newest first (the dashboard's lists).
        IndexModel([("status", ASCENDING), ("created_at", DESCENDING), ("_id", ASCENDING)], name=SESSION_AGE_INDEX),
    ])


# What a supervisor reads (workers/store/supervision.py), each by its own index:
# * session_events: a session's history entries by time (claims, completions, releases ...), for rates,
#   per-assistant figures, the completions chart and the latest events; one key per history entry;
# * session_waiting: a session's scheduled students by what they wait for and when they are due;
# * pending_by_age: a session's pending students by lane and import time (partial: pending only),
#   for the oldest pending student's wait.
SUPERVISION_INDEXES = [
    IndexModel([("call_session_id", ASCENDING), ("history.at", ASCENDING)], name=EVENTS_INDEX),
    IndexModel([("call_session_id", ASCENDING), ("waiting_for", ASCENDING), ("wake_at", ASCENDING)],
               name=WAITING_INDEX, partialFilterExpression={"wake_at": {"$exists": True}}),
    IndexModel([("call_session_id", ASCENDING), ("lane", ASCENDING), ("imported_at", ASCENDING)],
               name=PENDING_AGE_INDEX, partialFilterExpression={"filter_status": PENDING}),
]


def _upgrade_to_lanes(students: Collection) -> None:
    """Once, on a database from before lanes: put every student in the untagged lane, drop the old index.

    Only a database that still has the old claim index gets here, so the
    collection is read in full once, at the first start after the upgrade.
    """
    students.update_many({"lane": {"$exists": False}},
                         [{"$set": {"route": "", "lane": ROUTE_LANE, "rank": POOL_RANK}}])
    students.drop_index(RETIRED_CLAIM_INDEX)


@dataclass(frozen=True)
class NewStudent:
    """One validated row of an import."""

    student: dict[str, Any]
    priority: int = 0
    position: int | None = None
    key: str | None = None
    route: str = ""

    def student_key(self) -> str:
        """The caller's id, or a digest of the row so that re-importing a file adds nothing."""
        if self.key is not None:
            return self.key
        canonical = json.dumps([self.student, self.priority], sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:24]


def utcnow() -> datetime:
    """Now, in UTC, at MongoDB's millisecond precision."""
    now = datetime.now(timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def claim_update(assistant_id: str, request_id: str, now: datetime,
                  lease_seconds: int | None) -> list[dict[str, Any]]:
    """The claim's update: holder, time, lease, token + 1, a history entry with that token, the request id.

    A pipeline update, so the history entry can carry the token the same
    operation produces. Caller values are wrapped in ``$literal`` so that no
    string is ever read as a field path or operator.
    """
    lease = None if not lease_seconds else now + timedelta(seconds=lease_seconds)
    return [
        {"$set": {
            "assigned_to": {"$literal": assistant_id},
            "assigned_at": now,
            "lease_expires_at": lease,
            "assignment_token": {"$add": [{"$ifNull": ["$assignment_token", 0]}, 1]},
        }},
        {"$set": {
            "history": {"$concatArrays": [
                {"$ifNull": ["$history", []]},
                [{"event": "claimed", "assistant_id": {"$literal": assistant_id}, "token": "$assignment_token",
                  "request_id": {"$literal": request_id}, "at": now}],
            ]},
            "claim_request_ids": {"$concatArrays": [{"$ifNull": ["$claim_request_ids", []]},
                                                    [{"$literal": request_id}]]},
        }},
    ]


def claim_filter(session_id: str, lanes: list[str], request_id: str) -> dict[str, Any]:
    """The claim's filter: a pending, unassigned student of the session in one of ``lanes``."""
    return {"call_session_id": session_id, "filter_status": PENDING, "assigned_to": None,
            "lane": {"$in": lanes},
            "claim_request_ids": {"$ne": request_id}}  # a request never takes back a student it gave up


def claim_lanes(assistant_id: str, skills: tuple[str, ...], personal: bool = True) -> list[str]:
    """The lanes a press may take from: untagged students, its skills, and (``personal``) its personal callbacks.

    A session that has never had a personal callback leaves the personal lane
    out: it would always be empty, and its index seeks are not free.
    """
    lanes = [ROUTE_LANE, *(ROUTE_LANE + skill for skill in skills)]
    return [*lanes, PERSONAL_LANE + assistant_id] if personal else lanes


def pool_lane() -> dict[str, Any]:
    """Aggregation expression: the student's own routing lane in the shared pool."""
    return {"$concat": [ROUTE_LANE, {"$ifNull": ["$route", ""]}]}


# A student given back (released, reclaimed, its assistant logged off) returns to its routing lane;
# a personal callback stops being personal.
BACK_TO_POOL = {"lane": pool_lane(), "rank": POOL_RANK, "wake_at": "$$REMOVE", "callback_assistant": None}


def ending_hold_update(event: str, request_id: str | None, now: datetime,
                        bump_token: bool = True) -> list[dict[str, Any]]:
    """Pipeline update that ends a hold: history names the holder, then the hold is cleared."""
    token = {"$add": ["$assignment_token", 1]} if bump_token else "$assignment_token"
    return [
        {"$set": {"history": {"$concatArrays": [{"$ifNull": ["$history", []]}, [{
            "event": event, "assistant_id": "$assigned_to", "token": "$assignment_token",
            "request_id": {"$literal": request_id}, "at": now}]]}}},
        {"$set": {"assigned_to": None, "assigned_at": None, "lease_expires_at": None, "assignment_token": token,
                  **BACK_TO_POOL}},
    ]


def closing_update(outcome: str, request_id: str | None, now: datetime) -> list[dict[str, Any]]:
    """Pipeline update giving a pending student the session's close outcome (ending any hold)."""
    return [
        {"$set": {"history": {"$concatArrays": [{"$ifNull": ["$history", []]}, [{
            "event": "closed", "assistant_id": "$assigned_to", "token": "$assignment_token",
            "request_id": {"$literal": request_id}, "at": now, "outcome": {"$literal": outcome}}]]}}},
        {"$set": {"filter_status": {"$literal": outcome}, "completed_at": now, "closed_with_session": True,
                  "assigned_to": None, "assigned_at": None, "lease_expires_at": None}},
    ]


def held_filter(session_id: str, student_id: str, assistant_id: str, token: int) -> dict[str, Any]:
    return {"_id": student_id, "call_session_id": session_id, "filter_status": PENDING,
            "assigned_to": assistant_id, "assignment_token": token}


def history_entry(event: str, assistant_id: str | None, token: int | None, request_id: str | None,
           now: datetime, **extra: Any) -> dict[str, Any]:
    return {"event": event, "assistant_id": assistant_id, "token": token,
            "request_id": request_id, "at": now, **extra}


def is_repeat(last: Mapping[str, Any], action: str, assistant_id: str, token: int, outcome: str | None) -> bool:
    return (last.get("event") == action and last.get("assistant_id") == assistant_id
            and last.get("token") == token and last.get("outcome") == outcome)


def why_not_held(state: StudentState, assistant_id: str, token: int,
                 last_completion: Mapping[str, Any] | None = None) -> Rejected:
    """The rejection that explains why the holder's write under ``token`` cannot land."""
    if state.filter_status != PENDING:
        return AlreadyCompleted(f"student {state.student_id!r} was already completed "
                                f"with outcome {state.filter_status!r}")
    if last_completion and last_completion.get("token") == token:
        return AlreadyCompleted(f"this hold of student {state.student_id!r} was already completed with outcome "
                                f"{last_completion.get('outcome')!r}; the student is scheduled to be called again")
    if token != state.assignment_token:
        return StaleToken(f"assignment_token {token} is stale; the current one is {state.assignment_token}",
                          current_token=state.assignment_token)
    if state.assigned_to is None:
        return NotAssigned(f"student {state.student_id!r} is not assigned to anyone")
    return NotHolder(f"student {state.student_id!r} is held by another assistant, not {assistant_id!r}")


def student_document(session_id: str, row: NewStudent, default_position: int,
                     imported_at: datetime | None = None) -> dict[str, Any]:
    return {
        "_id": f"{_escape_separator(session_id)}:{row.student_key()}",
        "call_session_id": session_id,
        "student": row.student,
        "priority": row.priority,
        "position": default_position if row.position is None else row.position,
        "route": row.route,
        "lane": ROUTE_LANE + row.route,
        "rank": POOL_RANK,
        "attempts": 0,
        "filter_status": PENDING,
        "assigned_to": None,
        "assigned_at": None,
        "lease_expires_at": None,
        "assignment_token": 0,
        "completed_at": None,
        "completed_by": None,
        "history": [],
        "imported_at": imported_at or utcnow(),
    }


def _escape_separator(session_id: str) -> str:
    """The session part of a student ``_id``: ``\\`` and ``:`` escaped, so "a" + "b:c" never equals "a:b" + "c"."""
    return session_id.replace("\\", "\\\\").replace(":", "\\:")


def chunks(items: list[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), max(1, size)):
        yield items[start:start + size]

