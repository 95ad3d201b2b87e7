"""docker-compose.tls.yml turns on TLS between every app service and MongoDB and Redis.

On top of docker-compose.yml (and, with docker-compose.replicaset-tls.yml, on
top of docker-compose.replicaset.yml), every mongod must accept TLS only with
the operator's certificate, Redis must listen on a TLS port only (keeping its
password and persistence), and every app service must get a MongoDB URL with
``tls=true&tlsCAFile=...`` and ``rediss://`` broker and result URLs with
``ssl_cert_reqs=required&ssl_ca_certs=...`` that our settings accept, naming
the CA that is mounted read-only into the container (and no key). The servers'
healthchecks must speak TLS; the app healthchecks read the same URLs. No key,
certificate or secret may be written in the files; certificates come from
``CALLQUEUE_TLS_DIR``, which compose requires. The mongo entrypoint's key copy
is run with stand-ins for ``install`` and the image's entrypoint. ``docker-compose
config`` must accept the files where that tool exists, resolve them the way
these tests read them, and refuse them without the secrets or the directory.
"""

from __future__ import annotations

import os
import re
import shlex
import ssl
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml
from pymongo.uri_parser import parse_uri

from callqueue.config.settings import Settings
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
    command_of,
    env_example_lines,
    interpolate,
    option_value,
)
from tests.acceptance.compose_files import (
    container_path, environment, merged_services, resolved_volume, run_compose,
)
from callqueue.workers.app import celery_config

TLS_FILE = ROOT / "docker-compose.tls.yml"
REPLICASET_FILE = ROOT / "docker-compose.replicaset.yml"
REPLICASET_TLS_FILE = ROOT / "docker-compose.replicaset-tls.yml"
SENTINEL_FILE = ROOT / "docker-compose.sentinel.yml"
OPERATIONS_DOC = ROOT / "docs" / "operations.md"
MONGO_ENTRYPOINT = DOCKER_DIR / "mongo" / "entrypoint.sh"
CONNECTING_SERVICES = (*APP_SERVICES, EXPORTER, DASHBOARD)
MEMBERS = ("mongo", "mongo-2", "mongo-3")
TLS_MOUNT = "/etc/callqueue/tls"
CA_FILE = f"{TLS_MOUNT}/ca.pem"
MONGO_PORT = 27017
REDIS_PORT = 6379
TLS_DIR_VARIABLE = "CALLQUEUE_TLS_DIR"
BASE_ONLY = (COMPOSE_FILE, TLS_FILE)
WITH_REPLICA_SET = (COMPOSE_FILE, REPLICASET_FILE, TLS_FILE, REPLICASET_TLS_FILE)


# -- compose's merge of the files ------------------------------------------------

@pytest.fixture(scope="module", params=[BASE_ONLY, WITH_REPLICA_SET], ids=["base", "replicaset"])
def stack(request: pytest.FixtureRequest) -> tuple[tuple[Path, ...], dict[str, dict[str, Any]]]:
    return request.param, merged_services(request.param)


def mounts(service: dict[str, Any], env: dict[str, str]) -> dict[str, str]:
    """Container path -> (substituted) volume or host path, for every mount of the service."""
    found = {}
    for volume in service.get("volumes", []):
        source, target, *_ = interpolate(volume, env).split(":")
        found[target] = source
    return found


def members_of(services: dict[str, dict[str, Any]]) -> list[str]:
    return [name for name in MEMBERS if name in services]


# -- how the app services connect ----------------------------------------------

def test_every_app_service_connects_to_mongodb_over_tls_checking_the_mounted_ca(
        stack: tuple[tuple[Path, ...], dict[str, dict[str, Any]]], example_env: dict[str, str]) -> None:
    _, services = stack
    members = members_of(services)
    for name in CONNECTING_SERVICES:
        settings = Settings.from_env(environment(services[name], example_env))
        # (validate=False: pymongo would open the CA file, which exists only in the container)
        parsed = parse_uri(settings.mongo_url, validate=False)
        options = {key.lower(): value for key, value in parsed["options"].items()}
        assert str(options["tls"]).lower() == "true", name
        assert options["tlscafile"] == CA_FILE, name
        assert not {"tlsinsecure", "tlsallowinvalidcertificates", "tlsallowinvalidhostnames",
                    "tlsdisableocspendpointcheck"} & set(options), f"{name}: the server must be checked"
        assert options["replicaset"] == example_env["MONGO_REPLICA_SET"], name
        assert options["authsource"] == "admin", name
        assert parsed["username"] == example_env["MONGO_APP_USERNAME"], name
        if len(members) == 3:
            assert sorted(parsed["nodelist"]) == sorted((member, MONGO_PORT) for member in MEMBERS), name
        else:
            assert parsed["nodelist"] == [(host, int(port)) for host, port in
                                          (address.split(":") for address in example_env["MONGO_HOSTS"].split(","))]


