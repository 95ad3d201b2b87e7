"""Redis with Sentinel on loopback ports: a master, one replica and three sentinels.

Everything runs from Debian's ``redis-server`` (a sentinel is ``redis-server
<config> --sentinel``) on free ports with its files in a work directory.
``SentinelGroup`` starts the master, then the replica (and waits until it has
synced), then the sentinels, and waits until every sentinel names the same
master, sees the replica and knows the other sentinels. It stops every
process by PID on exit, also when starting fails part-way and on Ctrl-C
(each process is a ``ManagedProcess``). ``kill_master`` SIGKILLs the master;
``wait_for_promotion`` waits until the sentinels have promoted the replica.

A short ``down-after-milliseconds`` makes the sentinels act within about a
second of a crash; a short ``failover-timeout`` lets them retry soon when an
election of their leader splits.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import redis

from devstack.processes import ManagedProcess, StartupError, free_port, wait_until
from devstack.servers import STARTUP_TIMEOUT_SECONDS, RedisServer, redis_binary

DEFAULT_MASTER_NAME = "callqueue"
DEFAULT_DOWN_AFTER_MS = 1000
DEFAULT_FAILOVER_TIMEOUT_MS = 3000
SENTINELS = 3
QUORUM = 2
Address = tuple[str, int]


class ReplicatedRedis(RedisServer):
    """A redis-server that syncs without touching disk; with ``master_port`` it starts as that master's replica."""

    def __init__(self, workdir: Path, master_port: int | None = None) -> None:
        super().__init__(workdir)
        self.master_port = master_port

    def _write_config(self) -> None:
        super()._write_config()
        lines = ["repl-diskless-sync yes", "repl-diskless-sync-delay 0"]
        if self.master_port is not None:
            lines.append(f"replicaof 127.0.0.1 {self.master_port}")
        config = self.data_dir / "redis.conf"
        config.write_text(config.read_text() + "\n".join(lines) + "\n")

    @property
    def address(self) -> Address:
        return ("127.0.0.1", self.port)

    def client(self) -> redis.Redis:
        """A short-timeout client to this server alone (not through Sentinel)."""
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1.0, socket_connect_timeout=1.0)

    def role(self) -> str | None:
        """``master`` or ``slave`` as the server reports it; None when it does not answer."""
        try:
            with self.client() as connection:
                return str(connection.info("replication").get("role"))
        except redis.RedisError:
            return None

    def synced(self) -> bool:
        """True for a replica whose link to its master is up."""
        with self.client() as connection:
            return connection.info("replication").get("master_link_status") == "up"

    def kill(self) -> None:
        """SIGKILL the server: a crash, no clean shutdown."""
        self.process.kill()


class SentinelServer:
    """One sentinel (``redis-server <config> --sentinel``) watching ``master_name``.

    Sentinel rewrites its own configuration file as it learns the topology,
    so the file lives in the sentinel's own directory.
    """

    def __init__(self, workdir: Path, master_name: str, master_port: int, down_after_ms: int,
                 failover_timeout_ms: int) -> None:
        self.port = free_port()
        self.master_name = master_name
        self.data_dir = workdir / f"sentinel-{self.port}"
        self.config_path = self.data_dir / "sentinel.conf"
        self.master_port = master_port
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.process = ManagedProcess("redis-sentinel", [redis_binary(), str(self.config_path), "--sentinel"],
                                      workdir / f"sentinel-{self.port}.log")

    def _write_config(self) -> None:
        name = self.master_name
        lines = [f"port {self.port}", "bind 127.0.0.1", f"dir {self.data_dir}", "daemonize no",
                 f"sentinel monitor {name} 127.0.0.1 {self.master_port} {QUORUM}",
                 f"sentinel down-after-milliseconds {name} {self.down_after_ms}",
                 f"sentinel failover-timeout {name} {self.failover_timeout_ms}",
                 f"sentinel parallel-syncs {name} 1"]
        self.config_path.touch(mode=0o600)
        self.config_path.write_text("\n".join(lines) + "\n")

    def client(self) -> redis.Redis:
        """A short-timeout client to this sentinel."""
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1.0, socket_connect_timeout=1.0)

    def start(self) -> "SentinelServer":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._write_config()
        self.process.start()
        wait_until(self._ping, STARTUP_TIMEOUT_SECONDS, f"sentinel on port {self.port} "
                   f"(log: {self.process.log_path})", self.process.alive)
        return self

    def _ping(self) -> bool:
        with self.client() as connection:
            return bool(connection.ping())

    def stop(self) -> None:
        self.process.stop()

    def master(self) -> dict[str, Any]:
        """What this sentinel knows of the master (``SENTINEL MASTER``), parsed by redis-py."""
        with self.client() as connection:
            return connection.sentinel_master(self.master_name)

    def master_address(self) -> Address | None:
        """The address this sentinel names as master now; None when it does not answer."""
        try:
            with self.client() as connection:
                found = connection.sentinel_get_master_addr_by_name(self.master_name)
        except redis.RedisError:
            return None
        if not found:
            return None
        host = found[0].decode() if isinstance(found[0], bytes) else str(found[0])
        return (host, int(found[1]))


