"""docker-compose.sentinel.yml runs docker-compose.yml's Redis as a master, a replica and three sentinels.

The override must keep every service of the main file, add a replica that runs
exactly like ``redis`` (same image, persistence, password, healthcheck) and
three sentinels with a quorum of two watching ``redis`` under the master name
the app services use; and it must point every app service at ``sentinel://``
URLs that our settings accept and that keep the password on every address
(kombu takes it from the address it switches to). No secret may be written in
the override or its entrypoints, and every variable it uses must be in
.env.example. The entrypoints are run with a stand-in for the image's own
entrypoint (what they write, what they keep across restarts), and, where
Debian's redis-server is installed, for real: a master, a replica and three
sentinels started through them form a group that our Redis client reaches,
fail over when the master is SIGKILLed, and keep their roles across restarts.
``docker-compose -f docker-compose.yml -f docker-compose.sentinel.yml config``
must accept the pair (also with docker-compose.replicaset.yml) where that tool
exists, and must resolve it the way these tests read it.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlsplit

import pytest
import redis
import yaml

from callqueue.config.redis_urls import parse_sentinel_url
from callqueue.config.settings import Settings
from devstack.processes import ManagedProcess, free_port, wait_until
from tests.acceptance.test_compose import (
    APP_SERVICES,
    COMPOSE_FILE,
    DOCKER_DIR,
    ENV_EXAMPLE,
    DASHBOARD,
    EXPORTER,
    ROOT,
    SERVICES,
    URL_WITH_LITERAL_PASSWORD,
    VARIABLE,
    env_example_lines,
)
from tests.acceptance.compose_files import (
    container_path, environment, merged_services, resolved_volume, run_compose,
)
from callqueue.workers.app import celery_config
from callqueue.workers.transport import SENTINEL_TRANSPORT, redis_connection

OVERRIDE_FILE = ROOT / "docker-compose.sentinel.yml"
FILES = (COMPOSE_FILE, OVERRIDE_FILE)
REPLICASET_FILE = ROOT / "docker-compose.replicaset.yml"
OPERATIONS_DOC = ROOT / "docs" / "operations.md"
SCRIPTS_DIR = DOCKER_DIR / "redis-sentinel"
SERVER_ENTRYPOINT = SCRIPTS_DIR / "server-entrypoint.sh"
SENTINEL_ENTRYPOINT = SCRIPTS_DIR / "sentinel-entrypoint.sh"
REDIS_SERVERS = ("redis", "redis-2")
SENTINELS = ("sentinel-1", "sentinel-2", "sentinel-3")
CONNECTING_SERVICES = (*APP_SERVICES, EXPORTER, DASHBOARD)
REDIS_PORT = 6379
SENTINEL_PORT = 26379
QUORUM = 2
URL_VARIABLES = {"CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "CALLQUEUE_REDIS_SENTINEL_MASTER"}


# -- compose's merge of the two files ------------------------------------------

@pytest.fixture(scope="module")
def override() -> dict[str, Any]:
    return yaml.safe_load(OVERRIDE_FILE.read_text())


@pytest.fixture(scope="module")
def base_services() -> dict[str, dict[str, Any]]:
    return yaml.safe_load(COMPOSE_FILE.read_text())["services"]


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    """The services of docker-compose.yml with the override applied."""
    return merged_services(FILES)


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> volume or host directory."""
    return {container_path(volume): volume.split(":")[0] for volume in service["volumes"]}


def master_name_of(service: dict[str, Any], env: dict[str, str]) -> str:
    return environment(service, env)["SENTINEL_MASTER_NAME"]


# -- the servers and the sentinels ---------------------------------------------

def test_override_adds_a_replica_and_three_sentinels_and_keeps_every_service(
        services: dict[str, dict[str, Any]], override: dict[str, Any]) -> None:
    assert set(services) == SERVICES | set(REDIS_SERVERS) | set(SENTINELS)
    assert set(override["volumes"]) == {"redis-2-data", *(f"{name}-data" for name in SENTINELS)}
    assert not any(service.get("ports") for service in override["services"].values())
    assert not any(service.get("network_mode") for service in override["services"].values())


