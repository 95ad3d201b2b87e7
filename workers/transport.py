"""The Redis broker transport our workers, beat, Flower and producers use.

It is kombu's ``redis`` transport (``redis://`` and ``rediss://``) with one change. When
the consumer loses its broker connection (a Redis restart, a Sentinel
failover), Celery closes the old connection and kombu's channel, on close,
puts its unacknowledged messages back through a new connection pool. By then
the transport may already be detached from its connection (``client`` is
None); kombu then raises ``AttributeError: 'NoneType' object has no attribute
'hostname'`` from ``Channel._connparams``. That is not one of the transport's
connection errors, so the worker's consumer treats it as unrecoverable and the
whole worker exits.

Here a detached channel raises ``redis.ConnectionError`` instead: the close
path ignores connection errors, the consumer reconnects as after any other
broker outage, and the unacknowledged messages stay in Redis's unacked index,
from which kombu restores them after the visibility timeout.

Selected through Celery's ``broker_transport`` setting (``workers.app``).
"""

from __future__ import annotations

from typing import Any

import redis
from kombu.transport import redis as kombu_redis

DETACHED = "broker connection already closed: the channel's transport has no connection"


class DetachedSafeChannel(kombu_redis.Channel):
    """kombu's Redis channel; connection parameters of a detached channel are a connection error."""

    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        if self.connection is None or self.connection.client is None:
            raise redis.ConnectionError(DETACHED)
        return super()._connparams(asynchronous=asynchronous)


class RedisTransport(kombu_redis.Transport):
    """kombu's Redis transport with ``DetachedSafeChannel`` channels."""

    Channel = DetachedSafeChannel


TRANSPORT = f"{__name__}:RedisTransport"
