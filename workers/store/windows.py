"""Calling hours in the store: placing students by their window, on the database's clock.

A session with calling hours keeps every pending student where the rule
says it belongs *now*, by MongoDB's clock (``server_now``: the primary's
``hello.localTime``, read once per job; never this process's clock):

* a student whose window is open sits in its pool lane (or its assistant's
  personal lane) and carries ``window_closes_at``, the last moment a press may
  get it (the window's end less the session's ``last_call_seconds``);
* a student whose window is closed waits in the scheduled lane
  (``waiting_for: "window"``) with ``wake_at`` = its next opening.

Three jobs keep it so, each one ``update_many`` per (session, zone key) group
(a few hundred zone keys at most), the window computed once per group in
Python (``workers.hours``):

* ``promote_due`` (beat, every ``CALLQUEUE_PROMOTE_INTERVAL_SECONDS`` = P)
  brings every due student back (a callback, a retry, a window that opened)
  if its window is usable, else sets it to wait for the next opening;
* the **sweep**, in the same job, moves students whose window closes within
  ``lead_seconds`` (2 P) back to the scheduled lane. As long as the job runs
  at least every 2 P, a student leaves the pool before its window closes;
* ``restamp_session`` places every student again when the hours change.

The claim does not depend on them: its filter also requires ``$$NOW`` before
``window_closes_at`` (``documents.within_window``), so a window that closes
while beat is stopped still keeps its students from being handed out. With
beat running that part of the filter never has anything to skip, and a
closed student is not in the lanes a press walks at all, so the cost of a
press does not depend on how many students wait for their window.

A window is *usable* at a moment when it is open and stays open for more than
the lead; students are therefore taken out of the pool up to 2 P before the
last-call time, and a student that comes due in the last 2 P of a window
waits for the next one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Iterable

from pymongo import UpdateMany

from callqueue.workers.exceptions import InvalidArgument
from callqueue.workers.hours import FOREVER, Placement, next_allowed, placement
from callqueue.workers.models import PENDING, CallSession
from callqueue.workers.store.base import StoreStage
from callqueue.workers.store.documents import (
    IMPORT, PERSONAL_LANE, PERSONAL_RANK, POOL_RANK, SCHEDULED_LANE, WINDOW, pool_lane, to_millis,
)
from callqueue.workers.store.durability import translating_driver_errors
from callqueue.workers.store.outcomes import CompletionPlan
from callqueue.workers.student_ids import id_forms

OPEN, CLOSES = "_open", "_closes"  # fields that live only inside one update pipeline
UNHELD = {"filter_status": PENDING, "assigned_to": None}


@dataclass(frozen=True)
class Group:
    """Students of one session with one zone key."""

    session_id: str
    zone: str

    def match(self) -> dict[str, Any]:
        zone: Any = {"$in": [None, ""]} if not self.zone else self.zone
        return {"call_session_id": self.session_id, "zone": zone}


class WindowStage(StoreStage):
    """Placing students by their calling hours: promotion, the sweep, restamping, imports, callbacks."""

    @translating_driver_errors
    def server_now(self) -> datetime:
        """MongoDB's clock: the primary's ``localTime``, at millisecond precision."""
        return to_millis(self.client.admin.command("hello")["localTime"])

    @translating_driver_errors
    def promote_due(self, now: datetime | None = None) -> int:
        """Bring due students back by their window, and sweep students whose window is about to close.

        Returns how many students moved. ``now`` (tests only) stands in for the server's clock.
        """
        moment = now or self.server_now()
        with self.bulk_deadline():
            due = due_filter(moment)
            closing = {"window_closes_at": {"$lte": moment + timedelta(seconds=self.window_lead_seconds)},
                       "lane": {"$ne": SCHEDULED_LANE}, **UNHELD}
            writes = [*self._group_writes(due, moment, promote=True),
                      *self._group_writes(closing, moment, promote=False)]
            return self._write(writes)

    @translating_driver_errors
    def restamp_session(self, session: CallSession, now: datetime | None = None) -> int:
        """Place every student of ``session`` again by its calling hours (after they changed); the count moved.

        Students in the pool get their new window's end (or wait for their
        next opening), students waiting for a window are placed afresh, held
        students get the end of their window (now, if it is closed: given
        back, they wait for the next opening). Students waiting for a retry
        or a callback keep their time; the promotion places them when due.
        """
        moment = now or self.server_now()
        base = {"call_session_id": session.id, "filter_status": PENDING}
        with self.bulk_deadline():
            zones = self.students.distinct("zone", base)
            writes: list[UpdateMany] = []
            for zone in {zone or "" for zone in zones}:
                group = Group(session.id, zone)
                decision = placement(session.calling_hours, zone, moment, self.window_lead_seconds)
                unheld = {**base, **group.match(), "assigned_to": None,
                          "$or": [{"lane": {"$ne": SCHEDULED_LANE}}, {"waiting_for": WINDOW}]}
                writes.append(UpdateMany(unheld, placement_update(moment, decision, promote=False)))
                held = {**base, **group.match(), "assigned_to": {"$type": "string"}}
                writes.append(UpdateMany(held, [{"$set": {"window_closes_at": _held_stamp(decision, moment)}}]))
            return self._write(writes)

    def place_imported(self, session: CallSession, ids_by_zone: dict[str, list[str]],
                       now: datetime | None = None) -> int:
        """Release newly imported students (checked against the do-not-call lists) into their places."""
        moment = now or self.server_now()
        writes = [UpdateMany({"_id": {"$in": ids}, "lane": SCHEDULED_LANE, "waiting_for": IMPORT, **UNHELD},
                             placement_update(moment, placement(session.calling_hours, zone, moment,
                                                                self.window_lead_seconds), promote=True))
                  for zone, ids in ids_by_zone.items() if ids]
        return self._write(writes)

    def check_callback(self, session_id: str, student_id: str, plan: CompletionPlan) -> CompletionPlan:
        """``plan`` if its callback (if any) falls inside the student's calling hours; else, where the session
        allows callbacks outside hours, the plan with the hours waived until the callback's grace ends;
        otherwise ``InvalidArgument`` naming the next allowed time."""
        if plan.callback is None or plan.hours is None:
            return plan
        forms = id_forms(session_id, student_id)
        found = {document["_id"]: document for document in self.students.find(
            {"_id": {"$in": list(forms)}, "call_session_id": session_id}, {"zone": 1})}
        document = next((found[form] for form in forms if form in found), None)
        if document is None:
            return plan  # the completion itself explains that the student is not there
        return self.callback_plan(plan, document.get("zone") or "", "callback_at")

    def callback_plan(self, plan: CompletionPlan, zone: str, argument: str) -> CompletionPlan:
        """See ``check_callback``; for a student whose zone key is known (``argument`` names the field)."""
        assert plan.callback is not None and plan.hours is not None
        at = plan.callback.at
        allowed = next_allowed(plan.hours, zone, at, self.window_lead_seconds)
        if allowed == at:
            return plan
        if plan.hours.callbacks_outside_hours:
            return plan.exempted(at + timedelta(seconds=max(plan.grace_seconds, self.window_lead_seconds * 2)))
        where = ", ".join(plan.hours.zones(zone)) or "zone unknown, not called"
        when = "never within a year" if allowed == FOREVER else allowed.isoformat()
        raise InvalidArgument(f"{argument} {at.isoformat()} is outside the student's calling hours ({where}); "
                              f"the next allowed time is {when}", argument=argument,
                              next_allowed=None if allowed == FOREVER else allowed.isoformat())

    def _group_writes(self, match: dict[str, Any], moment: datetime, promote: bool) -> list[UpdateMany]:
        """One ``UpdateMany`` per (session, zone key) among the students ``match`` selects."""
        groups = [Group(found["_id"]["s"], found["_id"]["z"] or "") for found in self.students.aggregate([
            {"$match": match},
            {"$group": {"_id": {"s": "$call_session_id", "z": {"$ifNull": ["$zone", ""]}}}},
        ])]
        sessions = self._sessions({group.session_id for group in groups})
        writes = []
        for group in groups:
            session = sessions.get(group.session_id)
            hours = None if session is None else session.calling_hours
            decision = placement(hours, group.zone, moment, self.window_lead_seconds)
            writes.append(UpdateMany({**match, **group.match()}, placement_update(moment, decision, promote)))
        return writes

    def _sessions(self, session_ids: Iterable[str]) -> dict[str, CallSession]:
        ids = sorted(session_ids)
        if not ids:
            return {}
        return {document["_id"]: CallSession.from_document(document)
                for document in self.sessions.find({"_id": {"$in": ids}})}

    def _write(self, writes: list[UpdateMany]) -> int:
        if not writes:
            return 0
        return self.students.bulk_write(writes, ordered=False).modified_count


def due_filter(moment: datetime) -> dict[str, Any]:
    """The promotion's filter: due by ``moment``, still pending, held by nobody (served by ``due_wakeups``)."""
    return {"wake_at": {"$lte": moment}, **UNHELD}