def test_the_redis_servers_run_alike_with_the_main_files_image_persistence_and_healthcheck(
        services: dict[str, dict[str, Any]], base_services: dict[str, dict[str, Any]],
        example_env: dict[str, str]) -> None:
    base_redis = base_services["redis"]
    assert base_redis["image"].startswith("redis:7")
    data_volumes = set()
    for name in REDIS_SERVERS:
        server = services[name]
        assert server["image"] == base_redis["image"], name
        assert server["entrypoint"] == ["sh", f"/callqueue/{SERVER_ENTRYPOINT.name}"], name
        assert server["command"] == ["--appendonly", "yes", "--appendfsync", "everysec"], name
        base_shell = base_redis["command"][-1]
        assert "--appendonly yes" in base_shell and "--appendfsync everysec" in base_shell
        assert server["healthcheck"] == base_redis["healthcheck"], name
        assert server["restart"] == "unless-stopped", name
        assert VARIABLE.fullmatch(server["environment"]["REDIS_PASSWORD"]).group(1, 2) == ("REDIS_PASSWORD", ":?")
        assert mounts(server)["/callqueue"] == "./docker/redis-sentinel", name
        data_volumes.add(mounts(server)["/data"])
        assert not {"ports", "network_mode", "container_name"} & set(server), name
    assert data_volumes == {"redis-data", "redis-2-data"}
    assert mounts(services["redis"])["/data"] == mounts(base_redis)["/data"], "the first master keeps its data"
    script = SERVER_ENTRYPOINT.read_text()
    assert '--requirepass "$REDIS_PASSWORD"' in script and '--masterauth "$REDIS_PASSWORD"' in script


def test_each_server_announces_its_name_and_the_replica_follows_the_first_master(
        services: dict[str, dict[str, Any]], example_env: dict[str, str]) -> None:
    for name in REDIS_SERVERS:
        assert environment(services[name], example_env)["REDIS_ANNOUNCE_HOST"] == name
    assert "REDIS_REPLICA_OF" not in services["redis"]["environment"]
    assert environment(services["redis-2"], example_env)["REDIS_REPLICA_OF"] == f"redis {REDIS_PORT}"


def test_three_sentinels_watch_the_first_master_with_a_quorum_of_two(
        services: dict[str, dict[str, Any]], base_services: dict[str, dict[str, Any]],
        example_env: dict[str, str]) -> None:
    volumes = set()
    for name in SENTINELS:
        sentinel = services[name]
        env = environment(sentinel, example_env)
        assert sentinel["image"] == base_services["redis"]["image"], name
        assert sentinel["entrypoint"] == ["sh", f"/callqueue/{SENTINEL_ENTRYPOINT.name}"], name
        assert sentinel["restart"] == "unless-stopped", name
        assert (env["SENTINEL_MASTER_HOST"], env["SENTINEL_MASTER_PORT"]) == ("redis", str(REDIS_PORT)), name
        assert env["SENTINEL_QUORUM"] == str(QUORUM), name
        assert env["SENTINEL_ANNOUNCE_HOST"] == name, name
        assert env["SENTINEL_MASTER_NAME"] == "callqueue", name
        assert int(env["SENTINEL_DOWN_AFTER_MS"]) == int(example_env["REDIS_SENTINEL_DOWN_AFTER_MS"]), name
        assert int(env["SENTINEL_FAILOVER_TIMEOUT_MS"]) == \
            int(example_env["REDIS_SENTINEL_FAILOVER_TIMEOUT_MS"]), name
        assert VARIABLE.fullmatch(sentinel["environment"]["REDIS_PASSWORD"]).group(1, 2) == \
            ("REDIS_PASSWORD", ":?")
        assert mounts(sentinel)["/callqueue"] == "./docker/redis-sentinel", name
        volumes.add(mounts(sentinel)["/data"])
        healthcheck = sentinel["healthcheck"]["test"]
        assert healthcheck[0] == "CMD-SHELL" and "sentinel ckquorum" in healthcheck[1], name
        assert f"-p {SENTINEL_PORT}" in healthcheck[1] and "$$SENTINEL_MASTER_NAME" in healthcheck[1], name
        assert set(sentinel["depends_on"]) == set(REDIS_SERVERS), name
        assert not {"ports", "network_mode", "container_name"} & set(sentinel), name
    assert volumes == {f"{name}-data" for name in SENTINELS}, "each sentinel rewrites a file of its own"
    assert len(SENTINELS) == 2 * QUORUM - 1, "a quorum of two must also be a majority"