class SentinelGroup:
    """A master, one replica and ``sentinels`` sentinels for ``master_name``, stopped by PID on exit."""

    def __init__(self, workdir: Path, master_name: str = DEFAULT_MASTER_NAME, sentinels: int = SENTINELS,
                 down_after_ms: int = DEFAULT_DOWN_AFTER_MS,
                 failover_timeout_ms: int = DEFAULT_FAILOVER_TIMEOUT_MS) -> None:
        if sentinels < QUORUM:
            raise ValueError(f"at least {QUORUM} sentinels are needed to agree on a failover")
        self.master_name = master_name
        self.redis_servers = [ReplicatedRedis(workdir)]
        self.redis_servers.append(ReplicatedRedis(workdir, master_port=self.redis_servers[0].port))
        self.sentinels = [SentinelServer(workdir, master_name, self.redis_servers[0].port, down_after_ms,
                                         failover_timeout_ms) for _ in range(sentinels)]

    # -- lifecycle ------------------------------------------------------------

    def __enter__(self) -> "SentinelGroup":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> "SentinelGroup":
        """Master, replica (synced), sentinels; then wait until the sentinels agree on all of it."""
        master, replica = self.redis_servers
        master.start()
        replica.start()
        wait_until(replica.synced, STARTUP_TIMEOUT_SECONDS, f"replica on port {replica.port} to sync")
        for sentinel in self.sentinels:
            sentinel.start()
        wait_until(self._agreed, STARTUP_TIMEOUT_SECONDS,
                   f"sentinels to agree on master {self.master_name} and see its replica")
        return self

    def stop(self) -> None:
        """Stop the sentinels first (so they start no failover while the servers stop), then the servers."""
        for process in [*self.sentinels, *reversed(self.redis_servers)]:
            process.stop()

    def _agreed(self) -> bool:
        """Every sentinel names the same healthy master, sees a replica and knows every other sentinel."""
        addresses = {sentinel.master_address() for sentinel in self.sentinels}
        if len(addresses) != 1 or None in addresses:
            return False
        for sentinel in self.sentinels:
            state = sentinel.master()
            if (state.get("is_sdown") or state.get("is_odown") or state.get("num-slaves", 0) < 1
                    or state.get("num-other-sentinels", 0) < len(self.sentinels) - 1):
                return False
        return True

    # -- addresses --------------------------------------------------------------

    def url(self, db: int = 0) -> str:
        """``sentinel://`` URL naming every sentinel, each with database ``db``."""
        return ";".join(f"sentinel://127.0.0.1:{sentinel.port}/{db}" for sentinel in self.sentinels)

    def master_address(self) -> Address | None:
        """The master address every answering sentinel agrees on; None while they disagree."""
        addresses = {sentinel.master_address() for sentinel in self.sentinels} - {None}
        return addresses.pop() if len(addresses) == 1 else None

    def server_at(self, address: Address) -> ReplicatedRedis:
        """Our redis-server listening at ``address``."""
        for server in self.redis_servers:
            if server.address == address:
                return server
        raise StartupError(f"no redis-server of this group listens at {address[0]}:{address[1]}")

    # -- faults -----------------------------------------------------------------

    def kill_master(self) -> ReplicatedRedis:
        """SIGKILL the server the sentinels name as master; return it."""
        address = self.master_address()
        if address is None:
            raise StartupError(f"the sentinels do not agree on a master for {self.master_name}")
        master = self.server_at(address)
        master.kill()
        return master

    def wait_for_promotion(self, old: ReplicatedRedis, timeout_seconds: float = 60.0) -> Address:
        """Block until every sentinel names another server as master and it says it is one; return its address."""
        promoted: list[Address] = []

        def switched() -> bool:
            address = self.master_address()
            if address is None or address == old.address or self.server_at(address).role() != "master":
                return False
            promoted.append(address)
            return True

        wait_until(switched, timeout_seconds, f"sentinels to promote a replica of {self.master_name}")
        return promoted[-1]
