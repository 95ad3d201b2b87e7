"""docker-compose.replicaset.yml turns docker-compose.yml's MongoDB into a three-member replica set.

The override must keep every app service of the main file, add two members
that run exactly like ``mongo`` (same image, entrypoint, key file, healthcheck),
initiate the set with exactly the member services, and point every app service
at all three members by replica set name, with credentials only from the
environment. The members' healthcheck script is run (under node, against a
fake server) with each member's real environment: the first member initiates
the set with exactly the member services, the others never do, and a running
single-node set grows to three. The key file entrypoint is raced three times at
once and must hand every member the same key. ``docker-compose -f
docker-compose.yml -f docker-compose.replicaset.yml config`` must accept the
pair where that tool exists, and must resolve it the way these tests read it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from pymongo.uri_parser import parse_uri

from callqueue.config.settings import Settings
from tests.acceptance.compose_files import (
    container_path, environment, merged_services, resolved_volume, run_compose,
)
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
    healthcheck_argv,
    option_value,
)

OVERRIDE_FILE = ROOT / "docker-compose.replicaset.yml"
FILES = (COMPOSE_FILE, OVERRIDE_FILE)
OPERATIONS_DOC = ROOT / "docs" / "operations.md"
MEMBERS = ("mongo", "mongo-2", "mongo-3")
CONNECTING_SERVICES = (*APP_SERVICES, EXPORTER, DASHBOARD)
MONGO_PORT = 27017
# Settings that decide what callers see while the replica set elects a new primary.
FAILOVER_SETTINGS = (
    "CALLQUEUE_MONGO_SERVER_SELECTION_TIMEOUT_SECONDS",
    "CALLQUEUE_MONGO_OPERATION_TIMEOUT_SECONDS",
    "CALLQUEUE_MONGO_BATCH_OPERATION_TIMEOUT_SECONDS",
    "CALLQUEUE_MONGO_HEARTBEAT_SECONDS",
    "CALLQUEUE_TASK_FAILOVER_RETRY_DELAY_SECONDS",
    "CALLQUEUE_TASK_FAILOVER_RETRY_WINDOW_SECONDS",
    "CALLQUEUE_WORKER_STORE_CHECK_SECONDS",
    "CALLQUEUE_CLIENT_TIMEOUT_SECONDS",
    "CALLQUEUE_CLIENT_RETRIES",
)


# -- compose's merge of the two files ------------------------------------------

@pytest.fixture(scope="module")
def override() -> dict[str, Any]:
    return yaml.safe_load(OVERRIDE_FILE.read_text())


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    """The services of docker-compose.yml with the override applied."""
    return merged_services(FILES)


def member_list(service: dict[str, Any], env: dict[str, str]) -> list[str]:
    return [host.strip() for host in environment(service, env)["MONGO_REPLICA_SET_MEMBERS"].split(",")]


# -- the members --------------------------------------------------------------

def test_override_adds_two_members_and_keeps_every_service(services: dict[str, dict[str, Any]],
                                                           override: dict[str, Any]) -> None:
    assert set(services) == SERVICES | set(MEMBERS)
    assert set(override["volumes"]) == {"mongo-2-data", "mongo-3-data"}
    assert not any(service.get("ports") for service in override["services"].values())


def test_the_three_members_run_mongod_alike_with_one_key_file(services: dict[str, dict[str, Any]],
                                                              example_env: dict[str, str]) -> None:
    mongo = services["mongo"]
    key_file = option_value(command_of(mongo, example_env), "--keyFile")
    data_volumes = set()
    for name in MEMBERS:
        member = services[name]
        argv = command_of(member, example_env)
        assert argv[0] == "mongod", name
        assert option_value(argv, "--replSet") == example_env["MONGO_REPLICA_SET"], name
        assert option_value(argv, "--keyFile") == key_file, name
        assert "--bind_ip_all" in argv, name
        assert option_value(argv, "--setParameter") == "oplogFetcherSteadyStateMaxFetcherRestarts=0", name
        for key in ("image", "entrypoint", "restart", "healthcheck", "stop_grace_period"):
            assert member[key] == mongo[key], f"{name}.{key}"
        assert member["restart"] == "unless-stopped"
        mounts = {container_path(volume): volume.split(":")[0] for volume in member["volumes"]}
        assert mounts[str(Path(key_file).parent)] == "mongo-config", f"{name} must share the key file"
        assert mounts["/callqueue"] == "./docker/mongo"
        assert mounts["/docker-entrypoint-initdb.d"] == "./docker/mongo/initdb"
        data_volumes.add(mounts["/data/db"])
        assert not {"ports", "network_mode", "container_name"} & set(member), name
    assert data_volumes == {"mongo-data", "mongo-2-data", "mongo-3-data"}


def test_each_member_advertises_its_own_service_name(services: dict[str, dict[str, Any]],
                                                     example_env: dict[str, str]) -> None:
    for name in MEMBERS:
        assert environment(services[name], example_env)["MONGO_ADVERTISED_HOST"] == f"{name}:{MONGO_PORT}"


def test_the_set_is_initiated_with_exactly_the_member_services(services: dict[str, dict[str, Any]],
                                                               example_env: dict[str, str]) -> None:
    lists = {name: member_list(services[name], example_env) for name in MEMBERS}
    assert all(hosts == lists["mongo"] for hosts in lists.values()), lists
    hosts = lists["mongo"]
    assert sorted(hosts) == sorted(f"{name}:{MONGO_PORT}" for name in MEMBERS)
    initiator = [name for name in MEMBERS
                 if environment(services[name], example_env)["MONGO_ADVERTISED_HOST"] == hosts[0]]
    assert initiator == ["mongo"], "the first member listed initiates the set"
    script = DOCKER_DIR / "mongo" / Path(healthcheck_argv(services["mongo"])[-1]).name
    healthcheck_js = script.read_text()
    for needed in ("MONGO_REPLICA_SET_MEMBERS", "replSetInitiate", "replSetReconfig", "isWritablePrimary"):
        assert needed in healthcheck_js, needed


def test_the_initiating_member_waits_for_the_other_members_to_start(
        services: dict[str, dict[str, Any]]) -> None:
    depends_on = services["mongo"]["depends_on"]
    assert {name: depends_on[name]["condition"] for name in MEMBERS[1:]} == \
        {name: "service_started" for name in MEMBERS[1:]}


def test_app_services_still_wait_for_a_healthy_set(services: dict[str, dict[str, Any]]) -> None:
    for name in ("worker-assignments", "worker-batch", EXPORTER):
        assert services[name]["depends_on"]["mongo"] == {"condition": "service_healthy"}, name


# -- how the app services connect ----------------------------------------------

def test_every_app_service_names_all_members_and_the_replica_set(services: dict[str, dict[str, Any]],
                                                                 example_env: dict[str, str]) -> None:
    for name in CONNECTING_SERVICES:
        env = environment(services[name], example_env)
        parsed = parse_uri(env["MONGO_URL"])
        assert sorted(parsed["nodelist"]) == sorted((member, MONGO_PORT) for member in MEMBERS), name
        options = {key.lower(): value for key, value in parsed["options"].items()}
        assert options["replicaset"] == example_env["MONGO_REPLICA_SET"], name
        assert options["authsource"] == "admin", name
        assert parsed["username"] == example_env["MONGO_APP_USERNAME"], name
        assert parsed["database"] == example_env["MONGO_DB"], name
        assert not {"w", "readpreference", "directconnection", "retrywrites", "retryreads"} & set(options), \
            f"{name}: leave write concern, read preference and retries to callqueue"
        settings = Settings.from_env(env)
        assert settings.mongo_url == env["MONGO_URL"]


def test_the_connection_string_takes_its_credentials_from_the_environment(
        services: dict[str, dict[str, Any]]) -> None:
    for name in CONNECTING_SERVICES:
        url = str(services[name]["environment"]["MONGO_URL"])
        userinfo = url.split("://", 1)[1].rsplit("@", 1)[0]
        match = re.fullmatch(f"{VARIABLE.pattern}:{VARIABLE.pattern}", userinfo)
        assert match, f"{name}: {userinfo}"
        assert match.group(1, 2) == ("MONGO_APP_USERNAME", ":?"), name
        assert match.group(4, 5) == ("MONGO_APP_PASSWORD", ":?"), name


def test_app_services_keep_every_other_variable_of_the_main_file(services: dict[str, dict[str, Any]],
                                                                 override: dict[str, Any]) -> None:
    main = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    for name in CONNECTING_SERVICES:
        assert set(override["services"][name]) == {"environment"}, name
        assert set(override["services"][name]["environment"]) == {"MONGO_URL"}, name
        assert set(services[name]["environment"]) == set(main[name]["environment"]), name


# -- secrets and variables ----------------------------------------------------

def test_no_secret_is_written_in_the_override() -> None:
    text = OVERRIDE_FILE.read_text()
    assert not URL_WITH_LITERAL_PASSWORD.search(text)
    for match in VARIABLE.finditer(text):
        name, operator, _ = match.groups()
        if name.endswith(("PASSWORD", "USERNAME", "_USER")):
            assert operator == ":?", f"{match.group(0)} must be required"


def test_member_secrets_come_from_the_environment(services: dict[str, dict[str, Any]]) -> None:
    for name in MEMBERS:
        for key, value in services[name]["environment"].items():
            if re.search(r"PASSWORD|SECRET|TOKEN|USERNAME|_URL$", key):
                assert "${" in str(value), f"{name}.{key} is a literal"


def test_every_variable_the_override_uses_is_documented_in_env_example() -> None:
    used = {match.group(1) for match in VARIABLE.finditer(OVERRIDE_FILE.read_text())}
    documented = {name for _, name, _ in env_example_lines()}
    assert used - documented == set()


def test_operations_guide_covers_the_replica_set() -> None:
    text = OPERATIONS_DOC.read_text()
    assert "docker-compose.replicaset.yml" in text
    section = text[text.index("## MongoDB replica set"):]
    for name in FAILOVER_SETTINGS:
        assert name in section, name
    for option in ("replicaSet", "w=majority", "retryWrites=true", "readPreference=primary", "tls=true",
                   "authSource", "appName", "directConnection", "mongodb+srv://"):
        assert option in section, option


# -- the healthcheck that initiates and grows the set -------------------------

HEALTHCHECK_HARNESS = r"""
// Runs docker/mongo/healthcheck.js as mongosh would, against a fake server:
// runCommand throws like mongosh on an error, quit() ends the script.
const vm = require("vm");
const fs = require("fs");
const [scriptPath, scenarioJson] = process.argv.slice(2);
const scenario = JSON.parse(scenarioJson);
const state = scenario.state;
const commands = [];
const output = [];
class Quit { constructor(code) { this.code = code; } }
function serverError(codeName) { const error = new Error(codeName); error.codeName = codeName; return error; }
const admin = {
  auth() { return { ok: 1 }; },
  runCommand(command) {
    const name = Object.keys(command)[0];
    commands.push({ [name]: command[name] });
    if (name === "replSetGetStatus") {
      if (!state.config) throw serverError("NotYetInitialized");
      return { ok: 1 };
    }
    if (name === "replSetInitiate") {
      if (state.fail === name) throw serverError("NodeNotFound");
      state.config = { ...command[name], version: 1 };
      return { ok: 1 };
    }
    if (name === "hello") return state.hello;
    if (name === "replSetGetConfig") return { ok: 1, config: JSON.parse(JSON.stringify(state.config)) };
    if (name === "replSetReconfig") {
      if (state.fail === name) throw serverError("NodeNotFound");
      state.config = command[name];
      return { ok: 1 };
    }
    throw new Error(`unexpected command ${name}`);
  },
};
const context = {
  db: { getSiblingDB: () => admin },
  print: (...parts) => output.push(parts.join(" ")),
  quit: (code) => { throw new Quit(code === undefined ? 0 : code); },
  process: { env: scenario.env },
};
let code = 0;
try {
  vm.runInNewContext(fs.readFileSync(scriptPath, "utf8"), context);
} catch (error) {
  if (error instanceof Quit) { code = error.code; } else { code = 1; output.push(`error: ${error.message}`); }
}
console.log(JSON.stringify({ code, commands, output, config: state.config || null }));
"""


@pytest.fixture(scope="module")
def run_healthcheck(tmp_path_factory: pytest.TempPathFactory) -> Any:
    node = shutil.which("node") or shutil.which("nodejs")
    if node is None:
        pytest.skip("node is not installed: the healthcheck script cannot be run")
    harness = tmp_path_factory.mktemp("healthcheck") / "harness.js"
    harness.write_text(HEALTHCHECK_HARNESS)
    script = DOCKER_DIR / "mongo" / "healthcheck.js"

    def run(env: dict[str, str], config: dict[str, Any] | None, hello: dict[str, Any],
            fail: str | None = None) -> dict[str, Any]:
        scenario = {"env": env, "state": {"config": config, "hello": hello, "fail": fail}}
        completed = subprocess.run([node, str(harness), str(script), json.dumps(scenario)],
                                   capture_output=True, text=True, timeout=30)
        assert completed.returncode == 0, completed.stderr
        return json.loads(completed.stdout)

    return run


def hello_of(me: str, replica_set: str, state: str = "primary") -> dict[str, Any]:
    return {"setName": replica_set, "me": me, "isWritablePrimary": state == "primary",
            "secondary": state == "secondary", "primary": None if state == "no-primary" else "mongo:27017"}


def command_names(result: dict[str, Any]) -> list[str]:
    return [next(iter(command)) for command in result["commands"]]


def test_the_first_member_initiates_the_set_with_exactly_the_member_services(
        run_healthcheck: Any, services: dict[str, dict[str, Any]], example_env: dict[str, str]) -> None:
    replica_set = example_env["MONGO_REPLICA_SET"]
    env = environment(services["mongo"], example_env)
    result = run_healthcheck(env, None, hello_of("mongo:27017", replica_set, "no-primary"))
    initiations = [command["replSetInitiate"] for command in result["commands"] if "replSetInitiate" in command]
    assert initiations == [{"_id": replica_set,
                            "members": [{"_id": index, "host": f"{name}:{MONGO_PORT}"}
                                        for index, name in enumerate(MEMBERS)],
                            "settings": {"catchUpTimeoutMillis": 0, "heartbeatIntervalMillis": 100}}]
    assert result["code"] == 1, "healthy only once the new set has elected a primary"


def test_the_other_members_never_initiate(run_healthcheck: Any, services: dict[str, dict[str, Any]],
                                          example_env: dict[str, str]) -> None:
    for name in MEMBERS[1:]:
        env = environment(services[name], example_env)
        result = run_healthcheck(env, None, {})
        assert "replSetInitiate" not in command_names(result), name
        assert result["code"] == 1, name


def test_a_failed_initiation_is_unhealthy_and_tried_again(run_healthcheck: Any,
                                                          services: dict[str, dict[str, Any]],
                                                          example_env: dict[str, str]) -> None:
    env = environment(services["mongo"], example_env)
    result = run_healthcheck(env, None, {}, fail="replSetInitiate")
    assert result["code"] == 1 and result["config"] is None


def test_the_single_node_file_initiates_a_set_of_one(run_healthcheck: Any, example_env: dict[str, str]) -> None:
    mongo = yaml.safe_load(COMPOSE_FILE.read_text())["services"]["mongo"]
    env = environment(mongo, example_env)
    result = run_healthcheck(env, None, hello_of(example_env["MONGO_ADVERTISED_HOST"],
                                                 example_env["MONGO_REPLICA_SET"]))
    [initiation] = [command["replSetInitiate"] for command in result["commands"] if "replSetInitiate" in command]
    assert initiation["members"] == [{"_id": 0, "host": example_env["MONGO_ADVERTISED_HOST"]}]
    assert result["code"] == 0


def test_a_running_single_node_set_grows_to_the_three_members_one_at_a_time(
        run_healthcheck: Any, services: dict[str, dict[str, Any]], example_env: dict[str, str]) -> None:
    replica_set = example_env["MONGO_REPLICA_SET"]
    env = environment(services["mongo"], example_env)
    config = {"_id": replica_set, "version": 1, "term": 3, "members": [{"_id": 0, "host": "mongo:27017"}]}
    for added in MEMBERS[1:]:
        result = run_healthcheck(env, config, hello_of("mongo:27017", replica_set))
        assert result["code"] == 0
        assert command_names(result).count("replSetReconfig") == 1
        assert result["config"]["version"] == config["version"] + 1
        assert result["config"]["members"][-1] == {"_id": len(config["members"]), "host": f"{added}:{MONGO_PORT}"}
        config = result["config"]
    assert [member["host"] for member in config["members"]] == [f"{name}:{MONGO_PORT}" for name in MEMBERS]
    result = run_healthcheck(env, config, hello_of("mongo:27017", replica_set))
    assert "replSetReconfig" not in command_names(result) and result["code"] == 0


def test_only_the_primary_changes_the_configuration(run_healthcheck: Any, services: dict[str, dict[str, Any]],
                                                    example_env: dict[str, str]) -> None:
    replica_set = example_env["MONGO_REPLICA_SET"]
    config = {"_id": replica_set, "version": 1, "members": [{"_id": 0, "host": "mongo:27017"}]}
    env = environment(services["mongo"], example_env)
    result = run_healthcheck(env, config, hello_of("mongo:27017", replica_set, "secondary"))
    assert "replSetReconfig" not in command_names(result) and result["code"] == 0
    result = run_healthcheck(env, config, hello_of("mongo:27017", replica_set, "no-primary"))
    assert "replSetReconfig" not in command_names(result) and result["code"] == 1


def test_a_member_that_cannot_be_added_yet_leaves_the_primary_healthy(
        run_healthcheck: Any, services: dict[str, dict[str, Any]], example_env: dict[str, str]) -> None:
    replica_set = example_env["MONGO_REPLICA_SET"]
    config = {"_id": replica_set, "version": 1, "members": [{"_id": 0, "host": "mongo:27017"}]}
    env = environment(services["mongo"], example_env)
    result = run_healthcheck(env, config, hello_of("mongo:27017", replica_set), fail="replSetReconfig")
    assert result["code"] == 0
    assert any("could not add" in line for line in result["output"])


def test_a_set_whose_members_have_other_names_is_left_alone(
        run_healthcheck: Any, services: dict[str, dict[str, Any]], example_env: dict[str, str]) -> None:
    replica_set = example_env["MONGO_REPLICA_SET"]
    config = {"_id": replica_set, "version": 1, "members": [{"_id": 0, "host": "db1.internal:27017"}]}
    env = environment(services["mongo"], example_env)
    result = run_healthcheck(env, config, hello_of("db1.internal:27017", replica_set))
    assert "replSetReconfig" not in command_names(result) and result["code"] == 0


# -- the key file entrypoint --------------------------------------------------

def test_members_starting_together_agree_on_one_key_file(tmp_path: Path) -> None:
    """Three entrypoints racing on the shared volume all hand the same key to mongod."""
    stubs = tmp_path / "bin"
    stubs.mkdir()
    for name, body in (("chown", "exit 0"), ("hostname", 'echo "$FAKE_HOSTNAME"'),
                       ("docker-entrypoint.sh", 'cat "$MONGO_KEY_FILE"')):
        stub = stubs / name
        stub.write_text(f"#!/bin/sh\n{body}\n")
        stub.chmod(0o755)
    entrypoint = DOCKER_DIR / "mongo" / "entrypoint.sh"
    for attempt in range(10):
        volume = tmp_path / f"configdb-{attempt}"
        volume.mkdir()
        key_file = volume / "replica-set.key"
        runs = [subprocess.Popen(["sh", str(entrypoint), "mongod"], stdout=subprocess.PIPE, text=True,
                                 env={"PATH": f"{stubs}:{os.environ.get('PATH', '/usr/bin:/bin')}",
                                      "FAKE_HOSTNAME": f"member-{index}", "MONGO_KEY_FILE": str(key_file)})
                for index in range(3)]
        keys = {run.communicate(timeout=30)[0] for run in runs}
        assert all(run.returncode == 0 for run in runs)
        assert keys == {key_file.read_text()}
        assert 6 <= len(key_file.read_text()) <= 1024
        assert re.fullmatch(r"[A-Za-z0-9+/=]+", key_file.read_text())
        assert [path.name for path in volume.iterdir()] == ["replica-set.key"]
        assert key_file.stat().st_mode & 0o777 == 0o400


# -- docker-compose config ------------------------------------------------------

def test_docker_compose_config_accepts_both_files(compose_cli: list[str], services: dict[str, dict[str, Any]],
                                                  example_env: dict[str, str]) -> None:
    completed = run_compose(compose_cli, ROOT, FILES, "--env-file", str(ENV_EXAMPLE), "config")
    assert completed.returncode == 0, completed.stderr
    resolved = yaml.safe_load(completed.stdout)["services"]
    assert set(resolved) == SERVICES | set(MEMBERS)
    for name, service in resolved.items():
        expected = environment(services[name], example_env)
        assert {key: str(value or "") for key, value in service.get("environment", {}).items()} == \
            {key: value for key, value in expected.items()}, name
        assert {container_path(resolved_volume(v))
                for v in service.get("volumes", [])} == \
            {container_path(volume) for volume in services[name].get("volumes", [])}, name
        assert set(service.get("depends_on", {})) == set(services[name].get("depends_on", {})), name
    for name in CONNECTING_SERVICES:
        nodes = parse_uri(resolved[name]["environment"]["MONGO_URL"])["nodelist"]
        assert sorted(nodes) == sorted((member, MONGO_PORT) for member in MEMBERS), name


def test_docker_compose_refuses_the_override_without_the_secrets(compose_cli: list[str],
                                                                  tmp_path: Path) -> None:
    completed = run_compose(compose_cli, tmp_path, FILES, "config")
    assert completed.returncode != 0
    assert re.search(r"(MONGO|REDIS|FLOWER)_\w+", completed.stderr), completed.stderr