def test_the_master_name_follows_the_setting_everywhere(services: dict[str, dict[str, Any]],
                                                        example_env: dict[str, str]) -> None:
    env = {**example_env, "CALLQUEUE_REDIS_SENTINEL_MASTER": "queue-redis"}
    names = {master_name_of(services[name], env) for name in SENTINELS}
    names |= {Settings.from_env(environment(services[name], env)).redis_sentinel_master
              for name in CONNECTING_SERVICES}
    assert names == {"queue-redis"}


# -- how the app services connect ----------------------------------------------

def test_every_app_service_reaches_redis_through_the_three_sentinels(
        services: dict[str, dict[str, Any]], example_env: dict[str, str]) -> None:
    master_names = {master_name_of(services[name], example_env) for name in SENTINELS}
    assert len(master_names) == 1
    expected_sentinels = tuple((name, SENTINEL_PORT) for name in SENTINELS)
    for name in CONNECTING_SERVICES:
        settings = Settings.from_env(environment(services[name], example_env))
        assert settings.redis_sentinel_master in master_names, name
        for url, db in ((settings.broker_url, 0), (settings.result_backend, 1)):
            parsed = parse_sentinel_url(url)
            assert parsed.sentinels == expected_sentinels, name
            assert parsed.db == db, name
            assert parsed.password == example_env["REDIS_PASSWORD"], name
            for address in url.split(";"):
                # kombu's Connection.switch takes the password from the address it moves to.
                assert urlsplit(address).password == example_env["REDIS_PASSWORD"], f"{name}: {address}"
        config = celery_config(settings)
        assert config["broker_transport"] == SENTINEL_TRANSPORT, name
        assert config["broker_transport_options"]["master_name"] == settings.redis_sentinel_master, name
        assert config["result_backend_transport_options"]["master_name"] == settings.redis_sentinel_master


def test_the_urls_take_the_password_from_the_environment(services: dict[str, dict[str, Any]]) -> None:
    for name in CONNECTING_SERVICES:
        for key in ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"):
            for address in str(services[name]["environment"][key]).split(";"):
                userinfo = address.split("://", 1)[1].rsplit("@", 1)[0]
                match = re.fullmatch(f":{VARIABLE.pattern}", userinfo)
                assert match and match.group(1, 2) == ("REDIS_PASSWORD", ":?"), f"{name}.{key}: {userinfo}"


def test_app_services_wait_for_healthy_sentinels(services: dict[str, dict[str, Any]]) -> None:
    for name in CONNECTING_SERVICES:
        depends_on = services[name]["depends_on"]
        assert {sentinel: depends_on[sentinel] for sentinel in SENTINELS} == \
            {sentinel: {"condition": "service_healthy"} for sentinel in SENTINELS}, name


def test_app_services_keep_every_other_variable_of_the_main_file(
        services: dict[str, dict[str, Any]], override: dict[str, Any],
        base_services: dict[str, dict[str, Any]]) -> None:
    for name in CONNECTING_SERVICES:
        assert set(override["services"][name]) == {"environment", "depends_on"}, name
        assert set(override["services"][name]["environment"]) == URL_VARIABLES, name
        assert set(services[name]["environment"]) == set(base_services[name]["environment"]), name
        assert set(services[name]["depends_on"]) == set(base_services[name]["depends_on"]) | set(SENTINELS)


# -- secrets and variables ----------------------------------------------------

def test_no_secret_is_written_in_the_override_or_its_entrypoints(services: dict[str, dict[str, Any]]) -> None:
    for path in (OVERRIDE_FILE, SERVER_ENTRYPOINT, SENTINEL_ENTRYPOINT):
        text = path.read_text()
        assert not URL_WITH_LITERAL_PASSWORD.search(text), path.name
        assert not re.search(r"--(requirepass|masterauth)\s+(?![\"']?\$)", text), path.name
        assert not re.search(r"sentinel auth-pass [\w-]+ [\w-]", text), f"{path.name}: a literal auth-pass"
    for match in VARIABLE.finditer(OVERRIDE_FILE.read_text()):
        name, operator, _ = match.groups()
        if name.endswith(("PASSWORD", "USERNAME", "_USER")):
            assert operator == ":?", f"{match.group(0)} must be required"
    for name in (*REDIS_SERVERS, *SENTINELS, *CONNECTING_SERVICES):
        for key, value in services[name]["environment"].items():
            if re.search(r"PASSWORD|SECRET|TOKEN|AUTH|_URL$|BACKEND$", key):
                assert "${" in str(value), f"{name}.{key} is a literal"


