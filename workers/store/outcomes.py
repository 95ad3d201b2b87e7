"""What a completion does to a student: a final outcome, a retry later, or a scheduled callback.

Shared by ``complete`` (one student) and ``complete_batch`` (many). The
decision is made inside the completion's own atomic update (a pipeline), from
the student's attempt count as it is at that moment, so two completions can
never both see "one attempt left":

* with a **callback** (``callback_at``), the student waits in the scheduled
  lane until that time, then returns to the pool; with ``callback_assistant``
  it first goes to that assistant's personal lane until the session's grace
  period after ``callback_at`` ends;
* with a **retry rule** for the outcome and fewer than ``max_attempts``
  attempts so far, the student waits ``delay_seconds`` in the scheduled lane;
* otherwise the outcome is **final** (``filter_status`` is set), and so is
  every completion of a student put on a do-not-call list while it was held.

Every completion counts one attempt and records ``last_completion``
(outcome and token), which lets a batch job run again without counting an
attempt twice. ``CampaignStage.promote_due`` moves due students back.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from callqueue.workers.hours import CallingHours
from callqueue.workers.models import PENDING, CallSession, Callback, RetryRule
from callqueue.workers.store.documents import IS_SUPPRESSED, POOL_RANK, SCHEDULED_LANE, later

FINAL, RETRY, CALLBACK = "final", "retry", "callback"
NEXT = "_next"  # a field that lives only inside one update pipeline


@dataclass(frozen=True)
class CompletionPlan:
    """The outcome of one call and what may follow it: the session's rule for it, or a callback."""

    outcome: str
    rule: RetryRule | None = None
    callback: Callback | None = None
    grace_seconds: int = 0
    # The first personal callback of its session: the session must be marked before it is scheduled.
    marks_session: bool = False
    # The session's calling hours, against which a callback's time is checked (``workers.store.windows``).
    hours: CallingHours | None = None
    # A callback outside the calling hours that the session allows: until then the hours do not hold it back.
    exempt_until: datetime | None = None

    def next_step(self) -> Any:
        """Aggregation expression: ``callback``, ``retry`` or ``final``, from the updated attempt count.

        Always ``final`` for a student on a do-not-call list.
        """
        if self.callback is not None:
            step: Any = CALLBACK
        elif self.rule is not None:
            step = {"$cond": [{"$lt": ["$attempts", self.rule.max_attempts]}, RETRY, FINAL]}
        else:
            return FINAL
        return {"$cond": [IS_SUPPRESSED, FINAL, step]}

    def due_at(self, now: Any) -> Any:
        """When a scheduled student returns: the callback time, or ``now`` (``$$NOW``) plus the retry delay."""
        if self.callback is not None:
            return self.callback.at
        if self.rule is not None:
            return later(now, self.rule.delay_seconds)
        return None

    def exempted(self, until: datetime) -> "CompletionPlan":
        """The same plan, with the calling hours waived for its callback until ``until``."""
        return replace(self, exempt_until=until)

    def personal_until(self) -> datetime | None:
        """Until when only the callback's assistant may claim the student (None: anyone, at once)."""
        if self.callback is None or self.callback.assistant_id is None:
            return None
        return self.callback.at + timedelta(seconds=self.grace_seconds)


def completion_update(plan: CompletionPlan, assistant_id: str | None, token: int | None, request_id: str,
                      now: Any) -> list[dict[str, Any]]:
    """The pipeline update of a completion (its filter, built by the caller, guards who may complete).

    ``assistant_id``/``token`` are recorded in the history entry as given
    (a batch item may complete a student nobody holds, without either).
    """
    final = {"$eq": [f"${NEXT}", FINAL]}
    scheduled = {"$ne": [f"${NEXT}", FINAL]}
    due = plan.due_at(now)
    personal_until = plan.personal_until()
    callback_assistant = None if plan.callback is None else plan.callback.assistant_id
    return [
        {"$set": {"attempts": {"$add": [{"$ifNull": ["$attempts", 0]}, 1]}}},
        {"$set": {NEXT: plan.next_step()}},
        {"$set": {"history": {"$concatArrays": [{"$ifNull": ["$history", []]}, [{
            "event": "completed", "assistant_id": {"$literal": assistant_id}, "token": {"$literal": token},
            "request_id": {"$literal": request_id}, "at": now, "outcome": {"$literal": plan.outcome},
            "attempt": "$attempts", "next": f"${NEXT}",
            "due_at": {"$cond": [scheduled, due, None]},
            "callback_assistant": {"$literal": callback_assistant},
            "exempt_until": {"$cond": [scheduled, plan.exempt_until or "$$REMOVE", "$$REMOVE"]},
        }]]}}},
        {"$set": {
            "filter_status": {"$cond": [final, {"$literal": plan.outcome}, PENDING]},
            "completed_at": {"$cond": [final, now, None]},
            "completed_by": {"$cond": [final, {"$literal": assistant_id}, None]},
            "assigned_to": None,
            "assigned_at": {"$cond": [final, "$assigned_at", None]},
            "lease_expires_at": None,
            "last_completion": {"outcome": {"$literal": plan.outcome}, "token": "$assignment_token"},
            "lane": {"$cond": [final, "$lane", SCHEDULED_LANE]},
            "rank": POOL_RANK,
            "waiting_for": {"$cond": [final, "$$REMOVE", f"${NEXT}"]},
            "wake_at": {"$cond": [final, "$$REMOVE", due]},
            "callback_assistant": {"$cond": [final, None, {"$literal": callback_assistant}]},
            "personal_until": {"$cond": [final, "$$REMOVE", personal_until or "$$REMOVE"]},
            "hours_exempt_until": {"$cond": [final, "$$REMOVE", plan.exempt_until or "$$REMOVE"]},
            "window_closes_at": "$$REMOVE",
        }},
        {"$unset": NEXT},
    ]


def not_recorded_since_last_claim(outcome: str) -> dict[str, Any]:
    """Query part: the student's last completion, since its last claim, was not already ``outcome``.

    A claim raises the token, so a ``last_completion`` with the current token
    and the same outcome means this very result is already recorded.
    """
    return {"$expr": {"$not": [{"$and": [
        {"$eq": ["$last_completion.outcome", {"$literal": outcome}]},
        {"$eq": ["$last_completion.token", "$assignment_token"]},
    ]}]}}


def already_recorded(document: dict[str, Any], outcome: str) -> bool:
    """The student already carries ``outcome`` as its result (final, or its latest attempt since a claim)."""
    last = document.get("last_completion") or {}
    return document.get("filter_status") == outcome or (
        last.get("outcome") == outcome and last.get("token") == document.get("assignment_token"))


def plan_for(session: CallSession | None, outcome: str, callback: Callback | None,
             default_grace_seconds: int) -> CompletionPlan:
    """What a completion with ``outcome`` (and maybe a callback) does in ``session``.

    In a closed (or unknown) session every outcome is final: nothing is
    scheduled that no one may call.
    """
    if session is None or not session.is_open:
        return CompletionPlan(outcome)
    grace = default_grace_seconds if session.callback_grace_seconds is None else session.callback_grace_seconds
    personal = callback is not None and callback.assistant_id is not None
    return CompletionPlan(outcome, session.retry_rule(outcome), callback, grace,
                          marks_session=personal and not session.personal_callbacks, hours=session.calling_hours)
