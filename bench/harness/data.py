"""The students every part of the benchmark claims from, and the seed-style baseline store.

Every part seeds its sessions from the same generator, so "ours" and the
seed-style query always race over identical documents (same ids, positions,
payloads), written by ``AssignmentStore.import_students`` in both cases.
"""

from __future__ import annotations

import dataclasses
import functools
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping

from pymongo import ASCENDING, IndexModel, ReturnDocument
from pymongo.database import Database

from workers.store import ASSIGNMENT_FIELDS, STUDENTS, AssignmentStore, NewStudent, ensure_indexes
from workers.models import PENDING

SEED_STYLE_INDEX = "seed_filter_fields"
SEED_STYLE_LEASE = timedelta(minutes=30)
IMPORT_CHUNK = 1_000


@functools.lru_cache(maxsize=4)
def student_rows(count: int) -> tuple[NewStudent, ...]:
    """``count`` deterministic students, each a realistic small payload (made once per size)."""
    return tuple(
        NewStudent(
            student={"name": f"Student {index:06d}", "phone": f"+1555{index:07d}",
                     "email": f"student{index:06d}@example.edu", "cohort": f"cohort-{index % 40:02d}"},
            position=index,
            key=f"s{index:06d}",
        )
        for index in range(count)
    )


def seed_session(database: Database, session_id: str, count: int, routes: tuple[str, ...] = ("",)) -> None:
    """Insert a session of ``count`` pending students through the project's own import.

    The ``n``-th student gets routing tag ``routes[n % len(routes)]`` (none by default).
    """
    rows = [row if routes == ("",) else dataclasses.replace(row, route=routes[index % len(routes)])
            for index, row in enumerate(student_rows(count))]
    AssignmentStore(database).import_students(session_id, session_id, rows, IMPORT_CHUNK)


def fresh(database: Database, sessions: dict[str, int], seed_style: bool = False) -> None:
    """Empty ``database``; seed each session of ``sessions`` (id: students); index and flush to disk.

    The indexes are the project's, or with ``seed_style`` only the baseline's.
    """
    database.client.drop_database(database.name)
    for session_id, count in sessions.items():
        seed_session(database, session_id, count)
    (ensure_seed_style_index if seed_style else ensure_indexes)(database)
    settle(database)


def settle(database: Database) -> None:
    """Flush the fresh data to disk now, so the checkpoint does not land inside a measurement."""
    database.client.admin.command("fsync")


def ensure_seed_style_index(database: Database) -> None:
    """The baseline's index: the fields of its filter, nothing for the sort."""
    database[STUDENTS].create_indexes([IndexModel(
        [("call_session_id", ASCENDING), ("filter_status", ASCENDING),
         ("assigned_to", ASCENDING), ("assigned_at", ASCENDING)],
        name=SEED_STYLE_INDEX,
    )])


def seed_style_claim(database: Database, session_id: str, assistant_id: str,
                     now: datetime | None = None, max_time_ms: int | None = None) -> Mapping[str, Any] | None:
    """The claim the project replaces: unassigned *or* stale, ordered by position.

    Still one atomic ``find_one_and_update`` (so it cannot hand a student out
    twice either), but the ``$or`` and a sort the index cannot serve make
    MongoDB gather and sort every matching student on each claim. It returns
    the same projection as ours, so only the query and index differ.
    ``max_time_ms`` lets the benchmark abandon a claim (which then changes
    nothing) when its measuring window closes. Its history entry has no
    token to carry (the update cannot read the one it makes): null.
    """
    now = now or datetime.now(timezone.utc)
    return database[STUDENTS].find_one_and_update(
        {"call_session_id": session_id, "filter_status": PENDING,
         "$or": [{"assigned_to": None}, {"assigned_at": {"$lt": now - SEED_STYLE_LEASE}}]},
        {"$set": {"assigned_to": assistant_id, "assigned_at": now},
         "$inc": {"assignment_token": 1},
         "$push": {"history": {"event": "claimed", "assistant_id": assistant_id,
                               "token": None, "request_id": assistant_id, "at": now}}},
        sort=[("position", ASCENDING)],
        projection=ASSIGNMENT_FIELDS,
        return_document=ReturnDocument.AFTER,
        **({"maxTimeMS": max_time_ms} if max_time_ms is not None else {}),
    )