def test_every_variable_the_override_uses_is_documented_in_env_example() -> None:
    used = {match.group(1) for match in VARIABLE.finditer(OVERRIDE_FILE.read_text())}
    documented = {name for _, name, _ in env_example_lines()}
    assert used - documented == set()
    assert {"REDIS_SENTINEL_DOWN_AFTER_MS", "REDIS_SENTINEL_FAILOVER_TIMEOUT_MS",
            "CALLQUEUE_REDIS_SENTINEL_MASTER"} <= used


def test_operations_guide_covers_sentinel() -> None:
    text = OPERATIONS_DOC.read_text()
    start = text.index("## Redis with failover (Sentinel)")
    end = text.find("\n## ", start + 1)
    section = text[start:end if end != -1 else len(text)]
    for needed in ("docker-compose.sentinel.yml", "sentinel://", "CALLQUEUE_REDIS_SENTINEL_MASTER",
                   "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "REDIS_SENTINEL_DOWN_AFTER_MS",
                   "REDIS_SENTINEL_FAILOVER_TIMEOUT_MS", "request_id", "workers/transport.py", "quorum",
                   "TLS", "ckquorum"):
        assert needed in section, needed


# -- the entrypoints, with a stand-in for the image's entrypoint ---------------

def stub_bin(directory: Path, body: str) -> Path:
    """A directory holding ``docker-entrypoint.sh`` with ``body``."""
    directory.mkdir(parents=True, exist_ok=True)
    stub = directory / "docker-entrypoint.sh"
    stub.write_text(f"#!/bin/sh\n{body}\n")
    stub.chmod(0o755)
    return directory


def run_entrypoint(script: Path, stubs: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", str(script), *args], capture_output=True, text=True, timeout=30,
                          env={"PATH": f"{stubs}:/usr/bin:/bin", **env})


@pytest.fixture()
def echo_stubs(tmp_path: Path) -> Path:
    """The image's entrypoint replaced by one that prints its arguments, one a line."""
    return stub_bin(tmp_path / "bin", 'printf "%s\\n" "$@"')


def sentinel_env(config: Path, password: str = "s3cret-one", name: str = "callqueue") -> dict[str, str]:
    return {"REDIS_PASSWORD": password, "SENTINEL_MASTER_NAME": name, "SENTINEL_MASTER_HOST": "redis",
            "SENTINEL_MASTER_PORT": "6379", "SENTINEL_QUORUM": "2", "SENTINEL_DOWN_AFTER_MS": "3000",
            "SENTINEL_FAILOVER_TIMEOUT_MS": "10000", "SENTINEL_ANNOUNCE_HOST": "sentinel-1",
            "SENTINEL_CONFIG_FILE": str(config)}


def config_lines(config: Path, prefix: str) -> list[str]:
    return [line for line in config.read_text().splitlines() if line.startswith(prefix)]


