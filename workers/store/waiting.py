"""Why a press found nobody, and when it could next find someone (read only, on the ``exhausted`` path).

A claim that finds nobody (``ClaimStage.assign_next`` returns None) is
followed by this one read, so the answer can say when to press again instead
of leaving the caller to poll. The claim itself, and every press that does
find a student, never get here: their cost is unchanged.

The read is one aggregation on the claim's own index (``claim_order_by_lane``,
named by ``hint``), over the students of the session still to finish
(``filter_status: ''``) in three index ranges: every lane's held students
(``assigned_to`` a string: the scan seeks from lane to lane past the
unheld ones), the scheduled lane, and the personal lanes. It therefore reads
the session's scheduled students, its personal callbacks and its holds, and
never the pool of pending students. Of those it keeps the ones this press
could take (untagged or tagged with one of its skills, or a callback for this
assistant) and groups them into held by others, or waiting, with the
earliest time one of the waiting ones could reach this press:

* a scheduled student: its ``wake_at`` (when the promotion brings it back),
  or, for a callback reserved for another assistant, the end of that
  assistant's grace period (``personal_until``);
* another assistant's due personal callback: the end of its grace period
  (its ``wake_at``), after which it returns to the pool.
"""

from __future__ import annotations

from typing import Any

from callqueue.workers.models import PENDING, CallSession, Exhausted
from callqueue.workers.store.base import StoreStage
from callqueue.workers.store.documents import CLAIM_INDEX, SCHEDULED_LANE
from callqueue.workers.store.durability import translating_driver_errors
from callqueue.workers.store.supervision import PERSONAL_LANES

SCHEDULED, HELD, NONE_LEFT = "scheduled", "held", "none_left"


class WaitingStage(StoreStage):
    """What an ``exhausted`` answer says: why nobody is there, and when someone could be."""

    @translating_driver_errors
    def why_exhausted(self, session: CallSession, assistant_id: str, skills: tuple[str, ...] = ()) -> Exhausted:
        """The students this press could take later, in one indexed read (see module doc)."""
        groups = {group["_id"]: group for group in self.students.aggregate(
            waiting_pipeline(session.id, assistant_id, skills), hint=CLAIM_INDEX)}
        waiting, held = groups.get(False, {}), groups.get(True, {})
        scheduled, held_by_others = int(waiting.get("students", 0)), int(held.get("students", 0))
        reason = SCHEDULED if scheduled else HELD if held_by_others else NONE_LEFT
        return Exhausted(session.id, reason, waiting.get("next_due_at"), scheduled, held_by_others)


def waiting_pipeline(session_id: str, assistant_id: str, skills: tuple[str, ...]) -> list[dict[str, Any]]:
    """Held and waiting students this press could take: ``{_id: held?, students, next_due_at}``."""
    assistant = {"$literal": assistant_id}
    reserved_for_another = {"$and": [
        {"$eq": ["$lane", SCHEDULED_LANE]},
        {"$eq": [{"$type": "$callback_assistant"}, "string"]},
        {"$ne": ["$callback_assistant", assistant]},
        {"$eq": [{"$type": "$personal_until"}, "date"]},
    ]}
    return [
        {"$match": {"call_session_id": session_id, "filter_status": PENDING, "$or": [
            {"assigned_to": {"$type": "string"}}, {"lane": SCHEDULED_LANE}, {"lane": PERSONAL_LANES}]}},
        {"$project": {
            "_id": 0,
            "held": {"$eq": [{"$type": "$assigned_to"}, "string"]},
            "reachable": {"$or": [{"$in": [{"$ifNull": ["$route", ""]}, {"$literal": ["", *skills]}]},
                                  {"$eq": ["$callback_assistant", assistant]}]},
            "due": {"$cond": [reserved_for_another, "$personal_until", "$wake_at"]},
        }},
        {"$match": {"reachable": True}},
        {"$group": {"_id": "$held", "students": {"$sum": 1}, "next_due_at": {"$min": "$due"}}},
    ]
