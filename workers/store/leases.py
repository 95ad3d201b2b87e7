"""Leases on held students: setting them, heartbeats, reclaiming expired ones, and logging off."""

from __future__ import annotations

from datetime import datetime

from callqueue.workers.models import PENDING, CallSession, StudentState
from callqueue.workers.store.documents import clock, ending_hold_update, later
from callqueue.workers.store.windows import WindowStage
from callqueue.workers.store.durability import translating_driver_errors


class LeaseStage(WindowStage):
    """How long a hold lasts, and taking students back from holders who went away."""

    @translating_driver_errors
    def set_lease(self, session_id: str, lease_seconds: int | None) -> CallSession:
        """Give the session a lease length (None: assignments last until completed or released).

        Applies to claims made from now on; current holders keep their expiry.
        """
        self.require_session(session_id)
        self.sessions.update_one({"_id": session_id}, {"$set": {"lease_seconds": lease_seconds}})
        return self.require_session(session_id)

    @translating_driver_errors
    def heartbeat(self, session: CallSession, student_id: str, assistant_id: str, token: int,
                  now: datetime | None = None) -> StudentState:
        """Renew the holder's lease; anyone else, or a stale token, is refused (either form of ``student_id``).

        One atomic update guarded by holder and token: after a reclaim the
        token has moved on, so a late heartbeat cannot revive the old hold.
        The new expiry is the server's ``$$NOW`` plus the lease.
        """
        expiry = None if not session.lease_seconds else later(clock(now), session.lease_seconds)
        document, _landed = self.held_write("heartbeat", session.id, student_id, assistant_id, token,
                                            [{"$set": {"lease_expires_at": expiry}}])
        return StudentState.from_document(document)

    @translating_driver_errors
    def reclaim_expired(self, now: datetime | None = None) -> int:
        """Return every assignment whose lease ran out to the pool; the count reclaimed.

        Each student is updated atomically by a filter that still requires an
        expired lease, so a heartbeat that won the race keeps its student. The
        token is bumped, which fences the old holder's late writes.

        "Expired" is judged on MongoDB's clock: the server's time is read
        once, before the update, and the update takes the leases that ran out
        before it (an indexed range). That time is never later than the
        server's own when the update runs, so no lease is taken early.
        """
        moment = now or self.server_now()
        expired = {"filter_status": PENDING, "assigned_to": {"$type": "string"}, "lease_expires_at": {"$lt": moment}}
        with self.bulk_deadline():
            sessions = self.students.distinct("call_session_id", expired)
            reclaimed = self.students.update_many(expired, ending_hold_update("reclaimed", None, clock(now))
                                                  ).modified_count
            for session_id in sessions:
                self.settle_if_closed(session_id, now)
        return reclaimed

    @translating_driver_errors
    def release_assistant(self, session_id: str, assistant_id: str, request_id: str,
                          now: datetime | None = None) -> int:
        """Give back whatever the assistant holds in the session (logging off); the count released."""
        self.require_session(session_id)
        released = self.students.update_many(
            {"call_session_id": session_id, "filter_status": PENDING, "assigned_to": assistant_id},
            ending_hold_update("released", request_id, clock(now), bump_token=False),
        ).modified_count
        self.settle_if_closed(session_id, now)
        return released
