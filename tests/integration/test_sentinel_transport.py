"""Our Sentinel broker transport keeps a worker alive when its connection is torn down; kombu's own does not.

The crash reported with Sentinel (issue 10): when the master dies, Celery
closes the lost connection, the channel tries to put its unacknowledged
messages back through ``SentinelChannel._get_pool`` on a transport that is
already detached, and kombu raises AttributeError, which kills the worker.
Reproduced here on real sentinels (``devstack.sentinel``) without killing
anything: the transport is detached by hand, as closing it does.

A second path brought the crash back after the first failover: kombu's
``Connection.switch`` (moving to the next sentinel address after a failed
attempt) replaced our transport with kombu's own. The alias test covers it.
"""

from __future__ import annotations

import uuid
from typing import Callable, Iterator

import pytest
from kombu import Connection

from callqueue.config import Settings
from devstack.sentinel import SentinelGroup
from tests.integration.helpers import hold_unacked_message, take_message
from callqueue.workers.app import create_app
from callqueue.workers.transport import SENTINEL_TRANSPORT

KOMBU_SENTINEL_TRANSPORT = "kombu.transport.redis:SentinelTransport"
BROKER_DB = 7


@pytest.fixture(scope="module")
def sentinel_group(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelGroup]:
    with SentinelGroup(tmp_path_factory.mktemp("sentinel-transport")) as group:
        yield group


def connection(group: SentinelGroup, transport: str) -> Connection:
    """A broker connection through the group's sentinels; messages are restorable at once."""
    return Connection(group.url(BROKER_DB), transport=transport,
                      transport_options={"visibility_timeout": 0, "master_name": group.master_name})


def connect_via(group: SentinelGroup) -> Callable[[str], Connection]:
    """``connection`` for this group, by transport."""
    return lambda transport: connection(group, transport)


def test_kombus_own_sentinel_transport_crashes_on_that_close(sentinel_group: SentinelGroup) -> None:
    """The pinned kombu's behaviour, which our transport exists for (revisit when this fails)."""
    held = hold_unacked_message(connect_via(sentinel_group), KOMBU_SENTINEL_TRANSPORT, f"q-{uuid.uuid4().hex}")
    with pytest.raises(AttributeError, match="hostname"):
        held.release()


def test_our_sentinel_transport_closes_cleanly_and_the_message_is_not_lost(sentinel_group: SentinelGroup) -> None:
    queue_name = f"q-{uuid.uuid4().hex}"
    held = hold_unacked_message(connect_via(sentinel_group), SENTINEL_TRANSPORT, queue_name)
    held.release()  # no exception: the worker's consumer would reconnect
    assert take_message(connect_via(sentinel_group), SENTINEL_TRANSPORT, queue_name) == {"press": 1}
    assert take_message(connect_via(sentinel_group), SENTINEL_TRANSPORT, queue_name) is None  # exactly once


def test_switching_to_the_next_sentinel_keeps_our_transport(sentinel_group: SentinelGroup) -> None:
    switching = connection(sentinel_group, SENTINEL_TRANSPORT)
    for _ in sentinel_group.sentinels:
        switching.maybe_switch_next()  # what kombu does after each failed connection attempt
        assert f"{type(switching.transport).__module__}:{type(switching.transport).__name__}" == SENTINEL_TRANSPORT
    switching.release()


def test_every_component_uses_our_sentinel_transport_with_the_master_name(sentinel_group: SentinelGroup) -> None:
    settings = Settings.from_env({"CELERY_BROKER_URL": sentinel_group.url(BROKER_DB),
                                  "CELERY_RESULT_BACKEND": sentinel_group.url(BROKER_DB + 1),
                                  "CALLQUEUE_REDIS_SENTINEL_MASTER": sentinel_group.master_name})
    app = create_app(settings, include_tasks=False)
    try:
        with app.connection_for_write() as broker:
            assert f"{type(broker.transport).__module__}:{type(broker.transport).__name__}" == SENTINEL_TRANSPORT
            assert broker.default_channel.client.ping()
        app.backend.set("callqueue-sentinel-probe", "1")
        assert app.backend.get("callqueue-sentinel-probe") == b"1"
    finally:
        app.close()
