"""A real MongoDB replica set from the same mongod binary, on loopback ports.

``ReplicaSet`` starts N members with ``--replSet``, initiates the set, waits
for a primary and for every member to be readable, and stops every member by
PID on exit (also on failure and Ctrl-C: each member is a ``ManagedProcess``,
and a frozen member is thawed before it is stopped). It also carries the
faults the failover tests and the benchmark inject: step-down (planned or
forced), SIGKILL and restart on the same data, SIGSTOP and SIGCONT.
"""

from __future__ import annotations

import re
import signal
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bson.timestamp import Timestamp
from pymongo import MongoClient
from pymongo.errors import PyMongoError

from devstack.processes import StartupError, wait_until
from devstack.servers import STARTUP_TIMEOUT_SECONDS, MongoServer

DEFAULT_ELECTION_TIMEOUT_MS = 10_000
# Oplog entries that insert, update or delete documents of an application's database.
APPLICATION_WRITES = {"op": {"$in": ["i", "u", "d"]}, "ns": {"$not": re.compile(r"^(admin|config|local)\.")}}
# How long after a waiting getMore's await time ends its answer may still be written.
ANSWER_MARGIN_MS = 1000
# Secondaries fetch the oplog with one getMore at a time instead of a stream the primary pushes:
# a frozen secondary then receives nothing (a streamed batch would wait in its socket buffer and be
# applied on thaw). The forced-rollback scenario needs writes that truly never left the primary.
PULLED_REPLICATION = ("--setParameter", "oplogFetcherUsesExhaust=false")
# A new primary starts taking writes at once instead of first trying to catch up with members
# it cannot reach (a frozen old primary would hold it for the heartbeat timeout, 10 s). callqueue
# writes with w: "majority", so what catch-up could save was never acknowledged to anyone.
DEFAULT_CATCH_UP_TIMEOUT_MS = 0
# While a frozen old primary holds a secondary's progress reports, the new primary learns that
# secondary's progress only from heartbeats, and each majority write waits for the next one
# (measured: 2 s per write at MongoDB's default interval, 0.5 s at 500 ms, 0.1 s at 100 ms).
HEARTBEAT_INTERVAL_MS = 100


