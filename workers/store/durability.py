"""How every store operation talks to MongoDB: durability, freshness, and the one error boundary.

Durability, chosen once for every operation of the store:

* **Writes** (claim, completion, release, heartbeat, reclaim, log-off,
  import, batch, close and reopen) use write concern ``{w: "majority",
  j: true}``. A caller is told about a write only after a majority of the
  replica set has it in its journal, so no election can roll it back.
  Retryable writes stay on (pymongo's default; the settings refuse
  ``retryWrites=false``), so a single-document write interrupted by a
  failover is retried once by the driver without being applied twice.
* **Reads** use read concern ``majority`` and read preference ``primary``:
  what they return has been acknowledged by a majority and cannot be rolled
  back.
* **Rechecks** are the reads that explain a refused write ("which student did
  this request get?", "is this a repeat of the same completion?"). The write
  that refused ours may be only milliseconds old and not yet majority
  committed, so a ``majority`` read could miss it. On a replica set they use
  ``linearizable``: the read sees every write the primary applied before it,
  and returns only once that data is majority committed. A standalone cannot
  roll anything back and has no ``linearizable``; there they use ``majority``.

Driver errors that mean "MongoDB is not usable right now" become
``StoreUnavailable`` (a standalone or an unknown server is down) or its
subclass ``FailoverInProgress`` (a replica set without a usable primary),
once, here.
"""

from __future__ import annotations

import functools
import time
import weakref
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

import pymongo
from pymongo import MongoClient, ReadPreference
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import BulkWriteError, ConnectionFailure, OperationFailure, PyMongoError
from pymongo.read_concern import ReadConcern
from pymongo.server_type import SERVER_TYPE
from pymongo.topology_description import TOPOLOGY_TYPE
from pymongo.write_concern import WriteConcern

from callqueue.workers.exceptions import FailoverInProgress, StoreUnavailable

WRITE_CONCERN = WriteConcern("majority", j=True)
READ_CONCERN = ReadConcern("majority")
RECHECK_READ_CONCERN = ReadConcern("linearizable")
READ_PREFERENCE = ReadPreference.PRIMARY

# Server error codes that mean "this node cannot serve the operation right now" (elections, shutdown, timeouts).
UNAVAILABLE_CODES = frozenset({
    6, 7, 50, 64, 89, 91, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436,
})

FAILOVER_TOPOLOGIES = frozenset({
    TOPOLOGY_TYPE.ReplicaSetWithPrimary, TOPOLOGY_TYPE.ReplicaSetNoPrimary, TOPOLOGY_TYPE.Sharded,
})
REPLICA_SET_MEMBERS = frozenset({
    SERVER_TYPE.RSPrimary, SERVER_TYPE.RSSecondary, SERVER_TYPE.RSArbiter, SERVER_TYPE.RSOther,
})

T = TypeVar("T")


@dataclass(frozen=True)
class Collections:
    """The store's collections, each bound to the concerns its operations need."""

    sessions: Collection
    students: Collection
    students_recheck: Collection
    suppressions: Collection
    client: MongoClient

    @classmethod
    def of(cls, database: Database, sessions: str, students: str, suppressions: str) -> "Collections":
        recheck = RECHECK_READ_CONCERN if is_replicated(database.client) else READ_CONCERN
        return cls(
            sessions=_bound(database, sessions, READ_CONCERN),
            students=_bound(database, students, READ_CONCERN),
            students_recheck=_bound(database, students, recheck),
            suppressions=_bound(database, suppressions, READ_CONCERN),
            client=database.client,
        )


def _bound(database: Database, name: str, read_concern: ReadConcern) -> Collection:
    return database.get_collection(name, write_concern=WRITE_CONCERN, read_concern=read_concern,
                                   read_preference=READ_PREFERENCE)


PROBE_COLLECTION = "callqueue_health"


@dataclass(frozen=True)
class DurabilityReport:
    """Whether the deployment can acknowledge a write on a majority, and why not."""

    majority: bool
    replica_set: str | None
    members: int
    url_write_concern: str | None
    detail: str


