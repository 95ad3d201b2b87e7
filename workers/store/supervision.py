"""What a supervisor reads: sessions at a glance, their assistants, callbacks and latest events (read only).

Nothing here writes. Every query names the index that serves it (``hint``),
so none of them can fall back to reading a whole collection, and none reads
more than the part of a session it describes:

* ``claim_order_by_lane`` (the claim's index): the students of a session still
  to finish (``filter_status: ''``) by lane and holder, and the completed ones
  by outcome, both counted from the index alone (covered, no document read);
* ``one_student_per_assistant``: who holds whom right now;
* ``session_waiting``: students waiting for a callback or retry time, by kind
  and due time;
* ``pending_by_age``: the pending students of a lane by import time (the
  oldest pending student's wait);
* ``session_events``: history entries by time (claims, completions, releases,
  reclaims), so "the last minute", "today" and "the latest events" read only
  the students touched in that time;
* ``session_status_age`` on ``call_sessions``: sessions of one status, newest first.

The costs therefore grow with what is shown (students touched today, holders,
callbacks due) and, for the counts, with the size of the session's index range
(about 1,000,000 index keys a second per counting query on this kind of
machine; ``devstack.dashboard_probe`` measures it).
"""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Mapping

from pymongo import ASCENDING, DESCENDING

from callqueue.workers.figures import (
    Activity, AssistantFigures, DayActivity, DueCallback, Hold, SessionCounts, SessionEvent, SessionSummary,
    display_name,
)
from callqueue.workers.models import PENDING, CallSession
from callqueue.workers.store.base import StoreStage
from callqueue.workers.store.documents import (
    CLAIM_INDEX, EVENTS_INDEX, ONE_PER_ASSISTANT_INDEX, PENDING_AGE_INDEX, PERSONAL_LANE, SCHEDULED_LANE,
    SESSION_AGE_INDEX, WAITING_INDEX, utcnow,
)
from callqueue.workers.store.durability import READ_CONCERN, translating_driver_errors
from callqueue.workers.store.outcomes import CALLBACK, RETRY

COMPLETED = "completed"
CLAIMED = "claimed"
LATEST_EVENTS_PER_STUDENT = 4
# Any date: a range the partial index session_waiting answers from its keys alone (unlike $exists).
EVER = {"$gte": datetime(1, 1, 1, tzinfo=timezone.utc)}
# Every assistant's personal lane: "u:" followed by anything (";" is the character after ":").
PERSONAL_LANES = {"$gte": PERSONAL_LANE, "$lt": PERSONAL_LANE[:-1] + chr(ord(PERSONAL_LANE[-1]) + 1)}


