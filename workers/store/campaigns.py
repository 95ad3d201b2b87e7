"""Campaign settings of a session: retry rules, callback grace, allowed outcomes, calling hours.

A completion may leave a student waiting in the scheduled lane (see
``workers.store.outcomes``). ``promote_due`` (``workers.store.windows``), sent
by beat every ``CALLQUEUE_PROMOTE_INTERVAL_SECONDS``, moves every student
whose time has come back where presses can reach it, once its calling hours
allow (one ``update_many`` per session and zone):

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

from typing import Any

from callqueue.workers.exceptions import InvalidArgument
from callqueue.workers.hours import CallingHours
from callqueue.workers.models import CallSession, RetryRule
from callqueue.workers.store.durability import translating_driver_errors
from callqueue.workers.store.windows import WindowStage


class CampaignStage(WindowStage):
    """Retry rules, callback grace periods and calling hours of a session."""

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
    def set_calling_hours(self, session_id: str, hours: CallingHours | None) -> CallSession:
        """Replace the session's calling hours (None: none), then place every student by them.

        The hours apply to students already in the pool when this returns:
        each is moved out or given its new window end (``restamp_session``).
        The session's ``hours_version`` goes up, so an import that read the
        old hours places its students again (``SessionStage.import_students``).
        """
        self.require_session(session_id)
        change: dict[str, Any] = {"$inc": {"hours_version": 1}}
        change["$set" if hours is not None else "$unset"] = {
            "calling_hours": hours.to_document() if hours is not None else ""}
        self.sessions.update_one({"_id": session_id}, change)
        session = self.require_session(session_id)
        self.restamp_session(session)
        return session


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
