"""Tasks that exist only for the benchmark, loaded into its workers with ``--include bench.tasks``.

``bench.noop`` takes the same arguments and options as
``callqueue.assign_next_student`` and returns at once: its round trip is the
Celery cost alone (send, run, result back).

``bench.noop_complete`` is the same for ``callqueue.complete_student``: it
takes that task's arguments and options, reads and writes nothing, and answers
at once. The open-loop part pairs it with ``bench.noop``, so its baseline press
sends as many messages, with arguments of the same names and sizes, as a real
assign and complete (the answers are smaller: the real ones carry the student
and timestamps).

``bench.claim_only`` is a measuring probe, not a replacement for the real
task: it runs the store's one atomic claim (the same ``find_one_and_update``)
and nothing else: no session lookup, no request-id lookup, no event log line.
It gives the best ratio to the no-op that any claim through Celery could reach
on this machine, which tells whether a target is out of reach or only missed.

They live here, not in ``workers/``, because production workers have no use for them.
"""

from __future__ import annotations

from typing import Any

from workers.app import app
from workers.store import AssignmentStore, utcnow
from workers.store.documents import claim_lanes
from workers.models import Assignment, CallSession
from workers.mongo import get_database

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
