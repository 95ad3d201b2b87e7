"""The README and docs/ name only files, modules, settings and sections that exist."""

from __future__ import annotations

import importlib
import re
import subprocess
from dataclasses import fields
from pathlib import Path

import pytest

from callqueue.config.settings import ENV_PREFIX_FREE, Settings

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# Written at run time, never committed (.gitignore).
MADE_AT_RUN_TIME = ("bench/results", "tests/artifacts", ".venv", "node_modules", "examples/node/node_modules")
PACKAGES = ("callqueue", "workers", "producers", "config", "devstack", "bench", "tests")
PATH_LIKE = re.compile(r"^(?:[\w.-]+/)+[\w.*<>-]*$|^[\w-]+\.(?:py|yml|yaml|json|md|js|txt|ini|cfg|toml)$|^Makefile$|^Dockerfile$")
DOTTED = re.compile(rf"^(?:{'|'.join(PACKAGES)})(?:\.\w+)+$")


def setting_names() -> set[str]:
    return {ENV_PREFIX_FREE.get(field.name, f"CALLQUEUE_{field.name.upper()}") for field in fields(Settings)}


def deployment_names() -> set[str]:
    """Variables the compose files and .env.example define for the deployment itself."""
    text = "".join(path.read_text() for path in [*ROOT.glob("docker-compose*.yml"), ROOT / ".env.example",
                                                 *ROOT.glob("docker/**/*")] if path.is_file())
    return set(re.findall(r"\bCALLQUEUE_[A-Z0-9_]+", text))


def code_spans(text: str) -> list[str]:
    """Inline code spans outside fenced blocks."""
    prose = re.sub(r"```.*?```", "", text, flags=re.DOTALL)
    return re.findall(r"`([^`\n]+)`", prose)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {slug(line.lstrip("#")) for line in path.read_text().splitlines() if line.startswith("#")}


def is_ours(path: str) -> bool:
    """A path in this repository (not an absolute path, one leading out of it, a URL, a MIME type or a server's
    own folder)."""
    return (not path.startswith(("/", "../", "~", "http", "application/", "<dbpath>"))
            and not re.match(r"^(?:Etc|[A-Z][a-z]+)/[A-Z]", path)  # an IANA time zone (America/Chicago)
            and ":" not in path and "@" not in path and " " not in path)


def tracked_files() -> list[str]:
    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return listed.splitlines()


def source_strings() -> str:
    """Every Python source file of the project, for names that are strings in code (task names)."""
    return "".join((ROOT / name).read_text() for name in tracked_files() if name.endswith(".py"))


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.name)
def test_every_link_leads_to_a_file_and_section_that_exist(document: Path) -> None:
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", document.read_text()):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        file_part, _, anchor = target.partition("#")
        linked = (document.parent / file_part).resolve() if file_part else document
        if not linked.exists():
            broken.append(target)
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(target)
    assert not broken, f"{document.name}: broken links {broken}"


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.name)
def test_every_file_named_exists(document: Path) -> None:
    missing = []
    for span in code_spans(document.read_text()):
        name = span.strip().rstrip(",.")
        if not PATH_LIKE.match(name) or not is_ours(name) or name.startswith(MADE_AT_RUN_TIME):
            continue
        if "/" not in name:
            found = [path for path in tracked_files() if path.rsplit("/", 1)[-1] == name]
        elif "*" in name or "<" in name:
            found = list(ROOT.glob(re.sub(r"<[^>]+>", "*", name)))
        else:
            found = [ROOT / name] if (ROOT / name).exists() else []
        if not found:
            missing.append(name)
    assert not missing, f"{document.name} names files that do not exist: {missing}"


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.name)
def test_every_module_and_object_named_exists(document: Path) -> None:
    missing = []
    strings = source_strings()
    for span in code_spans(document.read_text()):
        name = span.strip().split("(")[0].split(":")[0]
        if not DOTTED.match(name) or PATH_LIKE.match(name):  # callqueue.js is a file, not a module
            continue
        if not _resolves(name) and f'"{name}"' not in strings:  # a module, an object, or a task's name
            missing.append(name)
    assert not missing, f"{document.name} names modules or objects that do not exist: {missing}"


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.name)
def test_every_setting_named_exists(document: Path) -> None:
    known = setting_names() | deployment_names()
    named = set(re.findall(r"\bCALLQUEUE_[A-Z0-9_]*[A-Z0-9]\b", document.read_text()))
    assert named <= known, f"{document.name} names settings that do not exist: {sorted(named - known)}"


def test_the_readme_is_a_front_door_that_links_every_document() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    for command in ("make demo", "make test", "make check"):
        assert command in readme, command
    for document in DOCUMENTS[1:]:
        assert f"(docs/{document.name})" in readme, f"the README does not link docs/{document.name}"


def _resolves(dotted: str) -> bool:
    """``a.b.c``: a module, or an attribute (chain) of the longest importable prefix.

    The application's folders are imported by their one package name (``workers.x`` as
    ``callqueue.workers.x``), never as top-level modules of their own: a second copy would register
    its transport aliases and tasks over the first.
    """
    if dotted.split(".", 1)[0] in ("workers", "producers", "config"):
        dotted = f"callqueue.{dotted}"
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            target: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attribute in parts[cut:]:
            if not hasattr(target, attribute):
                return False
            target = getattr(target, attribute)
        return True
    return False
