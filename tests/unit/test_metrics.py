"""The Redis-side counters (fakeredis: a pure unit of the Redis helpers)."""

from __future__ import annotations

import threading
import time

import fakeredis
import pytest
from redis.sentinel import SentinelConnectionPool

from callqueue.workers.exceptions import ConfigurationError
from callqueue.workers.metrics import CounterBuffer, counter_buffer, read_counters, redis_client


def test_events_and_rejection_codes_are_counted_separately() -> None:
    client = fakeredis.FakeRedis()
    buffer = CounterBuffer(client, interval_seconds=3600)
    buffer.add("claimed")
    buffer.add("claimed")
    buffer.add("reclaimed", amount=5)
    buffer.add("rejected", code="stale_token")
    buffer.flush()
    events, rejections = read_counters(client)
    assert events == {"claimed": 2, "reclaimed": 5, "rejected": 1}
    assert rejections == {"stale_token": 1}


def test_an_unreachable_redis_skips_the_count_instead_of_failing(caplog: pytest.LogCaptureFixture) -> None:
    unreachable = redis_client("redis://127.0.0.1:1/0")
    buffer = CounterBuffer(unreachable, interval_seconds=3600)
    buffer.add("claimed")
    buffer.flush()
    assert "metrics not counted yet" in caplog.text


def test_buffered_counts_reach_redis_only_when_flushed() -> None:
    client = fakeredis.FakeRedis()
    buffer = CounterBuffer(client, interval_seconds=3600)
    buffer.add("claimed")
    buffer.add("rejected", code="unknown_session")
    assert read_counters(client) == ({}, {})
    assert buffer.flush()
    assert read_counters(client) == ({"claimed": 1, "rejected": 1}, {"unknown_session": 1})
    buffer.close()


def test_the_flusher_thread_writes_counts_within_its_interval() -> None:
    client = fakeredis.FakeRedis()
    buffer = CounterBuffer(client, interval_seconds=0.1)
    for _ in range(5):
        buffer.add("completed")
    deadline = time.monotonic() + 2.0
    while read_counters(client)[0].get("completed") != 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert read_counters(client)[0] == {"completed": 5}
    buffer.close()


def test_counts_that_could_not_be_written_are_kept_for_the_next_flush() -> None:
    server = fakeredis.FakeServer()
    client = fakeredis.FakeRedis(server=server)
    server.connected = False  # every command now raises ConnectionError
    buffer = CounterBuffer(client, interval_seconds=3600)
    buffer.add("claimed", amount=3)
    assert not buffer.flush()
    server.connected = True
    buffer.add("claimed")
    assert buffer.flush()
    assert read_counters(client)[0] == {"claimed": 4}
    buffer.close()


def test_closing_a_buffer_writes_what_it_holds() -> None:
    client = fakeredis.FakeRedis()
    buffer = CounterBuffer(client, interval_seconds=3600)
    buffer.add("released", amount=2)
    buffer.close()
    assert read_counters(client)[0] == {"released": 2}


def test_each_process_has_one_buffer_per_redis_url() -> None:
    found: list[CounterBuffer] = []
    lookup = threading.Thread(target=lambda: found.extend(
        counter_buffer(url) for url in ("redis://127.0.0.1:1/0", "redis://127.0.0.1:1/0", "redis://127.0.0.1:2/0")))
    lookup.start()
    lookup.join(timeout=5)
    assert not lookup.is_alive(), "counter_buffer() blocked"
    assert found[0] is found[1] and found[0] is not found[2]


def test_a_sentinel_url_gives_a_client_of_the_master_the_sentinels_name() -> None:
    client = redis_client("sentinel://127.0.0.1:1/3;sentinel://127.0.0.1:2/3", "calls")
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool)  # every new connection asks the sentinels: follows a failover
    assert (pool.service_name, pool.connection_kwargs["db"]) == ("calls", 3)
    assert [(s.connection_pool.connection_kwargs["host"], s.connection_pool.connection_kwargs["port"])
            for s in pool.sentinel_manager.sentinels] == [("127.0.0.1", 1), ("127.0.0.1", 2)]


def test_a_sentinel_url_without_a_master_name_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="CALLQUEUE_REDIS_SENTINEL_MASTER"):
        redis_client("sentinel://127.0.0.1:1/0")
