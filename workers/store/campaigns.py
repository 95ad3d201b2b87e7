"""Campaign settings of a session (retry rules, callback grace, allowed outcomes) and the promotion of due students.

A completion may leave a student waiting in the scheduled lane (see
``workers.store.outcomes``). ``promote_due``, sent by beat every
``CALLQUEUE_PROMOTE_INTERVAL_SECONDS``, moves every student whose time has
come back where presses can reach it, in one ``update_many``:

* a callback for a named assistant goes to that assistant's personal lane,
  ranked before everything else for them, until the session's grace period
  after the callback time ends;
* everything else (a retry, a callback for anyone, a personal callback whose
  grace period is over) goes back to the student's routing lane of the
  shared pool, at its own priority and position.

The filter requires a pending student that nobody holds, so the promotion
never touches a student someone is calling; a student claimed from its
personal lane keeps that hold until it is completed or given back.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from workers.exceptions import InvalidArgument
from workers.models import PENDING, CallSession, RetryRule
from workers.store.base import StoreStage
from workers.store.documents import PERSONAL_LANE, PERSONAL_RANK, POOL_RANK, SCHEDULED_LANE, pool_lane, utcnow
from workers.store.durability import translating_driver_errors


class CampaignStage(StoreStage):
    """Retry rules, callback grace periods, and bringing scheduled students back when they are due."""

    @translating_driver_errors
    def set_campaign(self, session_id: str, retry_rules: tuple[RetryRule, ...] | None,
                     callback_grace_seconds: int | None,
                     allowed_outcomes: tuple[str, ...] | None = None) -> CallSession:
        """Replace the session's retry rules, callback grace period and/or list of allowed outcomes (None
        leaves one as it is; an empty list of outcomes allows any).

        The settings apply to completions from now on (within the workers'
        session cache time); students already scheduled keep their time. A
        list of outcomes that leaves out an outcome with a retry rule is
        refused (``invalid_argument``) and changes nothing.
        """
        session = self.require_session(session_id)
        check_rules_allowed(session, retry_rules, allowed_outcomes)
        changes: dict[str, Any] = {}
        if retry_rules is not None:
            changes["retry_rules"] = [rule.to_document() for rule in retry_rules]
        if callback_grace_seconds is not None:
            changes["callback_grace_seconds"] = callback_grace_seconds
        if allowed_outcomes is not None:
            changes["allowed_outcomes"] = list(allowed_outcomes)
        if changes:
            self.sessions.update_one({"_id": session_id}, {"$set": changes})
        return self.require_session(session_id)

    @translating_driver_errors
    def promote_due(self, now: datetime | None = None) -> int:
        """Move every due, unheld student out of its waiting lane (see module doc); the count moved."""
        now = now or utcnow()
        with self.bulk_deadline():
            return self.students.update_many(due_filter(now), promotion_update(now)).modified_count


def check_rules_allowed(session: CallSession, retry_rules: tuple[RetryRule, ...] | None,
                        allowed_outcomes: tuple[str, ...] | None) -> None:
    """Refuse settings under which a retry rule names an outcome the session's list does not allow
    (a typo that would never fire)."""
    rules = session.retry_rules if retry_rules is None else retry_rules
    allowed = session.allowed_outcomes if allowed_outcomes is None else allowed_outcomes
    stray = [rule.outcome for rule in rules if allowed and rule.outcome not in allowed]
    if stray:
        raise InvalidArgument(f"retry rules name outcomes that allowed_outcomes leaves out: {', '.join(stray)}",
                              argument="allowed_outcomes" if allowed_outcomes is not None else "retry_rules")


def due_filter(now: datetime) -> dict[str, Any]:
    """The promotion's filter: due by ``now``, still pending, held by nobody (served by ``due_wakeups``)."""
    return {"wake_at": {"$lte": now}, "filter_status": PENDING, "assigned_to": None}


def promotion_update(now: datetime) -> list[dict[str, Any]]:
    """Pipeline update: scheduled with a named assistant still in grace -> personal lane, else -> pool."""
    personal = {"$and": [
        {"$eq": ["$lane", SCHEDULED_LANE]},
        {"$eq": [{"$type": "$callback_assistant"}, "string"]},
        {"$gt": ["$personal_until", now]},
    ]}
    return [{"$set": {
        "lane": {"$cond": [personal, {"$concat": [PERSONAL_LANE, "$callback_assistant"]}, pool_lane()]},
        "rank": {"$cond": [personal, PERSONAL_RANK, POOL_RANK]},
        "wake_at": {"$cond": [personal, "$personal_until", "$$REMOVE"]},
        "personal_until": {"$cond": [personal, "$personal_until", "$$REMOVE"]},
        "callback_assistant": {"$cond": [personal, "$callback_assistant", None]},
        "waiting_for": "$$REMOVE",
    }}]
