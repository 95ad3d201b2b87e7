"""The broker transport keeps a worker alive when its connection is torn down with messages unacknowledged.

Reproduces the crash seen when Redis restarts under a busy worker: Celery
closes the lost connection, the channel tries to put its unacknowledged
messages back through a transport that is already detached, and kombu's own
transport raises AttributeError, which kills the worker. Ours turns that into
a connection error, which the close path ignores, and the message stays in
Redis to be restored.
"""

from __future__ import annotations

import uuid

import pytest
from kombu import Connection, Queue

from config import Settings
from devstack.servers import RedisServer
from workers.app import create_app
from workers.transport import TRANSPORT

BROKER_DB = 7  # a database of its own on the session's redis-server


def hold_unacked_message(url: str, transport: str, queue_name: str) -> Connection:
    """A connection whose channel holds one unacknowledged message and whose transport is detached."""
    connection = Connection(url, transport=transport, transport_options={"visibility_timeout": 0})
    queue = Queue(queue_name, routing_key=queue_name)
    with connection.Producer(serializer="json") as producer:
        producer.publish({"press": 1}, routing_key=queue_name, declare=[queue])
    message = connection.default_channel.basic_get(queue_name, no_ack=False)
    assert message is not None
    connection.transport.client = None  # what closing the transport did before the channel closed
    return connection


def take_message(url: str, queue_name: str) -> dict | None:
    """Restore messages past their visibility timeout, then take one from the queue."""
    with Connection(url, transport=TRANSPORT, transport_options={"visibility_timeout": 0}) as connection:
        channel = connection.default_channel
        channel.qos.restore_visible()
        message = channel.basic_get(queue_name, no_ack=True)
        return None if message is None else message.decode()


def test_kombus_own_transport_crashes_on_that_close(redis_server: RedisServer) -> None:
    """The pinned kombu's behaviour, which the transport below exists for (revisit when this fails)."""
    connection = hold_unacked_message(redis_server.url(BROKER_DB), "redis", f"q-{uuid.uuid4().hex}")
    with pytest.raises(AttributeError, match="hostname"):
        connection.release()


def test_our_transport_closes_cleanly_and_the_message_is_not_lost(redis_server: RedisServer) -> None:
    url, queue_name = redis_server.url(BROKER_DB), f"q-{uuid.uuid4().hex}"
    connection = hold_unacked_message(url, TRANSPORT, queue_name)
    connection.release()  # no exception: the worker's consumer would reconnect
    assert take_message(url, queue_name) == {"press": 1}
    assert take_message(url, queue_name) is None  # exactly once


def test_every_component_uses_our_transport() -> None:
    app = create_app(Settings.from_env({"CELERY_BROKER_URL": "redis://127.0.0.1:1/0"}), include_tasks=False)
    with app.connection_for_write() as connection:
        assert f"{type(connection.transport).__module__}:{type(connection.transport).__name__}" == TRANSPORT
