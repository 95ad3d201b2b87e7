"""Tasks only the benchmark's workers load (``--include bench.tasks``).

``bench.noop`` and ``bench.noop_complete`` take the arguments of
``assign_next_student`` and ``complete_student`` and answer at once: the
Celery cost alone. ``bench.claim_only`` is a probe: the store's one atomic
claim and nothing else, the best any claim through Celery could do here.
"""

from __future__ import annotations

from typing import Any

from callqueue.workers.app import app
from callqueue.workers.models import Assignment, CallSession
from callqueue.workers.mongo import get_database
from callqueue.workers.store import AssignmentStore, utcnow
from callqueue.workers.store.documents import claim_lanes

NOOP_TASK = "bench.noop"
CLAIM_ONLY_TASK = "bench.claim_only"
NOOP_COMPLETE_TASK = "bench.noop_complete"


@app.task(name=NOOP_TASK, acks_late=True, reject_on_worker_lost=True, typing=False)
def noop(call_session_id: str, assistant_id: str, request_id: str | None = None) -> dict[str, Any]:
    """Answer immediately with a result shaped like a small claim result."""
    return {"status": "noop", "call_session_id": call_session_id, "assigned_to": assistant_id}


@app.task(name=NOOP_COMPLETE_TASK, acks_late=True, reject_on_worker_lost=True, typing=False)
def noop_complete(call_session_id: str, student_id: str, assistant_id: str, outcome: str,
                  assignment_token: int) -> dict[str, Any]:
    """Answer immediately, touching no store, with a result shaped like a small completion result."""
    return {"status": "noop", "call_session_id": call_session_id, "student_id": student_id,
            "assignment_token": assignment_token, "outcome": outcome, "completed_by": assistant_id}


@app.task(name=CLAIM_ONLY_TASK, acks_late=True, reject_on_worker_lost=True, typing=False)
def claim_only(call_session_id: str, assistant_id: str, request_id: str | None = None) -> dict[str, Any]:
    """One atomic claim for ``assistant_id`` and the same result shape as the real task."""
    store = AssignmentStore(get_database(app.settings))
    session = CallSession(id=call_session_id, name=call_session_id, status="open", created_at=None)
    lanes = claim_lanes(assistant_id, (), personal=False)  # as the real claim in a session without them
    document = store._claim(session, assistant_id, request_id or assistant_id, lanes, utcnow())
    if document is None:
        return {"status": "exhausted", "call_session_id": call_session_id}
    return Assignment.from_document(document).to_result()
