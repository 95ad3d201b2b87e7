"""The Redis-side counters (fakeredis: a pure unit of the Redis helpers)."""

from __future__ import annotations

import fakeredis
import pytest

from workers.metrics import count_event, read_counters, redis_client


def test_events_and_rejection_codes_are_counted_separately() -> None:
    client = fakeredis.FakeRedis()
    count_event(client, "claimed")
    count_event(client, "claimed")
    count_event(client, "reclaimed", amount=5)
    count_event(client, "rejected", code="stale_token")
    events, rejections = read_counters(client)
    assert events == {"claimed": 2, "reclaimed": 5, "rejected": 1}
    assert rejections == {"stale_token": 1}


def test_an_unreachable_redis_skips_the_count_instead_of_failing(caplog: pytest.LogCaptureFixture) -> None:
    unreachable = redis_client("redis://127.0.0.1:1/0")
    count_event(unreachable, "claimed")
    assert "metrics not counted" in caplog.text
