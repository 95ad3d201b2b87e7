"""Batch completion: many students completed by one job, with bulk writes, on the ``batch`` queue."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import datetime
from typing import Any, Mapping

from pymongo import UpdateOne

from callqueue.workers.exceptions import AlreadyCompleted, NotHolder, Rejected, UnknownSession
from callqueue.workers.models import PENDING, BatchItem, CallSession, StudentState
from callqueue.workers.store.base import unknown_student
from callqueue.workers.store.documents import Progress, chunks, clock, held_filter, why_not_held
from callqueue.workers.store.outcomes import (
    CompletionPlan, already_recorded, completion_update, not_recorded_since_last_claim, plan_for,
)
from callqueue.workers.store.durability import translating_driver_errors
from callqueue.workers.store.windows import WindowStage
from callqueue.workers.student_ids import id_forms, import_id_of
from callqueue.workers.validation import require_allowed_outcome


class BatchStage(WindowStage):
    """Completing many students at once, each write guarded like a single completion."""

    @translating_driver_errors
    def complete_batch(self, items: list[BatchItem], job_id: str, progress: Progress = lambda done, total: None,
                       chunk_size: int = 1000, pause_seconds: float = 0.0, default_grace_seconds: int = 0,
                       now: datetime | None = None) -> list[dict[str, Any]]:
        """Complete many students with bulk writes; one result per item, in order.

        Each write is guarded like ``complete``: an item with assistant and
        token needs the current holder and token; an item without them only
        completes a student nobody holds, so a live assignment is never
        overwritten. Each item follows its session's retry rules and may carry
        a callback, like ``complete``; an item whose outcome its session's list
        does not allow is refused and writes nothing. Items name their student
        by either form of its id (``workers.student_ids``). Items whose student already has that
        outcome (final, or as its latest attempt since it was last claimed)
        report ``unchanged``, so running the job again counts no attempt twice.
        An item whose callback falls outside its student's calling hours gets
        its own ``invalid_argument`` (unless its session allows it).
        """
        results: list[dict[str, Any]] = []
        progress(0, len(items))
        for chunk in chunks(items, chunk_size):
            results.extend(self._complete_chunk(chunk, job_id, default_grace_seconds, now))
            progress(len(results), len(items))
            time.sleep(pause_seconds)
        return results

    def _complete_chunk(self, given: list[BatchItem], job_id: str, default_grace_seconds: int,
                        now: datetime | None) -> list[dict[str, Any]]:
        """Read the chunk's sessions (their rules), one bulk write, then a recheck of each item's student."""
        with self.bulk_deadline():
            chunk = self._resolved(given)
            sessions = {document["_id"]: CallSession.from_document(document) for document in self.sessions.find(
                {"_id": {"$in": list({item.call_session_id for item in chunk})}})}
            refused = {item.index: error for item in chunk
                       if (error := _outcome_refused(sessions.get(item.call_session_id), item)) is not None}
            allowed = [item for item in chunk if item.index not in refused]
            planned = self._checked_plans(allowed, [
                plan_for(sessions.get(item.call_session_id), item.outcome, item.callback, default_grace_seconds)
                for item in allowed])
            refused.update({item.index: plan for item, plan in planned if not isinstance(plan, CompletionPlan)})
            writable = [(item, plan) for item, plan in planned if isinstance(plan, CompletionPlan)]
            personal = {item.call_session_id for item, plan in writable if plan.marks_session}
            if personal:
                self.note_personal_callbacks(sorted(personal))
            writes = [UpdateOne(_batch_filter(item), completion_update(
                plan, item.assistant_id, item.assignment_token, item.request_id(job_id), clock(now)))
                for item, plan in writable]
            if writes:
                self.students.bulk_write(writes, ordered=False)
            documents = {d["_id"]: d for d in self.students_recheck.find(
                {"_id": {"$in": [item.student_id for item, _ in writable]}})}
            for session_id in {item.call_session_id for item, _ in writable} & set(sessions):
                self.settle_if_closed(session_id, now)
        return [{"index": item.index, "student_id": original.student_id, "status": "rejected",
                 "error": refused[item.index].to_error()} if item.index in refused
                else _batch_result(item, original, documents.get(item.student_id), job_id, set(sessions))
                for item, original in zip(chunk, given)]

    def _resolved(self, items: list[BatchItem]) -> list[BatchItem]:
        """Each item naming its student by stored id: the first of its id's forms that exists (see
        ``workers.student_ids``; one read, only for ids with two forms). An id naming no student is kept
        as given, and refused as unknown."""
        forms = [id_forms(item.call_session_id, item.student_id) for item in items]
        two_forms = [form for item_forms in forms if len(item_forms) > 1 for form in item_forms]
        existing = {document["_id"] for document in self.students.find(
            {"_id": {"$in": two_forms}}, {"_id": 1})} if two_forms else set()
        return [replace(item, student_id=item_forms[0] if len(item_forms) == 1
                        else next((form for form in item_forms if form in existing), item.student_id))
                for item, item_forms in zip(items, forms)]


    def _checked_plans(self, chunk: list[BatchItem], plans: list[CompletionPlan]
                       ) -> list[tuple[BatchItem, CompletionPlan | Rejected]]:
        """Each item's plan, or the rejection of a callback outside its student's calling hours."""
        checked = [(item, plan) for item, plan in zip(chunk, plans)]
        asking = [item.student_id for item, plan in checked if plan.callback is not None and plan.hours is not None]
        if not asking:
            return list(checked)
        zones = {document["_id"]: document.get("zone") or "" for document in self.students.find(
            {"_id": {"$in": asking}}, {"zone": 1})}
        result: list[tuple[BatchItem, CompletionPlan | Rejected]] = []
        for item, plan in checked:
            if item.student_id in zones and plan.callback is not None and plan.hours is not None:
                try:
                    plan = self.callback_plan(plan, zones[item.student_id], f"items[{item.index}].callback_at")
                except Rejected as exc:
                    result.append((item, exc))
                    continue
            result.append((item, plan))
        return result


def _outcome_refused(session: CallSession | None, item: BatchItem) -> Rejected | None:
    """The rejection of an item whose outcome its session's list does not allow (nothing is written for it)."""
    try:
        require_allowed_outcome(f"items[{item.index}].outcome", item.outcome,
                                () if session is None else session.allowed_outcomes)
    except Rejected as exc:
        return exc
    return None


