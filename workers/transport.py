"""The Redis broker transports our workers, beat, Flower and producers use, and plain Redis clients.

They are kombu's ``redis`` transport (``redis://`` and ``rediss://``) and its
``sentinel`` transport (``sentinel://``), each with one change. When
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

On Sentinel the same crash comes from ``SentinelChannel._get_pool``, which
asks ``_connparams`` first; the same change fixes it. One more step is needed
there: a ``sentinel://`` URL names several sentinels, and on each failed
connection attempt kombu's ``Connection.switch`` moves to the next one and
re-reads the transport from that URL's scheme, dropping the transport Celery
was configured with. A worker would then run on kombu's own Sentinel transport
after its first reconnect and die in the next failover. So this module also
points kombu's ``sentinel`` alias at our Sentinel transport
(``register_sentinel_alias``, run when the module is imported, before any
connection exists: kombu caches a transport class once it resolved the name).

Selected by the broker URL's scheme through Celery's ``broker_transport``
setting (``workers.app``, ``transport_for``). kombu would then write the
broker's URL (``Connection.as_uri``) with that setting as its scheme, and
Flower, which picks the client of its broker view (queue lengths) by that
scheme, would answer 404; ``register_uri_names`` has kombu write ``redis://``,
``rediss://`` (a ``rediss://`` URL gets ``RedisTlsTransport``, the same
transport under its own name, so logs and Flower show that TLS is on) and
``sentinel://`` instead. The TLS options of a ``rediss://`` URL reach Flower
through ``broker_use_ssl``. ``redis_connection`` gives the
components that use redis-py directly (domain counters, the exporter,
``health``) a client that follows the Sentinel master the same way.
"""

from __future__ import annotations

from typing import Any

import redis
from kombu import Connection
from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import redis as kombu_redis
from redis.sentinel import Sentinel

from callqueue.config.redis_urls import SENTINEL_SCHEME, TLS_SCHEME, is_sentinel_url, parse_sentinel_url
from callqueue.workers.exceptions import ConfigurationError

DETACHED = "broker connection already closed: the channel's transport has no connection"


class DetachedSafeMixin:
    """Connection parameters of a detached channel are a connection error, not an AttributeError."""

    connection: Any

    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        if self.connection is None or self.connection.client is None:
            raise redis.ConnectionError(DETACHED)
        return super()._connparams(asynchronous=asynchronous)  # type: ignore[misc]


class DetachedSafeChannel(DetachedSafeMixin, kombu_redis.Channel):
    """kombu's Redis channel; connection parameters of a detached channel are a connection error."""


class DetachedSafeSentinelChannel(DetachedSafeMixin, kombu_redis.SentinelChannel):
    """kombu's Sentinel channel with the same change (its ``_get_pool`` starts with ``_connparams``)."""


class RedisTransport(kombu_redis.Transport):
    """kombu's Redis transport with ``DetachedSafeChannel`` channels."""

    Channel = DetachedSafeChannel


class RedisTlsTransport(RedisTransport):
    """``RedisTransport`` for ``rediss://`` URLs: the same code, named ``rediss`` where kombu writes the broker URL."""


class SentinelTransport(kombu_redis.SentinelTransport):
    """kombu's Sentinel transport with ``DetachedSafeSentinelChannel`` channels."""

    Channel = DetachedSafeSentinelChannel


TRANSPORT = f"{__name__}:RedisTransport"
TLS_TRANSPORT = f"{__name__}:RedisTlsTransport"
SENTINEL_TRANSPORT = f"{__name__}:SentinelTransport"


def register_sentinel_alias() -> None:
    """Make kombu resolve the ``sentinel`` scheme to our Sentinel transport, also after ``Connection.switch``."""
    TRANSPORT_ALIASES[SENTINEL_SCHEME] = SENTINEL_TRANSPORT


def register_uri_names() -> None:
    """Make kombu name our transports by their URL schemes (``redis``, ``rediss``, ``sentinel``) in broker URLs."""
    Connection.resolve_aliases.update({TRANSPORT: "redis", TLS_TRANSPORT: TLS_SCHEME,
                                       SENTINEL_TRANSPORT: SENTINEL_SCHEME})


def transport_for(url: str) -> str:
    """Our transport for a broker URL: Sentinel for ``sentinel://``, the TLS-named one for ``rediss://``, else Redis."""
    if is_sentinel_url(url):
        return SENTINEL_TRANSPORT
    return TLS_TRANSPORT if url.startswith(f"{TLS_SCHEME}://") else TRANSPORT


def redis_connection(url: str, master_name: str | None, **connection_kwargs: Any) -> redis.Redis:
    """A redis-py client for one of our Redis URLs, for everything that talks to Redis outside Celery.

    For a ``sentinel://`` URL it is a client of the master the sentinels name
    ``master_name``: each new connection asks them where the master is, so the
    client follows a failover. ``connection_kwargs`` (timeouts, retry) apply to
    the master's connections; the socket timeouts also to the sentinels'.
    Nothing connects here.
    """
    if not is_sentinel_url(url):
        return redis.Redis.from_url(url, **connection_kwargs)
    if not master_name:
        raise ConfigurationError("a sentinel:// URL needs the master name (CALLQUEUE_REDIS_SENTINEL_MASTER)")
    try:
        parsed = parse_sentinel_url(url)
    except ValueError as exc:
        raise ConfigurationError(f"sentinel:// URL: {exc}") from None
    sentinel_kwargs = {key: value for key, value in connection_kwargs.items() if key.startswith("socket_")}
    sentinels = Sentinel(list(parsed.sentinels), sentinel_kwargs=sentinel_kwargs)
    return sentinels.master_for(master_name, db=parsed.db, username=parsed.username, password=parsed.password,
                                **connection_kwargs)


register_sentinel_alias()
register_uri_names()
