"""The distribution a service installs: built with ``python -m build``, installed into a fresh virtualenv
outside the checkout, where the README's client example runs against a stack and ``callqueue`` answers."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.acceptance.test_readme import first_examples

ROOT = Path(__file__).resolve().parents[2]
BUILD_SECONDS = 300
INSTALL_SECONDS = 600

pytestmark = pytest.mark.slow


def run(argv: list[str], timeout: float, **options: Any) -> subprocess.CompletedProcess:
    finished = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **options)
    assert finished.returncode == 0, f"{argv}:\n{finished.stdout[-2000:]}\n{finished.stderr[-3000:]}"
    return finished


def without_this_checkout() -> dict[str, str]:
    """The environment of a process that must not find this checkout's packages."""
    return {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist and, built from it, the wheel, as ``python -m build`` makes them from a clean copy of the
    committed files (the build writes its metadata beside the sources, never into this checkout)."""
    source, out = tmp_path_factory.mktemp("source") / "callqueue", tmp_path_factory.mktemp("dist")
    tracked = run(["git", "ls-files"], 60, cwd=ROOT).stdout.splitlines()
    for name in tracked:
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, source / name, follow_symlinks=False)
    run([sys.executable, "-m", "build", "--outdir", str(out), str(source)], BUILD_SECONDS,
        env=without_this_checkout())
    [built] = out.glob("callqueue-*.whl")
    assert list(out.glob("callqueue-*.tar.gz")), "no sdist"
    return built


@pytest.fixture(scope="module")
def service(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A service's own folder and virtualenv, outside the checkout, with the wheel installed by pip."""
    folder = tmp_path_factory.mktemp("service")
    run([sys.executable, "-m", "venv", str(folder / "venv")], 120, env=without_this_checkout())
    python = folder / "venv" / "bin" / "python"
    run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(wheel)],
        INSTALL_SECONDS, cwd=folder, env=without_this_checkout())
    yield folder


def outside_the_checkout(stack: Any) -> dict[str, str]:
    """The stack's URLs, and nothing that would let the service see this checkout."""
    return {**without_this_checkout(), **{key: value for key, value in stack.env.items()
                                          if key.startswith(("MONGO_", "CELERY_", "CALLQUEUE_"))}}


def test_the_wheel_holds_one_import_package_and_the_console_script(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = archive.read(next(name for name in names if name.endswith("entry_points.txt"))).decode()
    assert {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")} == {"callqueue"}
    for module in ("callqueue/producers/client.py", "callqueue/workers/store/claim.py", "callqueue/config/settings.py",
                   "callqueue/producers/dashboard/templates/session.html"):
        assert module in names, module
    assert "callqueue = callqueue.producers.cli:cli" in entry_points


def test_the_readme_client_example_runs_in_a_service_that_installed_the_wheel(service: Path, stack: Any) -> None:
    session = f"package-{uuid.uuid4().hex[:8]}"
    example = first_examples()[0].replace("evening-1", session)
    python = service / "venv" / "bin" / "python"
    answer = run([str(python), "-c", example], 120, cwd=service, env=outside_the_checkout(stack))
    assert answer.stdout.strip().splitlines()[-1].startswith(f"{session}:ann ")
    where = run([str(python), "-c", "import callqueue; print(callqueue.__file__)"], 60, cwd=service,
                env=outside_the_checkout(stack))
    assert str(service / "venv") in where.stdout and str(ROOT) not in where.stdout


def test_the_console_script_answers_help_and_leaves_a_services_config_module_alone(service: Path, stack: Any) -> None:
    script = service / "venv" / "bin" / "callqueue"
    helped = run([str(script), "--help"], 60, cwd=service, env=outside_the_checkout(stack))
    assert "stats" in helped.stdout and "complete-next" in helped.stdout
    (service / "config.py").write_text("OWN = 'the service'\n")
    python = service / "venv" / "bin" / "python"
    own = run([str(python), "-c", "import callqueue.producers.client, config; print(config.OWN)"], 60, cwd=service,
              env=outside_the_checkout(stack))
    assert own.stdout.strip() == "the service"
