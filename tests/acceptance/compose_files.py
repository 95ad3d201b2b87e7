"""Reading compose files as compose does: merging overrides, interpolating environments, running `config`.

Shared by the acceptance tests of docker-compose.yml and its override files
(replica set, Sentinel, TLS).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.acceptance.test_compose import env_example_lines, interpolate


def container_path(volume: str) -> str:
    return volume.split(":")[1]


def merge_service(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Compose's merge of one service: mappings by key, volumes by container path, the rest replaced."""
    merged = {**base}
    for key, value in override.items():
        if key in ("environment", "depends_on", "healthcheck") and key in base:
            merged[key] = {**base[key], **value}
        elif key == "volumes" and key in base:
            by_path = {container_path(volume): volume for volume in base[key]}
            by_path.update({container_path(volume): volume for volume in value})
            merged[key] = list(by_path.values())
        else:
            merged[key] = value
    return merged


def merged_services(files: tuple[Path, ...]) -> dict[str, dict[str, Any]]:
    """The services of the first file with each later file applied in order, as compose merges them."""
    merged: dict[str, dict[str, Any]] = {}
    for path in files:
        for name, service in yaml.safe_load(path.read_text())["services"].items():
            merged[name] = merge_service(merged[name], service) if name in merged else service
    return merged


def example_env_values() -> dict[str, str]:
    """The variables .env.example sets (its commented-out lines left out)."""
    return {name: value for commented, name, value in env_example_lines() if not commented}


def environment(service: dict[str, Any], env: dict[str, str]) -> dict[str, str]:
    """The service's environment with ``env`` substituted into it."""
    return {name: interpolate(str(value), env) for name, value in service["environment"].items()}


def run_compose(tool: list[str], project_dir: Path, files: tuple[Path, ...],
                *args: str) -> subprocess.CompletedProcess[str]:
    """``docker-compose -f ... <args>`` in ``project_dir`` with nothing of this process's environment."""
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(project_dir)}
    file_args = [arg for path in files for arg in ("-f", str(path))]
    return subprocess.run([*tool, "--project-directory", str(project_dir), *file_args, *args],
                          capture_output=True, text=True, timeout=120, env=env, cwd=project_dir)


def resolved_volume(volume: Any) -> str:
    """A volume as `docker-compose config` prints it (short string or long mapping), as ``source:target``."""
    return str(volume) if isinstance(volume, str) else f"{volume['source']}:{volume['target']}"