def test_every_app_service_reaches_redis_over_tls_checking_the_mounted_ca(
        stack: tuple[tuple[Path, ...], dict[str, dict[str, Any]]], example_env: dict[str, str]) -> None:
    _, services = stack
    for name in CONNECTING_SERVICES:
        settings = Settings.from_env(environment(services[name], example_env))
        for url, db in ((settings.broker_url, 0), (settings.result_backend, 1)):
            parts = urlsplit(url)
            assert parts.scheme == "rediss", name
            assert (parts.hostname, parts.port) == (example_env["REDIS_HOST"], int(example_env["REDIS_PORT"]))
            assert parts.path == f"/{db}", name
            assert parts.password == example_env["REDIS_PASSWORD"], name
            assert parse_qs(parts.query) == {"ssl_cert_reqs": ["required"], "ssl_ca_certs": [CA_FILE]}, name
        # Flower's broker view reads broker_use_ssl; it must check the certificate too.
        ssl_options = celery_config(settings)["broker_use_ssl"]
        assert ssl_options["ssl_ca_certs"] == CA_FILE, name
        assert ssl_options["ssl_cert_reqs"] == ssl.CERT_REQUIRED, name


def test_app_containers_get_the_ca_alone_read_only(stack: tuple[tuple[Path, ...], dict[str, dict[str, Any]]],
                                                   example_env: dict[str, str]) -> None:
    _, services = stack
    base = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    for name in CONNECTING_SERVICES:
        volumes = services[name]["volumes"]
        [ca_mount] = [volume for volume in volumes if container_path(interpolate(volume, example_env)) == CA_FILE]
        assert ca_mount.endswith(":ro"), name
        source = interpolate(ca_mount, example_env).split(":")[0]
        assert source == f"{example_env[TLS_DIR_VARIABLE]}/ca.pem", name
        assert not any(TLS_MOUNT in container_path(interpolate(volume, example_env))
                       and container_path(interpolate(volume, example_env)) != CA_FILE for volume in volumes), \
            f"{name}: no key or server certificate in an app container"
        assert set(services[name]["environment"]) == set(base[name]["environment"]), name
        kept = {container_path(volume) for volume in base[name].get("volumes", [])}
        assert kept <= {container_path(interpolate(volume, example_env)) for volume in volumes}, name


def test_app_healthchecks_read_the_same_urls(stack: tuple[tuple[Path, ...], dict[str, dict[str, Any]]]) -> None:
    """The healthchecks run ``python -m producers health`` in the same container, with the TLS URLs."""
    _, services = stack
    base = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    for name in ("worker-assignments", "worker-batch", "beat"):
        assert services[name]["healthcheck"] == base[name]["healthcheck"], name
        assert "producers health" in " ".join(services[name]["healthcheck"]["test"]), name


# -- the servers ------------------------------------------------------------------

