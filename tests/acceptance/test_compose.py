"""The production docker-compose.yml, Dockerfile and .env.example describe this project as it is.

Each service's command must name real modules, real Celery sub-commands and
options, and the project's real queues; every credential must come from the
environment; every variable compose uses must be documented in .env.example;
and ``docker-compose config`` must accept the file where that tool exists.
"""

from __future__ import annotations

import ast
import importlib
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml
from celery import Celery

from callqueue.config.settings import ENV_PREFIX_FREE, Settings
from devstack.servers import project_env
from callqueue.producers.cli import cli
from callqueue.workers.app import ASSIGNMENTS_QUEUE, BATCH_QUEUE, celery_config

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKER_DIR = ROOT / "docker"
APP_SERVICES = ("worker-assignments", "worker-batch", "beat", "flower")
WORKER_QUEUES = {"worker-assignments": ASSIGNMENTS_QUEUE, "worker-batch": BATCH_QUEUE}
EXPORTER = "metrics"
DASHBOARD = "dashboard"
SERVICES = {"mongo", "redis", *APP_SERVICES, EXPORTER, DASHBOARD}
VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")
ASSIGNMENT = re.compile(r"^(#\s*)?([A-Z][A-Z0-9_]*)=(.*)$")
URL_WITH_LITERAL_PASSWORD = re.compile(r"[a-z+]+://[^\s/:@]*:(?!\$)[^\s/@]+@")
PLACEHOLDER = "change-me"


# -- reading the files ------------------------------------------------------

@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


@pytest.fixture(scope="module")
def example_env() -> dict[str, str]:
    """The uncommented ``NAME=value`` lines of .env.example."""
    return {name: value for commented, name, value in env_example_lines() if not commented}


def env_example_lines() -> Iterator[tuple[bool, str, str]]:
    """Every ``NAME=value`` line of .env.example, commented out (``# NAME=value``) or not."""
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = ASSIGNMENT.match(line.strip())
        if match:
            yield bool(match.group(1)), match.group(2), match.group(3)


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's variable substitution: ``${X}``, ``${X:-default}``, ``${X:?error}``, ``$$``."""
    def substitute(match: re.Match[str]) -> str:
        name, operator, argument = match.groups()
        value = env.get(name)
        missing = value is None or (operator is not None and operator.startswith(":") and value == "")
        if operator and operator.endswith("?") and missing:
            raise KeyError(f"{name}: {argument}")
        if operator and operator.endswith("-") and missing:
            return argument
        return value or ""
    parts = text.split("$$")
    return "$".join(VARIABLE.sub(substitute, part) for part in parts)


def command_of(service: dict[str, Any], env: dict[str, str]) -> list[str]:
    """The service's command as an argv list, with variables substituted."""
    command = service["command"]
    argv = command if isinstance(command, list) else shlex.split(command)
    return [interpolate(str(arg), env) for arg in argv]


def option_value(argv: list[str], *names: str) -> str:
    """Value of the first option among ``names`` (``-Q x`` or ``--queues=x``)."""
    for index, arg in enumerate(argv):
        for name in names:
            if arg == name:
                return argv[index + 1]
            if arg.startswith(f"{name}="):
                return arg.split("=", 1)[1]
    raise AssertionError(f"none of {names} in {argv}")


def healthcheck_argv(service: dict[str, Any]) -> list[str]:
    """The healthcheck test as an argv list (a CMD-SHELL string is split like a shell would)."""
    test = service["healthcheck"]["test"]
    if test[0] == "CMD-SHELL":
        return shlex.split(test[1].replace("$$HOSTNAME", "container-id"))
    assert test[0] == "CMD", test
    return list(test[1:])


def settings_variables() -> set[str]:
    """Every environment variable ``Settings.from_env`` reads."""
    return {ENV_PREFIX_FREE.get(field.name, f"CALLQUEUE_{field.name.upper()}") for field in fields(Settings)}


def app_environment(service: dict[str, Any], env: dict[str, str]) -> dict[str, str]:
    """The service's container environment after substitution."""
    return {name: interpolate(str(value), env) for name, value in service["environment"].items()}


# -- the services and their commands ----------------------------------------