class SupervisionStage(StoreStage):
    """Read-only figures for supervisors (the dashboard) and the ``assistant_stats`` task."""

    # -- sessions -----------------------------------------------------------

    @translating_driver_errors
    def list_sessions(self, status: str, search: str = "", skip: int = 0,
                      limit: int = 25) -> tuple[list[CallSession], int]:
        """One page of the sessions with ``status``, newest first, whose id or name contains ``search``; and
        how many match in all."""
        query: dict[str, Any] = {"status": status}
        if search:
            pattern = {"$regex": re.escape(search), "$options": "i"}
            query["$or"] = [{"_id": pattern}, {"name": pattern}]
        documents = self.sessions.find(query).sort([("created_at", DESCENDING), ("_id", ASCENDING)]) \
            .skip(skip).limit(limit).hint(SESSION_AGE_INDEX)
        sessions = [CallSession.from_document(document) for document in documents]
        return sessions, self.sessions.count_documents(query, hint=SESSION_AGE_INDEX)

    @translating_driver_errors
    def summary(self, session: CallSession, now: datetime | None = None) -> SessionSummary:
        """The session at a glance: progress, the last minute's activity, the oldest wait, the next callback."""
        now = now or utcnow()
        counts, lanes, holders = self._counts(session.id)
        callback_at, callback_assistant = self._next_callback(session.id, counts)
        return SessionSummary(
            session=session,
            counts=counts,
            last_minute=self.activity(session.id, now - timedelta(minutes=1)),
            holders=holders,
            oldest_pending_since=self._oldest_pending(session, lanes),
            next_callback_at=callback_at,
            next_callback_assistant=callback_assistant,
            as_of=now,
        )

    def _counts(self, session_id: str) -> tuple[SessionCounts, list[str], frozenset[str]]:
        """The progress counts, the lanes holding unheld pending students, and who holds a student now.

        Counted range by range (``count``, which walks index keys without
        reading them out: several times faster than grouping them): each lane
        of the students still to finish, each outcome of the finished ones,
        each kind of wait; holders are read from their own small index.
        """
        remaining = {"call_session_id": session_id, "filter_status": PENDING}
        holds = list(self.students.find({**remaining, "assigned_to": {"$type": "string"}},
                                        {"assigned_to": 1, "lane": 1}, hint=ONE_PER_ASSISTANT_INDEX))
        held_in: dict[str, int] = defaultdict(int)
        for hold in holds:
            held_in[hold.get("lane") or ""] += 1
        pending = personal = 0
        lanes: list[str] = []
        for lane in self.students.distinct("lane", remaining):  # a DISTINCT_SCAN of claim_order_by_lane
            unheld = self._count({**remaining, "lane": lane}, CLAIM_INDEX) - held_in[lane]
            if lane == SCHEDULED_LANE or unheld <= 0:
                continue
            pending += unheld
            personal += unheld if lane.startswith(PERSONAL_LANE) else 0
            lanes.append(lane)
        outcomes = self.students.distinct("filter_status", {"call_session_id": session_id,
                                                            "filter_status": {"$gt": PENDING}})
        completed = {outcome: self._count({"call_session_id": session_id, "filter_status": outcome}, CLAIM_INDEX)
                     for outcome in sorted(outcomes)}
        waiting = {kind: self._count({"call_session_id": session_id, "waiting_for": kind, "wake_at": EVER},
                                     WAITING_INDEX) for kind in (CALLBACK, RETRY)}
        counts = SessionCounts(pending, len(holds), waiting[CALLBACK], waiting[RETRY], completed, personal)
        return counts, sorted(lanes), frozenset(hold["assigned_to"] for hold in holds)

    def _count(self, query: dict[str, Any], index: str) -> int:
        """Students matching ``query``, counted on ``index`` (the ``count`` command, majority read concern)."""
        return int(self.students.database.command(
            "count", self.students.name, query=query, hint=index, readConcern=READ_CONCERN.document)["n"])

    def _oldest_pending(self, session: CallSession, lanes: list[str]) -> datetime | None:
        """When the longest-waiting pending, unheld student was imported (the session's start for students
        imported before import times were kept)."""
        if not lanes:
            return None
        document = self.students.find_one(
            {"call_session_id": session.id, "filter_status": PENDING, "lane": {"$in": lanes}, "assigned_to": None},
            {"imported_at": 1}, sort=[("imported_at", ASCENDING)], hint=PENDING_AGE_INDEX)
        if document is None:
            return None
        return document.get("imported_at") or session.created_at

    def _next_callback(self, session_id: str, counts: SessionCounts) -> tuple[datetime | None, str | None]:
        """The next scheduled callback's time and assistant; a callback waiting for its assistant is due now."""
        if counts.personal_due:
            waiting = self.students.find_one(
                {"call_session_id": session_id, "filter_status": PENDING, "assigned_to": None,
                 "lane": PERSONAL_LANES},
                {"callback_assistant": 1, "history": {"$slice": -1}}, hint=CLAIM_INDEX)
            if waiting is not None:
                entry = (waiting.get("history") or [{}])[-1]
                return entry.get("due_at") or utcnow(), waiting.get("callback_assistant")
        document = self.students.find_one(
            {"call_session_id": session_id, "waiting_for": CALLBACK, "wake_at": EVER},
            {"wake_at": 1, "callback_assistant": 1}, sort=[("wake_at", ASCENDING)], hint=WAITING_INDEX)
        if document is None:
            return None, None
        return document.get("wake_at"), document.get("callback_assistant")

    # -- activity -------------------------------------------------------------

    @translating_driver_errors
    def activity(self, session_id: str, since: datetime) -> Activity:
        """Claims and completions since ``since``, and the assistants who made them."""
        claims = completions = 0
        assistants: set[str] = set()
        for group in self.students.aggregate([
            *_entries_since(session_id, since),
            {"$group": {"_id": {"event": "$entry.event", "assistant": "$entry.assistant_id"}, "n": {"$sum": 1}}},
        ], hint=EVENTS_INDEX):
            event, assistant = group["_id"].get("event"), group["_id"].get("assistant")
            if event not in (CLAIMED, COMPLETED):
                continue
            claims += group["n"] if event == CLAIMED else 0
            completions += group["n"] if event == COMPLETED else 0
            if assistant is not None:
                assistants.add(assistant)
        return Activity(claims, completions, frozenset(assistants))

    @translating_driver_errors
    def holds(self, session_id: str) -> list[Hold]:
        """Every student held in the session now, oldest hold first."""
        documents = self.students.find(
            {"call_session_id": session_id, "filter_status": PENDING, "assigned_to": {"$type": "string"}},
            {"student": 1, "assigned_to": 1, "assignment_token": 1, "assigned_at": 1, "lease_expires_at": 1},
            hint=ONE_PER_ASSISTANT_INDEX)
        holds = [Hold(document["_id"], dict(document.get("student") or {}), document["assigned_to"],
                      int(document.get("assignment_token") or 0), document.get("assigned_at"),
                      document.get("lease_expires_at")) for document in documents]
        return sorted(holds, key=lambda hold: (hold.since is None, hold.since or utcnow(), hold.assistant_id))

    @translating_driver_errors
    def day_activity(self, session_id: str, day_start: datetime, now: datetime | None = None) -> DayActivity:
        """Per-assistant figures since ``day_start`` (and the last hour), with completions per minute of the
        last hour; every assistant holding a student now is included."""
        now = now or utcnow()
        hour_start = now - timedelta(hours=1)
        since = min(day_start, hour_start)
        rows: dict[str, dict[str, Any]] = defaultdict(lambda: {"today": 0, "hour": 0, "outcomes": defaultdict(int),
                                                               "seconds": 0.0, "timed": 0, "last": None})
        minutes: dict[datetime, int] = defaultdict(int)
        for group in self.students.aggregate(_day_pipeline(session_id, since, day_start, hour_start),
                                             hint=EVENTS_INDEX):
            key = group["_id"]
            assistant = key.get("assistant")
            if assistant is None:
                continue
            row = rows[assistant]
            row["last"] = max(filter(None, (row["last"], group["last"])), default=None)
            if key.get("event") != COMPLETED:
                continue
            if key.get("today"):
                row["today"] += group["n"]
                row["outcomes"][key.get("outcome") or "?"] += group["n"]
                row["seconds"] += group["seconds"]
                row["timed"] += group["timed"]
            if key.get("minute") is not None:
                row["hour"] += group["n"]
                minutes[key["minute"]] += group["n"]
        holds = {hold.assistant_id: hold for hold in self.holds(session_id)}
        figures = [AssistantFigures(
            assistant_id=assistant,
            holding=holds.get(assistant),
            calls_last_hour=rows[assistant]["hour"] if assistant in rows else 0,
            calls_today=rows[assistant]["today"] if assistant in rows else 0,
            outcomes_today=dict(sorted(rows[assistant]["outcomes"].items())) if assistant in rows else {},
            average_call_seconds=(rows[assistant]["seconds"] / rows[assistant]["timed"]
                                  if assistant in rows and rows[assistant]["timed"] else None),
            last_event_at=rows[assistant]["last"] if assistant in rows else None,
        ) for assistant in sorted(set(rows) | set(holds))]
        start = hour_start.replace(second=0, microsecond=0)
        chart = tuple((start + timedelta(minutes=n), minutes.get(start + timedelta(minutes=n), 0)) for n in range(61))
        return DayActivity(tuple(figures), chart)

    # -- callbacks, retries, events -----------------------------------------------

    @translating_driver_errors
    def callbacks_due(self, session_id: str, until: datetime, limit: int = 100) -> list[DueCallback]:
        """Callbacks waiting for their assistant now, then those due before ``until``, soonest first."""
        fields = {"student": 1, "wake_at": 1, "callback_assistant": 1, "history": {"$slice": -1}}
        waiting = [DueCallback(document["_id"], dict(document.get("student") or {}),
                               (document.get("history") or [{}])[-1].get("due_at"),
                               document.get("callback_assistant"), waiting_for_assistant=True)
                   for document in self.students.find(
                       {"call_session_id": session_id, "filter_status": PENDING, "assigned_to": None,
                        "lane": PERSONAL_LANES}, fields, limit=limit, hint=CLAIM_INDEX)]
        scheduled = [DueCallback(document["_id"], dict(document.get("student") or {}), document.get("wake_at"),
                                 document.get("callback_assistant"))
                     for document in self.students.find(
                         {"call_session_id": session_id, "waiting_for": CALLBACK, "wake_at": {"$lte": until}},
                         fields, sort=[("wake_at", ASCENDING)], limit=limit, hint=WAITING_INDEX)]
        return (waiting + scheduled)[:limit]

    @translating_driver_errors
    def next_retry_at(self, session_id: str) -> datetime | None:
        """When the next scheduled retry is due."""
        document = self.students.find_one(
            {"call_session_id": session_id, "waiting_for": RETRY, "wake_at": EVER},
            {"wake_at": 1}, sort=[("wake_at", ASCENDING)], hint=WAITING_INDEX)
        return None if document is None else document.get("wake_at")

    @translating_driver_errors
    def latest_events(self, session_id: str, limit: int = 50) -> list[SessionEvent]:
        """The session's ``limit`` latest history entries, newest first."""
        documents = self.students.find(
            {"call_session_id": session_id},
            {"student": 1, "history": {"$slice": -LATEST_EVENTS_PER_STUDENT}},
            sort=[("call_session_id", ASCENDING), ("history.at", DESCENDING)], limit=limit, hint=EVENTS_INDEX)
        events = [event for document in documents for event in _events_of(document)]
        return sorted(events, key=lambda event: event.at, reverse=True)[:limit]