def test_the_sentinel_entrypoint_writes_its_config_once_and_refreshes_the_password(
        tmp_path: Path, echo_stubs: Path) -> None:
    config = tmp_path / "data" / "sentinel.conf"
    config.parent.mkdir()
    first = run_entrypoint(SENTINEL_ENTRYPOINT, echo_stubs, sentinel_env(config))
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == ["redis-server", str(config), "--sentinel"]
    assert "s3cret" not in first.stdout + first.stderr, "the password is never an argument"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    text = config.read_text()
    lines = text.splitlines()
    assert lines.index("sentinel resolve-hostnames yes") < lines.index("sentinel monitor callqueue redis 6379 2")
    for line in ("port 26379", f"dir {config.parent}", "protected-mode no", "sentinel announce-hostnames yes",
                 "sentinel announce-ip sentinel-1", "sentinel auth-pass callqueue s3cret-one",
                 "sentinel down-after-milliseconds callqueue 3000", "sentinel failover-timeout callqueue 10000"):
        assert line in lines, line
    assert "requirepass" not in text, "the sentinels have no password"

    # What the sentinel itself rewrote (a failover to redis-2) survives a restart; the
    # password and the timing come from the environment again, once each.
    config.write_text(text.replace("sentinel monitor callqueue redis 6379 2",
                                   "sentinel monitor callqueue redis-2 6379 2")
                      + "sentinel known-replica callqueue redis 6379\nsentinel current-epoch 1\n")
    env = {**sentinel_env(config, password="s3cret-two"), "SENTINEL_DOWN_AFTER_MS": "1500"}
    second = run_entrypoint(SENTINEL_ENTRYPOINT, echo_stubs, env)
    assert second.returncode == 0, second.stderr
    assert config_lines(config, "sentinel monitor ") == ["sentinel monitor callqueue redis-2 6379 2"]
    assert "sentinel known-replica callqueue redis 6379" in config.read_text()
    assert config_lines(config, "sentinel auth-pass ") == ["sentinel auth-pass callqueue s3cret-two"]
    assert config_lines(config, "sentinel down-after-milliseconds ") == \
        ["sentinel down-after-milliseconds callqueue 1500"]
    assert config_lines(config, "sentinel failover-timeout ") == ["sentinel failover-timeout callqueue 10000"]
    monitor_at = config.read_text().splitlines().index("sentinel monitor callqueue redis-2 6379 2")
    assert config.read_text().splitlines().index("sentinel auth-pass callqueue s3cret-two") > monitor_at
    assert stat.S_IMODE(config.stat().st_mode) == 0o600


def test_the_sentinel_entrypoint_refuses_another_master_name_and_a_missing_password(
        tmp_path: Path, echo_stubs: Path) -> None:
    config = tmp_path / "sentinel.conf"
    assert run_entrypoint(SENTINEL_ENTRYPOINT, echo_stubs, sentinel_env(config)).returncode == 0
    renamed = run_entrypoint(SENTINEL_ENTRYPOINT, echo_stubs, sentinel_env(config, name="other"))
    assert renamed.returncode != 0 and "another master" in renamed.stderr
    assert "redis-server" not in renamed.stdout
    without = {key: value for key, value in sentinel_env(tmp_path / "new.conf").items() if key != "REDIS_PASSWORD"}
    missing = run_entrypoint(SENTINEL_ENTRYPOINT, echo_stubs, without)
    assert missing.returncode != 0 and "REDIS_PASSWORD" in missing.stderr
    assert not (tmp_path / "new.conf").exists()


def test_the_server_entrypoint_sets_the_role_only_on_the_first_start(tmp_path: Path, echo_stubs: Path) -> None:
    flags = ["--appendonly", "yes", "--appendfsync", "everysec"]
    replica_config = tmp_path / "replica.conf"
    env = {"REDIS_PASSWORD": "s3cret", "REDIS_ANNOUNCE_HOST": "redis-2", "REDIS_REPLICA_OF": "redis 6379",
           "REDIS_CONFIG_FILE": str(replica_config)}
    started = run_entrypoint(SERVER_ENTRYPOINT, echo_stubs, env, *flags)
    assert started.returncode == 0, started.stderr
    assert started.stdout.splitlines() == ["redis-server", str(replica_config), "--replica-announce-ip", "redis-2",
                                           "--requirepass", "s3cret", "--masterauth", "s3cret", *flags]
    assert config_lines(replica_config, "replicaof") == ["replicaof redis 6379"]
    assert "s3cret" not in replica_config.read_text()
    assert stat.S_IMODE(replica_config.stat().st_mode) == 0o600

    # Sentinel promoted it (CONFIG REWRITE dropped replicaof): a restart keeps it master.
    replica_config.write_text("# rewritten by redis\nreplica-announce-ip redis-2\n")
    assert run_entrypoint(SERVER_ENTRYPOINT, echo_stubs, env, *flags).returncode == 0
    assert config_lines(replica_config, "replicaof") == []

    master_config = tmp_path / "master.conf"
    master_env = {"REDIS_PASSWORD": "s3cret", "REDIS_ANNOUNCE_HOST": "redis", "REDIS_CONFIG_FILE": str(master_config)}
    assert run_entrypoint(SERVER_ENTRYPOINT, echo_stubs, master_env, *flags).returncode == 0
    assert config_lines(master_config, "replicaof") == []
    # Sentinel made the old master a replica of redis-2: a restart keeps that too.
    master_config.write_text("replicaof redis-2 6379\n")
    assert run_entrypoint(SERVER_ENTRYPOINT, echo_stubs, master_env, *flags).returncode == 0
    assert config_lines(master_config, "replicaof") == ["replicaof redis-2 6379"]


