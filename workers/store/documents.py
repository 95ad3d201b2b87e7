"""What the store's documents look like: collections, indexes, and the update pipelines.

Shared by the stages of the store (``claim``, ``sessions``, ``leases``,
``batch``); nothing here talks to MongoDB except ``ensure_indexes``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Iterator, Mapping, TypeVar

from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.collection import Collection
from pymongo.database import Database

from callqueue.workers.exceptions import AlreadyCompleted, NotAssigned, NotHolder, Rejected, StaleToken
from callqueue.workers.hours import FOREVER
from callqueue.workers.models import DO_NOT_CALL, PENDING, StudentState
from callqueue.workers.student_ids import handed_out_id
from callqueue.workers.store.durability import WRITE_CONCERN, translating_driver_errors

SESSIONS = "call_sessions"
STUDENTS = "call_session_students"
SUPPRESSIONS = "call_suppressions"

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
WINDOW_INDEX = "window_closes"
PHONE_INDEX = "phone_numbers"
SUPPRESSION_VALUE_INDEX = "suppressed_values"
SUPPRESSION_SCOPE_INDEX = "suppressions_by_scope"
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

# Why a student in the scheduled lane waits (``waiting_for``): its window is closed, or its import is
# still checking it against the do-not-call lists (the callback and retry reasons are in ``outcomes``).
WINDOW, IMPORT = "window", "import"

# The clock of every time the store writes or compares: MongoDB's own (``$$NOW``, one value per
# operation), unless a test passes a ``now`` of its own.
SERVER_CLOCK = "$$NOW"

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
    retry delay, the end of a personal grace period, the next opening of
    their calling hours), for the promotion; ``window_closes`` only the
    students placed in a pool lane within their calling hours, for the sweep
    that moves them out before the window closes (``workers.store.windows``).
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
        IndexModel([("window_closes_at", ASCENDING)], name=WINDOW_INDEX,
                   partialFilterExpression={"window_closes_at": {"$exists": True}}),
        IndexModel([("phone_e164", ASCENDING)], name=PHONE_INDEX,
                   partialFilterExpression={"phone_e164": {"$type": "string"}}),
        *SUPERVISION_INDEXES,
    ])
    if RETIRED_REQUEST_INDEX in students.index_information():
        students.drop_index(RETIRED_REQUEST_INDEX)  # only now: the session-scoped index already holds
    database.get_collection(SESSIONS, write_concern=WRITE_CONCERN).create_indexes([
        IndexModel([("status", ASCENDING)], name=SESSION_STATUS_INDEX),
        # The sessions of one status, newest first (the dashboard's lists).
        IndexModel([("status", ASCENDING), ("created_at", DESCENDING), ("_id", ASCENDING)], name=SESSION_AGE_INDEX),
    ])
    database.get_collection(SUPPRESSIONS, write_concern=WRITE_CONCERN).create_indexes([
        IndexModel([("value", ASCENDING), ("scope", ASCENDING)], name=SUPPRESSION_VALUE_INDEX),
        IndexModel([("scope", ASCENDING), ("kind", ASCENDING), ("value", ASCENDING)], name=SUPPRESSION_SCOPE_INDEX),
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
    # The student's zone key (workers.hours: "" when unknown) and phone number in E.164, decided at import.
    zone: str = ""
    phone: str | None = None

    def student_key(self) -> str:
        """The caller's id, or a digest of the row so that re-importing a file adds nothing."""
        if self.key is not None:
            return self.key
        canonical = json.dumps([self.student, self.priority], sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:24]


def utcnow() -> datetime:
    """Now, in UTC, at MongoDB's millisecond precision (this process's clock: tests and logs only)."""
    return to_millis(datetime.now(timezone.utc))


def to_millis(moment: datetime) -> datetime:
    """``moment`` in UTC at MongoDB's millisecond precision (naive means UTC)."""
    moment = moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def clock(now: datetime | None) -> Any:
    """The time expression of an update or filter: the server's ``$$NOW``, or a test's ``now``."""
    return SERVER_CLOCK if now is None else now


def later(moment: Any, seconds: float) -> dict[str, Any]:
    """Aggregation expression: ``seconds`` after ``moment`` (a date or a date expression such as ``$$NOW``)."""
    return {"$add": [moment, int(seconds * 1000)]}


def within_window(now: Any) -> dict[str, Any]:
    """Query part: the student's calling-hours window is still open at ``now`` (no window: always).

    With beat working, students whose window closes have left the pool
    before it does, so this never has anything to skip; with beat stopped it
    keeps them from being handed out once their window has closed.
    """
    return {"$expr": {"$lt": [now, {"$ifNull": ["$window_closes_at", FOREVER]}]}}