def _entries_since(session_id: str, since: datetime) -> list[dict[str, Any]]:
    """Pipeline stages: one document per history entry of the session at or after ``since``, as ``entry``."""
    return [
        {"$match": {"call_session_id": session_id, "history.at": {"$gte": since}}},
        {"$project": {"entry": {"$filter": {"input": "$history", "cond": {"$gte": ["$$this.at", since]}}}}},
        {"$unwind": "$entry"},
    ]


def _day_pipeline(session_id: str, since: datetime, day_start: datetime,
                  hour_start: datetime) -> list[dict[str, Any]]:
    """History entries since ``since`` grouped by assistant, event, outcome, today, and minute of the last hour,
    with the claim-to-completion time of completions whose claim is on record."""
    claim = {"$first": {"$filter": {"input": "$claims", "cond": {"$and": [
        {"$eq": ["$$this.token", "$entry.token"]}, {"$eq": ["$$this.assistant_id", "$entry.assistant_id"]}]}}}}
    recent_completion = {"$and": [{"$eq": ["$entry.event", COMPLETED]}, {"$gte": ["$entry.at", hour_start]}]}
    return [
        {"$match": {"call_session_id": session_id, "history.at": {"$gte": since}}},
        {"$project": {
            "entry": {"$filter": {"input": "$history", "cond": {"$gte": ["$$this.at", since]}}},
            "claims": {"$filter": {"input": "$history", "cond": {"$eq": ["$$this.event", CLAIMED]}}},
        }},
        {"$unwind": "$entry"},
        {"$set": {"claim": {"$cond": [{"$eq": ["$entry.event", COMPLETED]}, claim, None]}}},
        {"$set": {"seconds": {"$cond": [{"$ifNull": ["$claim.at", False]},
                                        {"$divide": [{"$subtract": ["$entry.at", "$claim.at"]}, 1000]}, None]}}},
        {"$group": {
            "_id": {
                "assistant": "$entry.assistant_id", "event": "$entry.event", "outcome": "$entry.outcome",
                "today": {"$gte": ["$entry.at", day_start]},
                "minute": {"$cond": [recent_completion, {"$dateTrunc": {"date": "$entry.at", "unit": "minute"}},
                                     None]},
            },
            "n": {"$sum": 1},
            "seconds": {"$sum": {"$ifNull": ["$seconds", 0]}},
            "timed": {"$sum": {"$cond": [{"$eq": ["$seconds", None]}, 0, 1]}},
            "last": {"$max": "$entry.at"},
        }},
    ]


def _events_of(document: Mapping[str, Any]) -> Iterable[SessionEvent]:
    name = display_name(document.get("student"), document["_id"])
    for entry in document.get("history") or []:
        if entry.get("at") is not None:
            yield SessionEvent(entry["at"], str(entry.get("event")), document["_id"], name,
                               entry.get("assistant_id"), entry.get("outcome"))