def probe_majority_write(database: Database, timeout_seconds: float) -> DurabilityReport:
    """Write one probe document with ``{w: "majority", j: true}`` and say what the deployment can promise.

    A standalone acknowledges the write from its own journal only, and a URL
    asking for ``w=0`` or ``w=1`` would let tools other than callqueue's store
    (which sets its own write concern) write without a majority; both are
    reported, not hidden. Raises ``StoreUnavailable`` when MongoDB cannot be
    reached and ``FailoverInProgress`` when no majority acknowledges in time.
    """
    client = database.client
    url_w = client.write_concern.document.get("w")
    try:
        hello = client.admin.command("hello")
        probe = database.get_collection(PROBE_COLLECTION, write_concern=WriteConcern("majority", j=True))
        started = time.monotonic()
        with pymongo.timeout(timeout_seconds):
            probe.update_one({"_id": "majority-write"}, {"$currentDate": {"at": True}}, upsert=True)
        elapsed_ms = (time.monotonic() - started) * 1000
    except PyMongoError as exc:
        if not is_unavailable(exc):
            raise
        raise unavailable(exc, client) from exc
    replica_set = hello.get("setName")
    members = len(hello.get("hosts", [])) if replica_set else 1
    majority = replica_set is not None or hello.get("msg") == "isdbgrid"
    detail = (f"majority-acknowledged write in {elapsed_ms:.0f} ms (replica set {replica_set}, {members} members)"
              if replica_set else "standalone: writes are journaled, but no other member holds them")
    return DurabilityReport(majority, replica_set, members, None if url_w is None else str(url_w), detail)


def can_fail_over(client: MongoClient) -> bool:
    """True when the client follows a replica set (or mongos), so a lost primary is replaced by an election.

    Decided by the topology the client discovered, which keeps its type while
    servers are down: a standalone stays ``Single``.
    """
    return client.topology_description.topology_type in FAILOVER_TOPOLOGIES


def is_replicated(client: MongoClient) -> bool:
    """True when the data lives on a replica set, even through a direct connection to one member."""
    if can_fail_over(client):
        return True
    servers = client.topology_description.server_descriptions().values()
    return any(server.server_type in REPLICA_SET_MEMBERS for server in servers)


def is_unavailable(exc: PyMongoError) -> bool:
    """Does this error mean MongoDB cannot serve us right now, rather than that the request is wrong?"""
    if isinstance(exc, ConnectionFailure) or getattr(exc, "timeout", False):
        return True
    if exc.has_error_label("RetryableWriteError") or exc.has_error_label("TransientTransactionError"):
        return True
    if isinstance(exc, BulkWriteError):
        return bool(exc.details.get("writeConcernErrors"))
    return isinstance(exc, OperationFailure) and exc.code in UNAVAILABLE_CODES


def unavailable(exc: PyMongoError, client: MongoClient | None) -> StoreUnavailable:
    """The callqueue error for an unavailability: a failover on a replica set, an outage otherwise.

    The message names the servers tried (``host:port``, never credentials), so
    a caller who sees it knows which MongoDB to look at.
    """
    where = "" if client is None else f" at {server_addresses(client)}"
    reason = f"MongoDB{where} is unreachable: {type(exc).__name__}"
    if client is not None and can_fail_over(client):
        return FailoverInProgress(f"{reason} (no usable primary)")
    return StoreUnavailable(reason)


def server_addresses(client: MongoClient, most: int = 3) -> str:
    """``host:port`` of the servers the client knows of (its seeds until it has found more), without credentials."""
    addresses = sorted(f"{host}:{port}" for host, port in client.topology_description.server_descriptions())
    return ", ".join(addresses[:most]) + (", ..." if len(addresses) > most else "")


_had_primary: "weakref.WeakSet[MongoClient]" = weakref.WeakSet()


def require_known_primary(client: MongoClient) -> None:
    """Fail at once, without waiting out a timeout, while a replica set's client knows no primary.

    Only for a client that has known a primary before: a new client may hear
    from a secondary before the primary and must be let to discover it. The
    client's monitors mark a lost, frozen or unreachable primary unknown;
    until an election gives it a new one, every operation would only wait.
    Failing fast hands the task back to the queue at once (see
    ``FailoverInProgress``), where a worker that can reach a primary takes it.
    """
    description = client.topology_description
    if description.topology_type == TOPOLOGY_TYPE.ReplicaSetWithPrimary:
        _had_primary.add(client)
    elif description.topology_type == TOPOLOGY_TYPE.ReplicaSetNoPrimary and client in _had_primary:
        raise FailoverInProgress("MongoDB replica set has no known primary")


def translating_driver_errors(method: Callable[..., T]) -> Callable[..., T]:
    """Turn pymongo's unavailability errors into ``StoreUnavailable`` / ``FailoverInProgress`` (the one boundary).

    The first argument is the store (with ``.client``) or a ``Database``.
    """

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        client = getattr(args[0], "client", None) if args else None
        if client is not None:
            require_known_primary(client)
        try:
            return method(*args, **kwargs)
        except PyMongoError as exc:
            if not is_unavailable(exc):
                raise
            raise unavailable(exc, client) from exc

    return wrapper
