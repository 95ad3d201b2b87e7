"""The data-access layer: every read and write of call sessions and their students.

This package is the only code that writes to MongoDB. ``AssignmentStore``
gathers its stages, one module each, by the stage of a student's life:

* ``claim``: **the atomic claim** (``ClaimStage.assign_next``, one
  ``find_one_and_update``; the atomicity guarantee is in that module's doc),
  and the completion and release that end a hold;
* ``sessions``: creating a session with its students (import), closing and
  reopening it, statistics;
* ``leases``: lease lengths, heartbeats, reclaiming expired holds, log-off;
* ``batch``: completing many students in one job;
* ``campaigns``: retry rules, callback grace and calling hours of a session;
* ``windows``: calling hours on MongoDB's clock: promoting students whose
  callback, retry or window time has come, moving students out of the pool
  before their window closes, placing students by their zone's window;
* ``suppressions``: do-not-call lists, and ending the students they name.
* ``supervision``: read only, what a supervisor sees (sessions at a glance,
  assistants, callbacks due, latest events), each query on a named index;
* ``waiting``: read only, why a press found nobody and when it could next
  find someone (the ``exhausted`` answer).

``outcomes`` decides, inside a completion's atomic update, whether its
outcome is final or the student is scheduled again.

``durability`` states the write concern, read concern and read preference of
every operation and is the one place driver errors become callqueue errors;
``documents`` holds the indexes and the shapes of documents and updates.
Every time the store writes or compares is MongoDB's clock (``$$NOW`` in
pipeline updates and filters, or the primary's time read once before an
indexed range: ``WindowStage.server_now``), never the worker's; the ``now``
parameters exist for tests. Every public method returns frozen dataclasses from ``workers.models`` (or
``None``) and raises ``Rejected`` or ``StoreUnavailable`` subclasses.
"""

from __future__ import annotations

from callqueue.workers.store.batch import BatchStage
from callqueue.workers.store.campaigns import CampaignStage
from callqueue.workers.store.claim import ClaimStage
from callqueue.workers.store.documents import (
    ASSIGNMENT_FIELDS, CLAIM_INDEX, SESSIONS, STUDENTS, SUPPRESSIONS, NewStudent, ensure_indexes, utcnow,
)
from callqueue.workers.store.leases import LeaseStage
from callqueue.workers.store.outcomes import CompletionPlan, plan_for
from callqueue.workers.store.sessions import SessionStage
from callqueue.workers.store.supervision import SupervisionStage
from callqueue.workers.store.waiting import WaitingStage

__all__ = [
    "ASSIGNMENT_FIELDS", "CLAIM_INDEX", "SESSIONS", "STUDENTS", "SUPPRESSIONS", "AssignmentStore", "CompletionPlan",
    "NewStudent", "plan_for",
    "ensure_indexes", "utcnow",
]


class AssignmentStore(ClaimStage, SessionStage, LeaseStage, BatchStage, CampaignStage, SupervisionStage,
                      WaitingStage):
    """Data access for call sessions and the students in them (all stages, one object per task)."""