def test_compose_defines_exactly_the_production_services(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == SERVICES


def test_the_metrics_service_runs_the_projects_exporter_unpublished(services: dict[str, dict[str, Any]],
                                                                      example_env: dict[str, str]) -> None:
    from callqueue.producers.cli import cli

    exporter = services[EXPORTER]
    argv = command_of(exporter, example_env)
    assert argv[:4] == ["python", "-m", "producers", "metrics"]
    assert "metrics" in cli.commands
    cli.commands["metrics"].make_context("metrics", argv[4:])  # every option exists
    assert "ports" not in exporter and exporter["image"] == services["worker-assignments"]["image"]
    assert set(app_environment(exporter, example_env)) >= settings_variables()


def test_the_dashboard_service_runs_the_dashboard_command_with_logins_from_env(
        services: dict[str, dict[str, Any]], example_env: dict[str, str]) -> None:
    from callqueue.producers.dashboard.auth import ADMIN, VIEWER, Logins

    dashboard = services[DASHBOARD]
    argv = command_of(dashboard, example_env)
    assert argv[:4] == ["python", "-m", "producers", "dashboard"]
    context = cli.commands["dashboard"].make_context("dashboard", argv[4:])  # every option exists
    assert context.params["address"] == "0.0.0.0" and context.params["no_login"] is False
    assert f"http://127.0.0.1:{context.params['port']}/healthz" in healthcheck_argv(dashboard)[2]
    environment = app_environment(dashboard, example_env)
    assert set(environment) >= settings_variables()
    logins = Logins.from_env(environment)
    assert logins.check(example_env["DASHBOARD_ADMIN_USER"], example_env["DASHBOARD_ADMIN_PASSWORD"]).role == ADMIN
    assert logins.check(example_env["DASHBOARD_VIEWER_USER"], example_env["DASHBOARD_VIEWER_PASSWORD"]).role == VIEWER
    assert dashboard["image"] == services["worker-assignments"]["image"]


def test_every_app_service_runs_the_projects_celery_app(services: dict[str, dict[str, Any]],
                                                         example_env: dict[str, str]) -> None:
    for name in APP_SERVICES:
        argv = command_of(services[name], example_env)
        assert argv[0] == "celery", name
        module_name, attribute = option_value(argv, "-A", "--app").split(":")
        module = importlib.import_module(module_name)
        assert isinstance(getattr(module, attribute), Celery), name
        assert (ROOT / Path(*module_name.split("."))).with_suffix(".py").is_file()


def test_worker_services_consume_exactly_the_projects_queues(services: dict[str, dict[str, Any]],
                                                              example_env: dict[str, str]) -> None:
    declared = {queue.name for queue in celery_config(Settings())["task_queues"]}
    consumed = {}
    for name, queue in WORKER_QUEUES.items():
        argv = command_of(services[name], example_env)
        assert argv[argv.index("-A") + 2] == "worker", name
        consumed[name] = option_value(argv, "-Q", "--queues")
        assert consumed[name] == queue
    assert set(consumed.values()) == declared == {ASSIGNMENTS_QUEUE, BATCH_QUEUE}


def test_beat_and_flower_run_their_celery_subcommands(services: dict[str, dict[str, Any]],
                                                      example_env: dict[str, str]) -> None:
    for name, subcommand in (("beat", "beat"), ("flower", "flower")):
        argv = command_of(services[name], example_env)
        assert argv[argv.index("-A") + 2] == subcommand


@pytest.mark.slow
@pytest.mark.parametrize("service_name", ["worker-assignments", "worker-batch", "beat"])
def test_celery_accepts_every_option_of_the_service_command(services: dict[str, dict[str, Any]],
                                                            example_env: dict[str, str],
                                                            service_name: str) -> None:
    """Celery parses the whole command line (``--help`` last, so every option before it is checked)."""
    argv = command_of(services[service_name], example_env)
    completed = subprocess.run([sys.executable, "-m", *argv, "--help"], cwd=ROOT, capture_output=True,
                               text=True, timeout=60, env=project_env({"PATH": "/usr/bin:/bin"}))
    assert completed.returncode == 0, completed.stderr
    assert "Usage:" in completed.stdout


def test_flower_command_uses_only_real_flower_options(services: dict[str, dict[str, Any]],
                                                      example_env: dict[str, str]) -> None:
    import flower.options  # noqa: F401 - defines Flower's options
    from tornado.options import options

    argv = command_of(services["flower"], example_env)
    flags = argv[argv.index("flower") + 1:]
    known = {name.replace("-", "_") for name in options._options}
    for flag in flags:
        assert flag.startswith("--") and "=" in flag, flag
        assert flag[2:].split("=", 1)[0].replace("-", "_") in known, flag
    assert option_value(argv, "--port") == "5555"


def test_app_healthchecks_run_the_producers_health_command(services: dict[str, dict[str, Any]],
                                                           example_env: dict[str, str]) -> None:
    health = cli.commands["health"]
    for name in ("worker-assignments", "worker-batch", "beat"):
        argv = healthcheck_argv(services[name])
        assert argv[:4] == ["python", "-m", "producers", "health"], name
        assert importlib.util.find_spec("callqueue.producers.__main__") is not None
        context = health.make_context("health", argv[4:])
        if name in WORKER_QUEUES:
            assert context.params["queues"] == (WORKER_QUEUES[name],)
            node = option_value(command_of(services[name], example_env), "-n", "--hostname")
            assert [worker.split("@")[0] for worker in context.params["required_workers"]] == \
                [node.split("@")[0]]
        else:
            assert context.params["no_workers"] is True


def test_flower_healthcheck_asks_flower_itself(services: dict[str, dict[str, Any]]) -> None:
    argv = healthcheck_argv(services["flower"])
    assert argv[:2] == ["python", "-c"]
    assert "http://127.0.0.1:5555/healthcheck" in argv[2]
    compile(argv[2], "flower-healthcheck", "exec")


def test_app_services_wait_for_healthy_servers(services: dict[str, dict[str, Any]]) -> None:
    for name in WORKER_QUEUES:
        assert services[name]["depends_on"] == {"mongo": {"condition": "service_healthy"},
                                                "redis": {"condition": "service_healthy"}}
    for name in ("beat", "flower"):
        assert services[name]["depends_on"]["redis"] == {"condition": "service_healthy"}
    assert all("healthcheck" in service for service in services.values())


def test_app_services_run_the_image_built_from_the_dockerfile(services: dict[str, dict[str, Any]]) -> None:
    images = {services[name]["image"] for name in APP_SERVICES}
    assert len(images) == 1
    assert all(services[name]["build"] == "." for name in APP_SERVICES)


# -- servers ------------------------------------------------------------------

def test_mongo_is_a_version_7_replica_set_initiated_by_its_healthcheck(
        services: dict[str, dict[str, Any]], example_env: dict[str, str]) -> None:
    mongo = services["mongo"]
    assert mongo["image"].startswith("mongo:7")
    argv = command_of(mongo, example_env)
    assert option_value(argv, "--replSet") == example_env["MONGO_REPLICA_SET"]
    assert option_value(argv, "--keyFile").startswith("/data/configdb/")
    mounts = {volume.split(":")[1]: volume.split(":")[0] for volume in mongo["volumes"]}
    assert mounts["/data/db"] == "mongo-data"
    script = healthcheck_argv(mongo)[-1]
    assert script.startswith("/callqueue/") and mounts["/callqueue"] == "./docker/mongo"
    healthcheck_js = (DOCKER_DIR / "mongo" / Path(script).name).read_text()
    assert "replSetInitiate" in healthcheck_js and "isWritablePrimary" in healthcheck_js
    assert (ROOT / mounts["/docker-entrypoint-initdb.d"] / "create-app-user.js").is_file()
    assert (DOCKER_DIR / "mongo" / Path(mongo["entrypoint"][-1]).name).is_file()


def test_app_services_connect_to_the_replica_set_with_the_app_user(
        services: dict[str, dict[str, Any]], example_env: dict[str, str]) -> None:
    for name in APP_SERVICES:
        settings = Settings.from_env(app_environment(services[name], example_env))
        assert settings.mongo_url.startswith(f"mongodb://{example_env['MONGO_APP_USERNAME']}:")
        assert f"replicaSet={example_env['MONGO_REPLICA_SET']}" in settings.mongo_url
        assert "authSource=admin" in settings.mongo_url
        assert settings.broker_url.endswith(f"@{example_env['REDIS_HOST']}:{example_env['REDIS_PORT']}/0")
        assert settings.result_backend.endswith("/1")
        assert settings.log_format == "json"


def test_redis_requires_a_password_read_from_its_environment_and_persists(
        services: dict[str, dict[str, Any]]) -> None:
    redis = services["redis"]
    shell = redis["command"][-1]
    assert redis["command"][:2] == ["sh", "-c"]
    assert '--requirepass "$$REDIS_PASSWORD"' in shell
    assert "--appendonly yes" in shell
    assert VARIABLE.fullmatch(redis["environment"]["REDIS_PASSWORD"]).group(1) == "REDIS_PASSWORD"
    assert "redis-data:/data" in redis["volumes"]
    assert "REDISCLI_AUTH" in redis["healthcheck"]["test"][-1]


def test_flower_requires_a_login_built_from_environment_variables(services: dict[str, dict[str, Any]]) -> None:
    from flower.command import apply_env_options
    from tornado.options import options

    value = services["flower"]["environment"]["FLOWER_BASIC_AUTH"]
    assert re.fullmatch(r"\$\{FLOWER_USER(:\?[^}]*)?\}:\$\{FLOWER_PASSWORD(:\?[^}]*)?\}", value), value
    previous = options.basic_auth
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("FLOWER_BASIC_AUTH", "someone:something")
            apply_env_options()
        assert options.basic_auth == ["someone:something"]
    finally:
        options.basic_auth = previous


def test_only_flower_and_the_dashboard_publish_a_port(services: dict[str, dict[str, Any]],
                                                      example_env: dict[str, str]) -> None:
    publishing = {name for name, service in services.items() if service.get("ports")}
    assert publishing == {"flower", DASHBOARD}
    [dashboard_port] = services[DASHBOARD]["ports"]
    assert interpolate(dashboard_port, example_env).split(":") == [
        example_env["DASHBOARD_BIND_ADDRESS"], example_env["DASHBOARD_PORT"], "5556"]
    assert not any(service.get("network_mode") == "host" for service in services.values())
    [published] = services["flower"]["ports"]
    address, host_port, container_port = interpolate(published, example_env).split(":")
    assert (address, host_port, container_port) == (example_env["FLOWER_BIND_ADDRESS"],
                                                     example_env["FLOWER_PORT"], "5555")


def test_worker_services_can_be_scaled(services: dict[str, dict[str, Any]]) -> None:
    for name in WORKER_QUEUES:
        service = services[name]
        assert not {"container_name", "ports", "hostname"} & set(service), name
        node = option_value(service["command"], "-n", "--hostname")
        assert node.endswith("@%h"), "each replica needs its own node name"


# -- secrets and variables ----------------------------------------------------

def repository_deploy_files() -> list[Path]:
    files = [COMPOSE_FILE, DOCKERFILE, ENV_EXAMPLE, *sorted(p for p in DOCKER_DIR.rglob("*") if p.is_file())]
    assert all(path.is_file() for path in files)
    return files


def test_no_secret_is_written_in_the_deployment_files(services: dict[str, dict[str, Any]]) -> None:
    for path in repository_deploy_files():
        text = path.read_text()
        assert not URL_WITH_LITERAL_PASSWORD.search(text), f"literal credentials in a URL in {path.name}"
        assert not re.search(r"--requirepass\s+(?!\\?[\"']?\$)", text), path.name
        assert not re.search(r"--basic[-_]auth", text), f"{path.name}: Flower's login belongs in the environment"
    for name, service in services.items():
        for key, value in (service.get("environment") or {}).items():
            if re.search(r"PASSWORD|SECRET|TOKEN|AUTH|_URL$|BACKEND$", key):
                assert "${" in str(value), f"{name}.{key} is a literal"
    assert not re.search(r"^\s*(ENV|ARG)\s+\S*(PASSWORD|SECRET|TOKEN)", DOCKERFILE.read_text(), re.MULTILINE)


def test_env_example_holds_only_placeholders_for_secrets(example_env: dict[str, str]) -> None:
    secrets = {name: value for name, value in example_env.items() if re.search(r"PASSWORD|SECRET", name)}
    assert set(secrets) >= {"MONGO_ROOT_PASSWORD", "MONGO_APP_PASSWORD", "REDIS_PASSWORD", "FLOWER_PASSWORD"}
    assert set(secrets.values()) == {PLACEHOLDER}


def test_every_variable_compose_uses_is_documented_in_env_example() -> None:
    used = {match.group(1) for match in VARIABLE.finditer(COMPOSE_FILE.read_text())}
    documented = {name for _, name, _ in env_example_lines()}
    assert used - documented == set()
    # The override files (docker-compose.*.yml) may use variables of their own.
    used_by_overrides = {match.group(1) for path in sorted(ROOT.glob("docker-compose.*.yml"))
                         for match in VARIABLE.finditer(path.read_text())}
    assert documented - used - used_by_overrides == set(), "variables in .env.example that compose never uses"


def test_required_variables_have_no_default(example_env: dict[str, str]) -> None:
    """Secrets use ``${NAME:?message}``, so compose refuses to start without them."""
    for match in VARIABLE.finditer(COMPOSE_FILE.read_text()):
        name, operator, _ = match.groups()
        if name.endswith(("PASSWORD", "USERNAME", "_USER")):
            assert operator == ":?", f"{match.group(0)} must be required"


def test_app_services_pass_every_callqueue_setting(services: dict[str, dict[str, Any]]) -> None:
    for name in APP_SERVICES:
        assert settings_variables() - set(services[name]["environment"]) == set(), name


def test_env_example_shows_the_true_default_of_each_optional_setting() -> None:
    defaults = {ENV_PREFIX_FREE.get(field.name, f"CALLQUEUE_{field.name.upper()}"): field.default
                for field in fields(Settings)}
    commented = {name: value for is_comment, name, value in env_example_lines() if is_comment}
    assert commented, "optional settings are documented as commented defaults"
    for name, value in commented.items():
        assert name in defaults, f"{name} is not a setting"
        assert type(defaults[name])(value) == defaults[name], f"{name}: default is {defaults[name]!r}"
    documented = {name for _, name, _ in env_example_lines()}
    assert settings_variables() - documented <= set(ENV_PREFIX_FREE.values())


# -- the image -------------------------------------------------------------------

def test_dockerfile_builds_a_non_root_python_311_image_of_the_app_packages() -> None:
    instructions = [line.split(None, 1) for line in DOCKERFILE.read_text().splitlines()
                    if line.strip() and not line.lstrip().startswith("#") and not line.startswith(" ")]
    by_keyword: dict[str, list[str]] = {}
    for keyword, *rest in instructions:
        by_keyword.setdefault(keyword.upper(), []).append(rest[0] if rest else "")
    assert by_keyword["FROM"] == ["python:3.11-slim"]
    assert any("pip install" in run and "-r requirements.txt" in run for run in by_keyword["RUN"])
    copied = {args.split()[0].rstrip("/") for args in by_keyword["COPY"]}
    assert copied >= {"requirements.txt", "config", "workers", "producers", "callqueue"}
    [user] = by_keyword["USER"]
    assert user.split(":")[0] not in {"root", "0"}


def first_party_imports(package: Path) -> set[str]:
    """Top-level project packages imported anywhere under ``package``."""
    project = {path.parent.name for path in ROOT.glob("*/__init__.py")}
    found = set()
    for source in package.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else []
            found |= {name.split(".")[0] for name in names} & project
    return found


def test_image_packages_import_only_packages_the_image_contains() -> None:
    copied = {"config", "workers", "producers", "callqueue"}
    for package in copied:
        assert first_party_imports(ROOT / package) <= copied, package


# -- docker-compose config ---------------------------------------------------------

def compose_tool() -> list[str] | None:
    """``docker-compose`` (Debian's package) or the ``docker compose`` plugin, if installed."""
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return ["docker", "compose"]
    return None


def run_compose(tool: list[str], project_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the compose tool with a clean environment (no stray variables from this shell)."""
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(project_dir)}
    return subprocess.run([*tool, "--project-directory", str(project_dir), "-f", str(COMPOSE_FILE), *args],
                          capture_output=True, text=True, timeout=120, env=env, cwd=project_dir)


def test_docker_compose_config_accepts_the_file(compose_cli: list[str], example_env: dict[str, str]) -> None:
    completed = run_compose(compose_cli, ROOT, "--env-file", str(ENV_EXAMPLE), "config")
    assert completed.returncode == 0, completed.stderr
    resolved = yaml.safe_load(completed.stdout)
    assert set(resolved["services"]) == SERVICES
    worker = resolved["services"]["worker-assignments"]
    assert option_value(worker["command"], "-Q") == ASSIGNMENTS_QUEUE
    assert worker["environment"]["MONGO_DB"] == example_env["MONGO_DB"]


def test_docker_compose_refuses_to_run_without_the_secrets(compose_cli: list[str], tmp_path: Path) -> None:
    completed = run_compose(compose_cli, tmp_path, "config")
    assert completed.returncode != 0
    assert re.search(r"(MONGO|REDIS|FLOWER)_\w+", completed.stderr), completed.stderr