def _held_stamp(decision: Placement, moment: datetime) -> Any:
    """The window end a held student carries: its window's, or now when it is closed (none without hours)."""
    if decision.open:
        return decision.closes_at or "$$REMOVE"
    return moment


def placement_update(moment: datetime, decision: Placement, promote: bool) -> list[dict[str, Any]]:
    """Pipeline update placing the selected students by ``decision`` (their group's window at ``moment``).

    Open: a student from the scheduled lane (or any due student, with
    ``promote``) goes where the promotion sends it: a personal callback still
    in its grace period to its assistant's lane, anything else to its routing
    lane of the pool; others keep their lane. Each carries the window's end.
    Closed: the student waits in the scheduled lane for the next opening.
    A callback the session allowed outside the hours (``hours_exempt_until``
    after the lead) counts as open until then.
    """
    exempt = {"$gt": [{"$ifNull": ["$hours_exempt_until", None]}, moment]}
    if decision.open and decision.closes_at is None:
        is_open: Any = True
        closes: Any = "$$REMOVE"
    elif decision.open:
        is_open = True
        closes = {"$cond": [exempt, {"$max": [decision.closes_at, "$hours_exempt_until"]}, decision.closes_at]}
    else:
        is_open, closes = exempt, "$hours_exempt_until"
    waiting = {"$eq": ["$lane", SCHEDULED_LANE]}
    moves = True if promote else waiting
    personal = {"$and": [waiting, {"$eq": [{"$type": "$callback_assistant"}, "string"]},
                         {"$gt": ["$personal_until", moment]}]}
    moved = {"$and": [f"${OPEN}", moves]}
    return [
        {"$set": {OPEN: is_open, CLOSES: closes}},
        {"$set": {
            "lane": {"$cond": [moved, {"$cond": [personal, {"$concat": [PERSONAL_LANE, "$callback_assistant"]},
                                                 pool_lane()]},
                               {"$cond": [f"${OPEN}", "$lane", SCHEDULED_LANE]}]},
            "rank": {"$cond": [moved, {"$cond": [personal, PERSONAL_RANK, POOL_RANK]}, "$rank"]},
            "wake_at": {"$cond": [moved, {"$cond": [personal, "$personal_until", "$$REMOVE"]},
                                  {"$cond": [f"${OPEN}", "$wake_at", decision.opens_at or FOREVER]}]},
            "personal_until": {"$cond": [{"$and": [moved, {"$not": [personal]}]}, "$$REMOVE", "$personal_until"]},
            "callback_assistant": {"$cond": [{"$and": [moved, {"$not": [personal]}]}, None,
                                             "$callback_assistant"]},
            "waiting_for": {"$cond": [moved, "$$REMOVE", {"$cond": [f"${OPEN}", "$waiting_for", WINDOW]}]},
            "window_closes_at": {"$cond": [f"${OPEN}", f"${CLOSES}", "$$REMOVE"]},
        }},
        {"$unset": [OPEN, CLOSES]},
    ]
