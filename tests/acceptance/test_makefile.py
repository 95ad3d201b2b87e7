"""What `make demo` installs: the virtualenv and redis-server, never the tools only the tests drive.

The Makefile's recipes run here with a PATH of stand-ins: a ``redis-server``
that does nothing, an ``apt-get`` that only records how it was called, and
an ``id`` that says root or not. Nothing is installed for real.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from devstack.servers import PROJECT_ROOT

TEST_ONLY_PACKAGES = ("chromium", "docker-compose", "iproute2", "iptables", "nodejs", "npm", "openssl")


def make_tool() -> str:
    found = shutil.which("make")
    if found is None:
        pytest.skip("make is not installed")
    return found


def fake_bin(folder: Path, *, redis: bool, uid: int) -> Path:
    """A PATH folder with stand-ins: ``apt-get`` appends its arguments to ``apt-get.calls``."""
    folder.mkdir()
    scripts = {"apt-get": f'echo "$@" >> {folder / "apt-get.calls"}', "id": f"echo {uid}"}
    if redis:
        scripts["redis-server"] = "exit 0"
    for name, body in scripts.items():
        (folder / name).write_text(f"#!/bin/sh\n{body}\n")
        (folder / name).chmod(0o755)
    return folder


def run_make(folder: Path, *targets: str) -> subprocess.CompletedProcess:
    return subprocess.run([make_tool(), "--no-print-directory", "-C", PROJECT_ROOT, *targets],
                          capture_output=True, text=True, timeout=60, env={"PATH": str(folder)})


def apt_calls(folder: Path) -> list[str]:
    calls = folder / "apt-get.calls"
    return calls.read_text().splitlines() if calls.exists() else []


def test_make_demo_depends_on_redis_only_and_make_test_on_the_test_tools() -> None:
    demo = subprocess.run([make_tool(), "-n", "-C", PROJECT_ROOT, "demo"], capture_output=True, text=True,
                          timeout=60)
    test = subprocess.run([make_tool(), "-n", "-C", PROJECT_ROOT, "test"], capture_output=True, text=True,
                          timeout=60)
    assert demo.returncode == 0 and "redis-server" in demo.stdout and "-m devstack demo" in demo.stdout
    assert not [package for package in TEST_ONLY_PACKAGES if package in demo.stdout], demo.stdout
    assert all(package in test.stdout for package in TEST_ONLY_PACKAGES), test.stdout


def test_with_redis_present_the_demo_step_installs_nothing_and_needs_no_root(tmp_path: Path) -> None:
    folder = fake_bin(tmp_path / "bin", redis=True, uid=1000)  # no chromium, compose, node...: not its business
    ran = run_make(folder, "system-demo")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert apt_calls(folder) == [] and "installing" not in ran.stdout


def test_without_redis_the_demo_step_installs_redis_only_as_root_and_says_what_to_run_otherwise(
        tmp_path: Path) -> None:
    root = fake_bin(tmp_path / "root", redis=False, uid=0)
    assert run_make(root, "system-demo").returncode == 0
    assert apt_calls(root) == ["update -qq", "install -y -qq redis-server"]

    user = fake_bin(tmp_path / "user", redis=False, uid=1000)
    refused = run_make(user, "system-demo")
    assert refused.returncode != 0 and apt_calls(user) == []
    assert "installing them needs root" in refused.stdout and "sudo apt-get install redis-server" in refused.stdout