# -- the entrypoints with real servers -----------------------------------------

class EntrypointGroup:
    """A master, a replica and three sentinels started through the entrypoints, all named ``localhost``."""

    HOST = "localhost"
    PASSWORD = "group-s3cret"
    MASTER_NAME = "callqueue"

    def __init__(self, workdir: Path, redis_server: str) -> None:
        self.workdir = workdir
        self.stubs = stub_bin(workdir / "bin", f'[ "$1" = redis-server ] && shift\nexec "{redis_server}" "$@"')
        self.server_ports = [free_port(), free_port()]
        self.sentinel_ports = [free_port() for _ in SENTINELS]
        self.processes: dict[str, ManagedProcess] = {}

    def server_env(self, index: int) -> dict[str, str]:
        env = {"REDIS_PASSWORD": self.PASSWORD, "REDIS_ANNOUNCE_HOST": self.HOST,
               "REDIS_CONFIG_FILE": str(self.workdir / f"server-{index}" / "redis.conf")}
        if index == 1:
            env["REDIS_REPLICA_OF"] = f"{self.HOST} {self.server_ports[0]}"
        return env

    def sentinel_env(self, index: int) -> dict[str, str]:
        return {"REDIS_PASSWORD": self.PASSWORD, "SENTINEL_MASTER_NAME": self.MASTER_NAME,
                "SENTINEL_MASTER_HOST": self.HOST, "SENTINEL_MASTER_PORT": str(self.server_ports[0]),
                "SENTINEL_QUORUM": str(QUORUM), "SENTINEL_DOWN_AFTER_MS": "1000",
                "SENTINEL_FAILOVER_TIMEOUT_MS": "3000", "SENTINEL_ANNOUNCE_HOST": self.HOST,
                "SENTINEL_CONFIG_FILE": str(self.sentinel_config(index))}

    def sentinel_config(self, index: int) -> Path:
        return self.workdir / f"sentinel-{index}" / "sentinel.conf"

    def start_server(self, index: int) -> None:
        directory = self.workdir / f"server-{index}"
        directory.mkdir(exist_ok=True)
        argv = ["sh", str(SERVER_ENTRYPOINT), "--appendonly", "yes", "--appendfsync", "everysec",
                "--port", str(self.server_ports[index]), "--dir", str(directory), "--save", "",
                "--repl-diskless-sync-delay", "0"]
        self._start(f"server-{index}", argv, self.server_env(index), self.server_ports[index], self.PASSWORD)

    def start_sentinel(self, index: int) -> None:
        self.sentinel_config(index).parent.mkdir(exist_ok=True)
        argv = ["sh", str(SENTINEL_ENTRYPOINT), "--port", str(self.sentinel_ports[index])]
        self._start(f"sentinel-{index}", argv, self.sentinel_env(index), self.sentinel_ports[index], None)

    def _start(self, name: str, argv: list[str], env: dict[str, str], port: int, password: str | None) -> None:
        process = ManagedProcess(name, argv, self.workdir / f"{name}.log",
                                 env={"PATH": f"{self.stubs}:/usr/bin:/bin", **env})
        self.processes[name] = process.start()
        wait_until(lambda: self.client(port, password).ping(), 20, f"{name} (log: {process.log_path})",
                   process.alive)

    def kill(self, name: str) -> None:
        process = self.processes[name]
        assert process.process is not None
        process.process.kill()
        process.process.wait(10)

    def stop(self) -> None:
        for name in [*(f"sentinel-{index}" for index in range(len(SENTINELS))), "server-1", "server-0"]:
            if name in self.processes:
                self.processes[name].stop()

    @staticmethod
    def client(port: int, password: str | None) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=port, password=password, socket_timeout=1.0,
                           socket_connect_timeout=1.0, decode_responses=True)

    def sentinel(self, index: int) -> redis.Redis:
        return self.client(self.sentinel_ports[index], None)

    def server(self, index: int) -> redis.Redis:
        return self.client(self.server_ports[index], self.PASSWORD)

    def url(self, db: int) -> str:
        """The compose file's URL shape: every sentinel, each address with the password."""
        return ";".join(f"sentinel://:{self.PASSWORD}@127.0.0.1:{port}/{db}" for port in self.sentinel_ports)

    def all_name(self, port: int) -> bool:
        """Every sentinel names ``localhost:port`` as master, sees a replica and the other sentinels, has quorum."""
        for index in range(len(SENTINELS)):
            sentinel = self.sentinel(index)
            if sentinel.sentinel_get_master_addr_by_name(self.MASTER_NAME) != (self.HOST, port):
                return False
            state = sentinel.sentinel_master(self.MASTER_NAME)
            if state.get("is_sdown") or state.get("is_odown") or state.get("num-slaves", 0) < 1 \
                    or state.get("num-other-sentinels", 0) < len(SENTINELS) - 1:
                return False
            # (redis-py's sentinel_ckquorum expects a bare "OK"; Sentinel answers "OK 3 usable Sentinels...")
            if not str(sentinel.execute_command("SENTINEL", "CKQUORUM", self.MASTER_NAME)).startswith("OK"):
                return False
        return True