class ReplicaSet:
    """``members`` mongod processes forming replica set ``name``.

    ``advertised_host`` is the address written into the replica-set config
    (default 127.0.0.1); every client discovers the members by it, so it must
    be reachable from wherever workers run. ``bind_ips`` are extra addresses
    each member listens on; ``member_args`` go on every member's command line.
    """

    def __init__(self, workdir: Path, members: int = 3, name: str = "rs0",
                 election_timeout_ms: int = DEFAULT_ELECTION_TIMEOUT_MS,
                 advertised_host: str = "127.0.0.1", bind_ips: tuple[str, ...] = (),
                 catch_up_timeout_ms: int = DEFAULT_CATCH_UP_TIMEOUT_MS,
                 member_args: tuple[str, ...] = ()) -> None:
        if members < 1:
            raise ValueError("a replica set needs at least one member")
        self.name = name
        self.election_timeout_ms = election_timeout_ms
        self.catch_up_timeout_ms = catch_up_timeout_ms
        self.advertised_host = advertised_host
        self.members = [MongoServer(workdir, replica_set=name, bind_ips=bind_ips, extra_args=member_args)
                        for _ in range(members)]
        self._frozen: set[int] = set()

    # -- lifecycle ----------------------------------------------------------

    def __enter__(self) -> "ReplicaSet":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> "ReplicaSet":
        """Start every member, initiate the set, wait until it has a primary and all members are up."""
        for member in self.members:
            member.start()
        with _direct(self.members[0]) as admin:
            admin.admin.command("replSetInitiate", self._config())
        self.wait_for_primary(STARTUP_TIMEOUT_SECONDS)
        wait_until(self._all_healthy, STARTUP_TIMEOUT_SECONDS, f"replica set {self.name} members")
        return self

    def stop(self) -> None:
        """Stop every member by PID (thawing frozen ones first, so that SIGTERM can land)."""
        for member in self.members:
            self.thaw(member)
            member.stop()

    def _config(self) -> dict[str, Any]:
        return {
            "_id": self.name,
            "members": [{"_id": index, "host": self.host_of(member)} for index, member in enumerate(self.members)],
            "settings": {"electionTimeoutMillis": self.election_timeout_ms,
                         "catchUpTimeoutMillis": self.catch_up_timeout_ms,
                         "heartbeatIntervalMillis": HEARTBEAT_INTERVAL_MS},
        }

    # -- addresses ----------------------------------------------------------

    def host_of(self, member: MongoServer) -> str:
        return f"{self.advertised_host}:{member.port}"

    @property
    def url(self) -> str:
        """A connection string naming every member and the set."""
        hosts = ",".join(self.host_of(member) for member in self.members)
        return f"mongodb://{hosts}/?replicaSet={self.name}"

    # -- roles --------------------------------------------------------------

    def primary(self) -> MongoServer | None:
        """The member that says it is primary right now (frozen members are not asked)."""
        for member in self.members:
            if member.pid in self._frozen or not member.process.alive():
                continue
            try:
                with _direct(member, timeout_ms=1000) as client:
                    if client.admin.command("hello").get("isWritablePrimary"):
                        return member
            except PyMongoError:
                continue
        return None

    def wait_for_primary(self, timeout_seconds: float = 60.0,
                         other_than: MongoServer | None = None) -> MongoServer:
        """Block until a member (other than ``other_than``) is primary; return it."""
        found: list[MongoServer] = []

        def elected() -> bool:
            member = self.primary()
            if member is not None and member is not other_than:
                found.append(member)
                return True
            return False

        wait_until(elected, timeout_seconds, f"a primary in replica set {self.name}")
        return found[-1]

    def _all_healthy(self) -> bool:
        with _direct(self.members[0], timeout_ms=1000) as client:
            status = client.admin.command("replSetGetStatus")
        return all(m.get("health") == 1 and m.get("stateStr") in ("PRIMARY", "SECONDARY")
                   for m in status["members"])

    def wait_until_healthy(self, timeout_seconds: float = 60.0) -> None:
        """Block until every member is up and is primary or secondary again."""
        wait_until(self._all_healthy, timeout_seconds, f"replica set {self.name} to heal")

    # -- faults ---------------------------------------------------------------

    def step_down(self, force: bool = False, step_down_seconds: int = 10) -> MongoServer:
        """Ask the primary to step down; without ``force`` it waits for a caught-up secondary.

        Returns the member that was primary.
        """
        member = self.primary()
        if member is None:
            raise StartupError(f"replica set {self.name} has no primary to step down")
        command: dict[str, Any] = {"replSetStepDown": step_down_seconds, "force": force}
        if not force:
            command["secondaryCatchUpPeriodSecs"] = min(5, step_down_seconds)
        try:
            with _direct(member, timeout_ms=15_000) as client:
                client.admin.command(command)
        except PyMongoError:
            pass  # the primary closes connections as it steps down
        return member

    def kill(self, member: MongoServer) -> None:
        """SIGKILL the member (a crash)."""
        self._frozen.discard(member.pid)
        member.kill()

    def restart(self, member: MongoServer) -> None:
        """Start a killed or stopped member again on the same port and data directory."""
        member.start()

    def freeze(self, member: MongoServer) -> None:
        """SIGSTOP the member: it keeps its sockets but answers nothing, as a paused VM or a partition."""
        member.process.send_signal(signal.SIGSTOP)
        self._frozen.add(member.pid)

    def thaw(self, member: MongoServer) -> None:
        """SIGCONT a frozen member."""
        if member.pid in self._frozen:
            member.process.send_signal(signal.SIGCONT)
            self._frozen.discard(member.pid)

    def updates(self, member: MongoServer) -> int:
        """How many documents ``member`` has updated since it started, claims (findAndModify) included."""
        with _direct(member, timeout_ms=2000) as client:
            return int(client.admin.command("serverStatus")["metrics"]["document"]["updated"])

    def wait_for_updates(self, member: MongoServer, count: int, timeout_seconds: float = 60.0) -> None:
        """Block until ``member`` has updated ``count`` more documents than now."""
        start = self.updates(member)
        wait_until(lambda: self.updates(member) - start >= count, timeout_seconds,
                   f"{count} updates on port {member.port}")

    def oplog_position(self, member: MongoServer) -> Timestamp:
        """The time of the newest entry in the member's oplog."""
        with _direct(member, timeout_ms=2000) as client:
            newest = client.local["oplog.rs"].find_one(sort=[("$natural", -1)], projection={"ts": 1})
        if newest is None:
            raise StartupError(f"the oplog on port {member.port} is empty")
        return newest["ts"]

    def wait_for_writes_only_it_has(self, member: MongoServer, frozen_at: Timestamp, frozen_wall: datetime,
                                    timeout_seconds: float = 30.0) -> None:
        """Block until ``member`` has written application data that members frozen at ``frozen_at`` cannot have.

        A frozen secondary may still receive one batch: the answer to the getMore
        it had waiting on the primary. The primary answers it with what its oplog
        holds at that moment, which is at the latest when the getMore's await
        time ends: half the election timeout. A write made after that (plus a
        second) is in no batch a frozen member can get; the primary steps down
        once it has heard from no majority for a whole election timeout, so it
        has half of one to make such a write.
        """
        after = frozen_wall + timedelta(milliseconds=self.election_timeout_ms / 2 + ANSWER_MARGIN_MS)

        def written() -> bool:
            with _direct(member, timeout_ms=2000) as client:
                return client.local["oplog.rs"].find_one(
                    {**APPLICATION_WRITES, "ts": {"$gt": frozen_at}, "wall": {"$gt": after}}) is not None

        wait_until(written, timeout_seconds, f"writes no frozen member can have on port {member.port}")

    def states(self) -> list[str]:
        """Each member's own view, for a timeline: its state, its sync source and its newest oplog time."""
        seen = []
        for member in self.members:
            try:
                with _direct(member, timeout_ms=2000) as client:
                    status = client.admin.command("replSetGetStatus")
                mine = next(entry for entry in status["members"] if entry.get("self"))
                seen.append(f"port {member.port}: {mine['stateStr']}, syncing from "
                            f"{mine.get('syncSourceHost') or 'nobody'}, newest {mine['optime']['ts']} "
                            f"of term {mine['optime'].get('t')}")
            except (PyMongoError, StopIteration, KeyError) as exc:
                seen.append(f"port {member.port}: no answer ({type(exc).__name__})")
        return seen

    def term(self) -> int:
        """The set's election term as the first answering member reports it: it grows by one per election."""
        for member in self.members:
            if member.pid in self._frozen or not member.process.alive():
                continue
            try:
                with _direct(member, timeout_ms=2000) as client:
                    return int(client.admin.command("replSetGetStatus")["term"])
            except PyMongoError:
                continue
        raise StartupError(f"no member of replica set {self.name} answers")

    def wait_for_rollback_files(self, member: MongoServer, timeout_seconds: float) -> list[Path]:
        """The member's rollback files, once it wrote any (a rejoining former primary rolls back
        after it is back as a secondary); an empty list when none came within the timeout."""
        deadline = time.monotonic() + timeout_seconds
        while not (files := self.rollback_files(member)) and time.monotonic() < deadline:
            time.sleep(0.5)
        return files

    def rollback_files(self, member: MongoServer) -> list[Path]:
        """Documents the member wrote aside when it rolled back writes no majority had."""
        folder = member.data_dir / "rollback"
        return sorted(path for path in folder.rglob("*.bson")) if folder.exists() else []


def _direct(member: MongoServer, timeout_ms: int = 5000) -> MongoClient:
    """A client to this one member only."""
    return MongoClient(f"mongodb://127.0.0.1:{member.port}/", directConnection=True,
                       serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms,
                       socketTimeoutMS=timeout_ms)


