"""MongoDB clients, one per process.

Celery's prefork pool forks worker children; a MongoClient must never cross a
fork, so clients are keyed by process id and made on first use, never at
import time. The first use in a process also makes sure the indexes exist.
"""

from __future__ import annotations

import os
import threading

from pymongo import MongoClient
from pymongo.database import Database

from callqueue.config import Settings
from callqueue.workers.store import ensure_indexes

_lock = threading.Lock()
_clients: dict[tuple[int, str], MongoClient] = {}
_indexed: set[tuple[int, str, str]] = set()


def get_client(settings: Settings) -> MongoClient:
    """This process's client for ``settings.mongo_url`` (made on first call)."""
    key = (os.getpid(), settings.mongo_url)
    client = _clients.get(key)
    if client is None:
        with _lock:
            client = _clients.get(key) or _new_client(settings)
            _clients[key] = client
    return client


def get_database(settings: Settings) -> Database:
    """The callqueue database, with its indexes in place."""
    database = get_client(settings)[settings.mongo_db]
    key = (os.getpid(), settings.mongo_url, settings.mongo_db)
    if key not in _indexed:
        ensure_indexes(database)
        _indexed.add(key)
    return database


def close_clients() -> None:
    """Close this process's clients (used on worker shutdown and in tests)."""
    with _lock:
        for (pid, _url), client in list(_clients.items()):
            if pid == os.getpid():
                client.close()
        _clients.clear()
        _indexed.clear()


def _new_client(settings: Settings) -> MongoClient:
    """A client whose every operation has a deadline (``timeoutMS``), so no server can hold it forever.

    Retryable writes and reads stay on (pymongo's default). Write and read
    concerns are set per collection by ``workers.store.durability``.
    """
    return MongoClient(
        settings.mongo_url,
        serverSelectionTimeoutMS=_ms(settings.mongo_server_selection_timeout_seconds),
        # Also how long the driver's monitor waits on a silent member before marking it unknown.
        connectTimeoutMS=_ms(min(settings.mongo_server_selection_timeout_seconds,
                                 settings.mongo_operation_timeout_seconds)),
        timeoutMS=_ms(settings.mongo_operation_timeout_seconds),
        heartbeatFrequencyMS=max(500, _ms(settings.mongo_heartbeat_seconds)),
        retryWrites=True,
        retryReads=True,
        tz_aware=True,
        appname="callqueue",
    )


def _ms(seconds: float) -> int:
    return int(seconds * 1000)