@pytest.fixture()
def entrypoint_group(tmp_path: Path) -> Iterator[EntrypointGroup]:
    from devstack.processes import StartupError
    from devstack.servers import redis_binary

    try:
        binary = redis_binary()
    except StartupError as exc:
        pytest.skip(str(exc))
    group = EntrypointGroup(tmp_path, binary)
    try:
        yield group
    finally:
        group.stop()


@pytest.mark.slow
def test_servers_and_sentinels_started_by_the_entrypoints_fail_over_and_keep_their_roles(
        entrypoint_group: EntrypointGroup) -> None:
    group = entrypoint_group
    group.start_server(0)
    group.start_server(1)
    wait_until(lambda: group.server(1).info("replication")["master_link_status"] == "up", 20,
               "the replica to sync with masterauth")
    for index in range(len(SENTINELS)):
        group.start_sentinel(index)
    wait_until(lambda: group.all_name(group.server_ports[0]), 30, "the sentinels to agree on the first master")
    # The sentinels answer without a password; the master refuses a client without one.
    assert group.sentinel(0).ping()
    with pytest.raises(redis.AuthenticationError):
        group.client(group.server_ports[0], None).set("probe", "1")

    # Our Redis client (counters, exporter, health) reaches the master through the compose-shaped URL.
    settings = Settings.from_env({"CELERY_BROKER_URL": group.url(0), "CELERY_RESULT_BACKEND": group.url(1),
                                  "CALLQUEUE_REDIS_SENTINEL_MASTER": group.MASTER_NAME})
    client = redis_connection(settings.broker_url, settings.redis_sentinel_master, socket_timeout=1.0,
                              socket_connect_timeout=1.0, decode_responses=True)
    client.set("callqueue:probe", "before")
    # Replication is asynchronous: wait until the replica has it, or the kill may lose it.
    assert client.wait(1, 5000) == 1

    group.kill("server-0")
    started = time.monotonic()
    wait_until(lambda: group.all_name(group.server_ports[1]), 30, "the sentinels to promote the replica")
    promoted_after = time.monotonic() - started
    assert group.server(1).info("replication")["role"] == "master"
    assert promoted_after < 15, promoted_after
    wait_until(lambda: client.get("callqueue:probe") == "before", 10, "the client to follow the new master")
    client.set("callqueue:probe", "after")

    # The sentinels wrote the new master into their files; a restarted one keeps it.
    for index in range(len(SENTINELS)):
        monitor = config_lines(group.sentinel_config(index), "sentinel monitor ")
        assert monitor == [f"sentinel monitor {group.MASTER_NAME} {group.HOST} {group.server_ports[1]} {QUORUM}"]
    group.processes["sentinel-0"].stop()
    group.start_sentinel(0)
    assert group.sentinel(0).sentinel_get_master_addr_by_name(group.MASTER_NAME) == \
        (group.HOST, group.server_ports[1])

    # The old master comes back as it would under `restart: unless-stopped`: the sentinels make
    # it a replica of the new master and save that in its file, so it stays one after a restart.
    group.start_server(0)
    old_config = Path(group.server_env(0)["REDIS_CONFIG_FILE"])
    wait_until(lambda: group.server(0).info("replication")["master_link_status"] == "up"
               and config_lines(old_config, "replicaof ") == [f"replicaof {group.HOST} {group.server_ports[1]}"],
               30, "the old master to be reconfigured as a replica")
    wait_until(lambda: group.server(0).get("callqueue:probe") == "after", 10, "the old master to resync")
    group.processes["server-0"].stop()
    group.start_server(0)
    wait_until(lambda: group.server(0).info("replication")["master_link_status"] == "up", 20,
               "the restarted old master to sync from the new one")
    assert group.server(0).info("replication")["role"] == "slave"
    assert client.get("callqueue:probe") == "after"
    # Their rewritten files hold the password: readable by their owner only.
    assert "requirepass" in old_config.read_text()
    for path in [old_config, *(group.sentinel_config(index) for index in range(len(SENTINELS)))]:
        assert os.stat(path).st_mode & 0o077 == 0, path


