"""The open-session cache: one read of all open sessions per interval, not one per press."""

from __future__ import annotations

import time

import pytest

from callqueue.workers.exceptions import SessionClosed
from callqueue.workers.models import CallSession
from callqueue.workers.session_cache import OpenSessionCache


class CountingStore:
    """Stands in for the store's two session reads and counts them."""

    def __init__(self, open_ids: list[str], closed_ids: tuple[str, ...] = ()) -> None:
        self.open_ids = list(open_ids)
        self.closed_ids = set(closed_ids)
        self.bulk_reads = 0
        self.single_reads = 0

    def open_sessions(self, limit: int) -> list[CallSession]:
        self.bulk_reads += 1
        return [session(session_id) for session_id in self.open_ids[:limit]]

    def open_session(self, session_id: str) -> CallSession:
        self.single_reads += 1
        if session_id in self.closed_ids:
            raise SessionClosed(f"call session {session_id!r} is closed", call_session_id=session_id)
        return session(session_id)


def session(session_id: str) -> CallSession:
    return CallSession(id=session_id, name=session_id, status="open", created_at=None)


def test_presses_across_many_sessions_cost_one_read_per_interval() -> None:
    store = CountingStore([f"s{n}" for n in range(200)])
    cache = OpenSessionCache(ttl_seconds=60)
    for press in range(1_000):
        assert cache.open_session(store, f"s{press % 200}").id == f"s{press % 200}"
    assert (store.bulk_reads, store.single_reads) == (1, 0)


def test_a_session_opened_since_the_last_reload_is_read_once() -> None:
    store = CountingStore(["old"])
    cache = OpenSessionCache(ttl_seconds=60)
    cache.open_session(store, "old")
    store.open_ids.append("new")
    for _ in range(5):
        assert cache.open_session(store, "new").id == "new"
    assert (store.bulk_reads, store.single_reads) == (1, 1)


def test_the_sessions_are_reloaded_after_the_interval() -> None:
    store = CountingStore(["s"])
    cache = OpenSessionCache(ttl_seconds=0.05)
    cache.open_session(store, "s")
    time.sleep(0.1)
    cache.open_session(store, "s")
    assert store.bulk_reads == 2


def test_a_closed_session_is_refused_on_every_press() -> None:
    store = CountingStore(["open"], closed_ids=("closed",))
    cache = OpenSessionCache(ttl_seconds=60)
    for _ in range(2):
        with pytest.raises(SessionClosed):
            cache.open_session(store, "closed")
    assert store.single_reads == 2