def test_every_mongod_accepts_tls_only_with_the_operators_certificate(
        stack: tuple[tuple[Path, ...], dict[str, dict[str, Any]]], example_env: dict[str, str]) -> None:
    _, services = stack
    base_mongo = yaml.safe_load(COMPOSE_FILE.read_text())["services"]["mongo"]
    base_argv = command_of(base_mongo, example_env)
    members = members_of(services)
    assert members == (list(MEMBERS) if "mongo-2" in services else ["mongo"])
    for name in members:
        member = services[name]
        argv = command_of(member, example_env)
        assert argv[:len(base_argv)] == base_argv, f"{name} keeps the replica set, key file and binding"
        assert option_value(argv, "--tlsMode") == "requireTLS", name
        assert "--tlsAllowConnectionsWithoutCertificates" in argv, name
        assert not {"--tlsAllowInvalidCertificates", "--tlsAllowInvalidHostnames", "--tlsDisabledProtocols",
                    "--sslMode"} & set(argv), name
        assert option_value(argv, "--tlsCAFile") == CA_FILE, name
        env = environment(member, example_env)
        key_file = option_value(argv, "--tlsCertificateKeyFile")
        assert env["MONGO_TLS_CERTIFICATE_KEY_FILE"] == key_file, name
        assert env["MONGO_TLS_CERTIFICATE_KEY_SOURCE"] == f"{TLS_MOUNT}/mongo.pem", name
        assert str(Path(key_file).parent) in member["tmpfs"], f"{name}: the key copy stays in memory"
        assert mounts(member, example_env)[TLS_MOUNT] == example_env[TLS_DIR_VARIABLE], name
        assert [volume for volume in member["volumes"]
                if container_path(interpolate(volume, example_env)) == TLS_MOUNT][0].endswith(":ro"), name
        assert member["entrypoint"] == base_mongo["entrypoint"], name
        test = member["healthcheck"]["test"]
        assert test[0] == "CMD-SHELL", name
        health = shlex.split(test[1].replace("$$", "$"))
        assert health[0] == "mongosh" and "--tls" in health, name
        assert option_value(health, "--tlsCAFile") == CA_FILE, name
        assert option_value(health, "--host") == "$MONGO_ADVERTISED_HOST", \
            f"{name}: the healthcheck checks the name clients use"
        assert option_value(health, "--file") == base_mongo["healthcheck"]["test"][-1], name
        assert env["MONGO_ADVERTISED_HOST"] == (f"{name}:{MONGO_PORT}" if len(members) == 3
                                                else example_env["MONGO_ADVERTISED_HOST"]), name
        for key in ("interval", "timeout", "retries", "start_period"):
            assert member["healthcheck"][key] == base_mongo["healthcheck"][key], f"{name}.{key}"


def test_redis_listens_on_a_tls_port_only_and_keeps_its_password_and_persistence(
        stack: tuple[tuple[Path, ...], dict[str, dict[str, Any]]], example_env: dict[str, str]) -> None:
    _, services = stack
    redis = services["redis"]
    assert redis["command"][:2] == ["sh", "-c"]
    shell = redis["command"][2]
    steps = shell.split(" && ")
    exec_argv = shlex.split(steps[-1].replace("$$", "$"))
    assert exec_argv[:3] == ["exec", "docker-entrypoint.sh", "redis-server"]
    options = exec_argv[3:]
    assert option_value(options, "--port") == "0", "no plaintext port"
    assert option_value(options, "--tls-port") == str(REDIS_PORT)
    assert option_value(options, "--requirepass") == "$REDIS_PASSWORD"
    assert option_value(options, "--appendonly") == "yes"
    assert option_value(options, "--appendfsync") == "everysec"
    assert option_value(options, "--tls-ca-cert-file") == CA_FILE
    assert option_value(options, "--tls-cert-file") == f"{TLS_MOUNT}/redis.pem"
    assert option_value(options, "--tls-auth-clients") == "no"
    key_file = option_value(options, "--tls-key-file")
    assert str(Path(key_file).parent) in redis["tmpfs"], "the key copy stays in memory"
    assert f"install -o redis -g redis -m 400 {TLS_MOUNT}/redis.key {key_file}" in steps
    assert "tls-replication" not in shell and "--tls-cluster" not in shell
    assert mounts(redis, example_env)[TLS_MOUNT] == example_env[TLS_DIR_VARIABLE]
    assert mounts(redis, example_env)["/data"] == "redis-data"
    health = redis["healthcheck"]["test"]
    assert health[0] == "CMD-SHELL" and "REDISCLI_AUTH" in health[1]
    health_argv = shlex.split(health[1].split("|")[0].replace("$$", "$"))
    assert "--tls" in health_argv and option_value(health_argv, "--cacert") == CA_FILE
    assert option_value(health_argv, "-p") == str(REDIS_PORT)


def test_the_app_urls_and_the_servers_agree_on_ports(stack: tuple[tuple[Path, ...], dict[str, dict[str, Any]]],
                                                     example_env: dict[str, str]) -> None:
    _, services = stack
    assert int(example_env["REDIS_PORT"]) == REDIS_PORT
    for name in CONNECTING_SERVICES:
        url = environment(services[name], example_env)["CELERY_BROKER_URL"]
        assert urlsplit(url).port == REDIS_PORT, name


# -- the entrypoint's key copy ----------------------------------------------------