# -- docker-compose config ------------------------------------------------------

def test_docker_compose_config_accepts_both_files(compose_cli: list[str], services: dict[str, dict[str, Any]],
                                                  example_env: dict[str, str]) -> None:
    completed = run_compose(compose_cli, ROOT, FILES, "--env-file", str(ENV_EXAMPLE), "config")
    assert completed.returncode == 0, completed.stderr
    resolved = yaml.safe_load(completed.stdout)["services"]
    assert set(resolved) == SERVICES | set(REDIS_SERVERS) | set(SENTINELS)
    for name, service in resolved.items():
        expected = environment(services[name], example_env)
        assert {key: str(value or "") for key, value in service.get("environment", {}).items()} == expected, name
        assert {container_path(resolved_volume(v)) for v in service.get("volumes", [])} == \
            {container_path(volume) for volume in services[name].get("volumes", [])}, name
        assert set(service.get("depends_on", {})) == set(services[name].get("depends_on", {})), name
    for name in REDIS_SERVERS:
        assert resolved[name]["entrypoint"] == ["sh", "/callqueue/server-entrypoint.sh"], name
        assert resolved[name]["command"] == ["--appendonly", "yes", "--appendfsync", "everysec"], name
    for name in CONNECTING_SERVICES:
        settings = Settings.from_env({key: str(value or "") for key, value in
                                      resolved[name]["environment"].items()})
        assert parse_sentinel_url(settings.broker_url).sentinels == \
            tuple((sentinel, SENTINEL_PORT) for sentinel in SENTINELS), name
        assert settings.redis_sentinel_master == "callqueue", name


def test_docker_compose_config_accepts_sentinel_with_the_replica_set(compose_cli: list[str]) -> None:
    completed = run_compose(compose_cli, ROOT, (COMPOSE_FILE, REPLICASET_FILE, OVERRIDE_FILE),
                            "--env-file", str(ENV_EXAMPLE), "config")
    assert completed.returncode == 0, completed.stderr
    resolved = yaml.safe_load(completed.stdout)["services"]
    assert {"mongo-2", "mongo-3", "redis-2", *SENTINELS} <= set(resolved)
    worker = resolved["worker-assignments"]["environment"]
    assert "mongo-2:27017" in worker["MONGO_URL"] and worker["CELERY_BROKER_URL"].startswith("sentinel://")


def test_docker_compose_refuses_the_override_without_the_secrets(compose_cli: list[str],
                                                                  tmp_path: Path) -> None:
    completed = run_compose(compose_cli, tmp_path, FILES, "config")
    assert completed.returncode != 0
    assert re.search(r"(MONGO|REDIS|FLOWER)_\w+", completed.stderr), completed.stderr
