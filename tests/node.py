"""Running the Node.js code in examples/node from the tests, by PID and with a deadline."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from devstack.processes import ManagedProcess

NODE_DIR = Path(__file__).resolve().parents[1] / "examples" / "node"


def node_binary() -> str:
    """Path of node, once examples/node has its dependencies (``make test`` runs ``npm ci`` there)."""
    node = shutil.which("node")
    assert node, "node not found: `make test` installs Debian's nodejs when it is missing"
    assert (NODE_DIR / "node_modules" / "celery-node").is_dir(), \
        "examples/node/node_modules is missing: `make test` runs `npm ci` there (or run it yourself)"
    return node


def run_node(argv: list[str], env: dict[str, str] | None, log: Path, timeout_seconds: float) -> tuple[int, str]:
    """Run node with ``argv``; (exit status, output). Its process group is stopped by PID on every way out."""
    process = ManagedProcess("node", [node_binary(), *argv], log, env)
    process.start()
    try:
        deadline = time.monotonic() + timeout_seconds
        while process.alive() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not process.alive(), f"node {argv} still running after {timeout_seconds:.0f}s:\n{process.log_tail(30)}"
        return process.process.returncode, log.read_text(errors="replace")
    finally:
        process.stop(timeout_seconds=5)