def claim_update(assistant_id: str, request_id: str, now: Any,
                  lease_seconds: int | None) -> list[dict[str, Any]]:
    """The claim's update: holder, time, lease, token + 1, a history entry with that token, the request id.

    A pipeline update, so the history entry can carry the token the same
    operation produces. Caller values are wrapped in ``$literal`` so that no
    string is ever read as a field path or operator. ``now`` is ``$$NOW``
    (the server's clock) except in tests.
    """
    lease = None if not lease_seconds else later(now, lease_seconds)
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


def claim_filter(session_id: str, lanes: list[str], request_id: str, now: Any = SERVER_CLOCK) -> dict[str, Any]:
    """The claim's filter: a pending, unassigned student of the session in one of ``lanes``, within its hours."""
    return {"call_session_id": session_id, "filter_status": PENDING, "assigned_to": None,
            "lane": {"$in": lanes},
            "claim_request_ids": {"$ne": request_id},  # a request never takes back a student it gave up
            **within_window(now)}


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


IS_SUPPRESSED = {"$eq": ["$suppressed", True]}
# What a final outcome leaves behind of the waiting: nothing a promotion or a sweep would find.
NOT_WAITING = {"wake_at": "$$REMOVE", "waiting_for": "$$REMOVE", "window_closes_at": "$$REMOVE"}


def ending_hold_update(event: str, request_id: str | None, now: Any,
                        bump_token: bool = True) -> list[dict[str, Any]]:
    """Pipeline update that ends a hold: history names the holder, then the hold is cleared.

    A student put on a do-not-call list while held takes ``do_not_call`` as
    its final outcome instead of going back to the pool.
    """
    token = {"$add": ["$assignment_token", 1]} if bump_token else "$assignment_token"
    return [
        {"$set": {"history": {"$concatArrays": [{"$ifNull": ["$history", []]}, [{
            "event": event, "assistant_id": "$assigned_to", "token": "$assignment_token",
            "request_id": {"$literal": request_id}, "at": now,
            "outcome": {"$cond": [IS_SUPPRESSED, DO_NOT_CALL, "$$REMOVE"]}}]]}}},
        {"$set": {"assigned_to": None, "assigned_at": None, "lease_expires_at": None, "assignment_token": token,
                  **BACK_TO_POOL,
                  "filter_status": {"$cond": [IS_SUPPRESSED, DO_NOT_CALL, PENDING]},
                  "completed_at": {"$cond": [IS_SUPPRESSED, now, None]},
                  "window_closes_at": {"$cond": [IS_SUPPRESSED, "$$REMOVE", "$window_closes_at"]}}},
    ]


def closing_update(outcome: str, request_id: str | None, now: Any, event: str = "closed",
                   with_session: bool = True) -> list[dict[str, Any]]:
    """Pipeline update giving a pending student a final outcome (ending any hold): the session's close
    outcome, or (``event="suppressed"``) ``do_not_call``."""
    return [
        {"$set": {"history": {"$concatArrays": [{"$ifNull": ["$history", []]}, [{
            "event": event, "assistant_id": "$assigned_to", "token": "$assignment_token",
            "request_id": {"$literal": request_id}, "at": now, "outcome": {"$literal": outcome}}]]}}},
        {"$set": {"filter_status": {"$literal": outcome}, "completed_at": now,
                  "assigned_to": None, "assigned_at": None, "lease_expires_at": None, **NOT_WAITING,
                  **({"closed_with_session": True} if with_session else {})}},
    ]


def held_filter(session_id: str, student_id: str, assistant_id: str, token: int) -> dict[str, Any]:
    return {"_id": student_id, "call_session_id": session_id, "filter_status": PENDING,
            "assigned_to": assistant_id, "assignment_token": token}


def history_entry(event: str, assistant_id: str | None, token: int | None, request_id: str | None,
           now: Any, **extra: Any) -> dict[str, Any]:
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


def student_id_of(session_id: str, row: NewStudent) -> str:
    """The id a row's student gets in ``session_id`` (and is handed out under)."""
    return handed_out_id(session_id, row.student_key())


def student_document(session_id: str, row: NewStudent, default_position: int, checked_by: datetime,
                     imported_at: datetime) -> dict[str, Any]:
    """A new student, not yet claimable: it waits in the scheduled lane while its import checks it against
    the do-not-call lists and places it by its calling hours; if the import stops first, the promotion
    places it at ``checked_by``."""
    document = {
        "_id": student_id_of(session_id, row),
        "call_session_id": session_id,
        "student": row.student,
        "priority": row.priority,
        "position": default_position if row.position is None else row.position,
        "route": row.route,
        "zone": row.zone,
        "lane": SCHEDULED_LANE,
        "waiting_for": IMPORT,
        "wake_at": checked_by,
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
        "imported_at": imported_at,
    }
    if row.phone is not None:
        document["phone_e164"] = row.phone
    return document


def chunks(items: list[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), max(1, size)):
        yield items[start:start + size]