def run_mongo_entrypoint(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    stubs = tmp_path / "bin"
    stubs.mkdir(exist_ok=True)
    install_log = tmp_path / "install.log"
    bodies = {
        "chown": "exit 0",
        "hostname": "echo member",
        # Run as an ordinary user here: record the owner asked for, drop it, install the rest.
        "install": f'echo "$*" >> {install_log}\nargs=""\nwhile [ $# -gt 0 ]; do\n'
                   '  case "$1" in -o|-g) shift 2;; *) args="$args $1"; shift;; esac\ndone\n'
                   "exec /usr/bin/install $args",
        "docker-entrypoint.sh": 'echo "$@"',
    }
    for name, body in bodies.items():
        stub = stubs / name
        stub.write_text(f"#!/bin/sh\n{body}\n")
        stub.chmod(0o755)
    return subprocess.run(["sh", str(MONGO_ENTRYPOINT), "mongod", "--tlsMode", "requireTLS"], capture_output=True,
                          text=True, timeout=30,
                          env={"PATH": f"{stubs}:{os.environ.get('PATH', '/usr/bin:/bin')}",
                               "MONGO_KEY_FILE": str(tmp_path / "configdb" / "replica-set.key"), **env})


def test_the_mongo_entrypoint_copies_the_key_for_the_mongodb_user_only(tmp_path: Path) -> None:
    (tmp_path / "configdb").mkdir()
    source = tmp_path / "operator" / "mongo.pem"
    source.parent.mkdir()
    source.write_text("certificate and key stand-in\n")
    source.chmod(0o600)
    target = tmp_path / "run" / "callqueue-tls" / "mongo.pem"
    completed = run_mongo_entrypoint(tmp_path, {"MONGO_TLS_CERTIFICATE_KEY_SOURCE": str(source),
                                                "MONGO_TLS_CERTIFICATE_KEY_FILE": str(target)})
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.split() == ["mongod", "--tlsMode", "requireTLS"], "then the image's entrypoint"
    assert target.read_text() == source.read_text()
    assert target.stat().st_mode & 0o777 == 0o400
    assert target.parent.stat().st_mode & 0o777 == 0o700
    log = (tmp_path / "install.log").read_text().splitlines()
    assert all("-o mongodb -g mongodb" in line for line in log) and len(log) == 2


def test_the_mongo_entrypoint_without_tls_copies_nothing(tmp_path: Path) -> None:
    (tmp_path / "configdb").mkdir()
    completed = run_mongo_entrypoint(tmp_path, {})
    assert completed.returncode == 0, completed.stderr
    assert not (tmp_path / "install.log").exists()
    assert (tmp_path / "configdb" / "replica-set.key").stat().st_size > 0


# -- secrets, keys and variables --------------------------------------------------

TLS_FILES = (TLS_FILE, REPLICASET_TLS_FILE)


def test_no_secret_key_or_certificate_is_written_in_the_files() -> None:
    for path in (*TLS_FILES, ENV_EXAMPLE, MONGO_ENTRYPOINT):
        text = path.read_text()
        assert not URL_WITH_LITERAL_PASSWORD.search(text), path.name
        assert "-----BEGIN" not in text, f"{path.name}: no certificate or key in the repository"
        assert not re.search(r"--requirepass\s+(?!\\?[\"']?\$)", text), path.name
        for match in VARIABLE.finditer(text):
            name, operator, _ = match.groups()
            if name.endswith(("PASSWORD", "USERNAME", "_USER")) or name == TLS_DIR_VARIABLE:
                assert operator == ":?", f"{path.name}: {match.group(0)} must be required"
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert not [name for name in tracked.splitlines() if re.search(r"\.(pem|key|crt|p12|pfx)$", name)
                and not name.startswith("tests/")], "certificates come from CALLQUEUE_TLS_DIR, never the repository"


def test_app_service_secrets_come_from_the_environment(stack: tuple[tuple[Path, ...], dict[str, dict[str, Any]]]) -> None:
    files, _ = stack
    for path in files[1:]:
        for name, service in yaml.safe_load(path.read_text())["services"].items():
            for key, value in (service.get("environment") or {}).items():
                if re.search(r"PASSWORD|SECRET|TOKEN|AUTH|_URL$|BACKEND$", key):
                    assert "${" in str(value), f"{path.name}: {name}.{key} is a literal"


def test_every_variable_the_tls_files_use_is_documented_in_env_example(example_env: dict[str, str]) -> None:
    documented = {name for _, name, _ in env_example_lines()}
    for path in TLS_FILES:
        used = {match.group(1) for match in VARIABLE.finditer(path.read_text())}
        assert used - documented == set(), path.name
        assert TLS_DIR_VARIABLE in used, path.name
    assert example_env[TLS_DIR_VARIABLE].startswith("/")


def test_the_tls_file_says_it_is_not_for_sentinel() -> None:
    header = "".join(line for line in TLS_FILE.read_text().splitlines(keepends=True) if line.startswith("#"))
    assert "docker-compose.sentinel.yml" in header and "not" in header
    assert "sentinel" not in yaml.safe_load(TLS_FILE.read_text())["services"].get("worker-assignments", {}) \
        .get("environment", {}).get("CELERY_BROKER_URL", "")


def test_operations_guide_covers_tls_between_hosts() -> None:
    text = OPERATIONS_DOC.read_text()
    start = text.index("## TLS between hosts")
    end = text.find("\n## ", start + 1)
    section = text[start:end if end != -1 else len(text)]
    for needed in ("docker-compose.tls.yml", "docker-compose.replicaset-tls.yml", TLS_DIR_VARIABLE,
                   "tls=true", "tlsCAFile", "rediss://", "ssl_cert_reqs=required", "ssl_ca_certs",
                   "requireTLS", "ca.pem", "mongo.pem", "redis.pem", "redis.key", "Rotating", "Sentinel"):
        assert needed in section, needed
    assert "not built yet" not in text


# -- docker-compose config ----------------------------------------------------------

def test_docker_compose_config_accepts_the_tls_files(compose_cli: list[str],
                                                     stack: tuple[tuple[Path, ...], dict[str, dict[str, Any]]],
                                                     example_env: dict[str, str]) -> None:
    files, services = stack
    completed = run_compose(compose_cli, ROOT, files, "--env-file", str(ENV_EXAMPLE), "config")
    assert completed.returncode == 0, completed.stderr
    resolved = yaml.safe_load(completed.stdout)["services"]
    assert set(resolved) == SERVICES | set(members_of(services))
    for name, service in resolved.items():
        expected = environment(services[name], example_env)
        assert {key: str(value or "") for key, value in service.get("environment", {}).items()} == expected, name
        assert {container_path(resolved_volume(v)) for v in service.get("volumes", [])} == \
            {container_path(interpolate(volume, example_env)) for volume in services[name].get("volumes", [])}
        assert service["healthcheck"]["test"] == services[name]["healthcheck"]["test"], name
    for name in CONNECTING_SERVICES:
        settings = Settings.from_env({key: str(value or "") for key, value in
                                      resolved[name]["environment"].items()})
        assert "tls=true" in settings.mongo_url and settings.broker_url.startswith("rediss://"), name
        assert f"{example_env[TLS_DIR_VARIABLE]}/ca.pem:{CA_FILE}" in \
            [":".join(resolved_volume(v).split(":")[:2]) for v in resolved[name]["volumes"]], name
    for name in members_of(services):
        assert "requireTLS" in resolved[name]["command"], name
        assert resolved[name]["tmpfs"] == ["/run/callqueue-tls"], name
    assert "--port 0 --tls-port 6379" in resolved["redis"]["command"][-1]


def test_docker_compose_refuses_the_tls_files_without_the_secrets(
        compose_cli: list[str], stack: tuple[tuple[Path, ...], dict[str, dict[str, Any]]], tmp_path: Path) -> None:
    files, _ = stack
    completed = run_compose(compose_cli, tmp_path, files, "config")
    assert completed.returncode != 0
    assert re.search(r"(MONGO|REDIS|FLOWER|CALLQUEUE_TLS)_\w+", completed.stderr), completed.stderr


def test_docker_compose_refuses_the_tls_files_without_the_certificate_directory(
        compose_cli: list[str], stack: tuple[tuple[Path, ...], dict[str, dict[str, Any]]], tmp_path: Path) -> None:
    files, _ = stack
    env_file = tmp_path / "env"
    env_file.write_text("".join(line + "\n" for line in ENV_EXAMPLE.read_text().splitlines()
                                if not line.startswith(f"{TLS_DIR_VARIABLE}=")))
    completed = run_compose(compose_cli, ROOT, files, "--env-file", str(env_file), "config")
    assert completed.returncode != 0
    assert TLS_DIR_VARIABLE in completed.stderr, completed.stderr