def _batch_filter(item: BatchItem) -> dict[str, Any]:
    if item.assistant_id is not None and item.assignment_token is not None:
        return held_filter(item.call_session_id, item.student_id, item.assistant_id, item.assignment_token)
    return {"_id": item.student_id, "call_session_id": item.call_session_id,
            "filter_status": PENDING, "assigned_to": None, **not_recorded_since_last_claim(item.outcome)}


def _batch_result(item: BatchItem, given: BatchItem, document: Mapping[str, Any] | None, job_id: str,
                  known_sessions: set[str]) -> dict[str, Any]:
    """Whether this item's write landed, had landed before, or why it could not.

    ``item`` names the student by its stored id, ``given`` as the caller wrote it.
    """
    result: dict[str, Any] = {"index": item.index, "student_id": item.student_id}
    if document is None or document["call_session_id"] != item.call_session_id:
        error = (unknown_student(item.call_session_id, given.student_id) if item.call_session_id in known_sessions
                 else UnknownSession(f"call session {item.call_session_id!r} does not exist"))
        return {"index": item.index, "student_id": given.student_id, "status": "rejected", "error": error.to_error()}
    completed = {**result, "import_id": import_id_of(item.call_session_id, item.student_id), "status": "completed"}
    if any(entry.get("request_id") == item.request_id(job_id) for entry in document.get("history", [])):
        return {**completed, "unchanged": False}
    if already_recorded(document, item.outcome):
        return {**completed, "unchanged": True}
    return {**result, "status": "rejected", "error": _why_batch_refused(item, document).to_error()}


def _why_batch_refused(item: BatchItem, document: Mapping[str, Any]) -> Rejected:
    state = StudentState.from_document(document)
    if item.assistant_id is not None and item.assignment_token is not None:
        return why_not_held(state, item.assistant_id, item.assignment_token, document.get("last_completion"))
    if state.filter_status != PENDING:
        return AlreadyCompleted(f"student {state.student_id!r} was already completed "
                                f"with outcome {state.filter_status!r}")
    return NotHolder(f"student {item.student_id!r} is held by an assistant right now; "
                     "give assistant_id and assignment_token to complete it")


