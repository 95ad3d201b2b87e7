"""Starting and stopping child processes by PID, tidily.

Each child runs in its own session (so a terminal Ctrl-C reaches only us and
we stop the children in order) and is asked by the kernel to terminate if we
die without cleaning up (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Callable, Sequence

PR_SET_PDEATHSIG = 1


class StartupError(RuntimeError):
    """A server did not become ready in time; the message points at its log."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(ready: Callable[[], bool], timeout_seconds: float, what: str,
               alive: Callable[[], bool] = lambda: True) -> None:
    """Poll ``ready`` until it returns True; raise StartupError after the timeout."""
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if not alive():
            raise StartupError(f"{what} exited during startup")
        try:
            if ready():
                return
        except Exception:  # noqa: BLE001 - any failure means "not ready yet"
            pass
        time.sleep(0.1)
    raise StartupError(f"{what} was not ready after {timeout_seconds:.0f}s")


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


class ManagedProcess:
    """One child process, its output in a log file, stopped by PID."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path,
                 env: dict[str, str] | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = env
        self.process: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def start(self) -> "ManagedProcess":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=self.env, start_new_session=True, preexec_fn=_die_with_parent,
            )
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout_seconds: float = 15.0) -> None:
        """SIGTERM the process group, then SIGKILL what is left after the timeout."""
        if self.process is None:
            return
        if self.alive():
            self._signal_group(signal.SIGTERM)
            try:
                self.process.wait(timeout_seconds)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.process.wait(5)
        self._signal_group(signal.SIGKILL)  # stragglers, e.g. pool children
        self.process = None

    def kill(self) -> None:
        """SIGKILL the whole group at once (fault injection)."""
        if self.process is not None:
            self._signal_group(signal.SIGKILL)
            self.process.wait(10)
            self.process = None

    def send_signal(self, signum: int) -> None:
        """Send ``signum`` to the process itself (SIGSTOP / SIGCONT to freeze and thaw it)."""
        if self.process is not None:
            os.kill(self.process.pid, signum)

    def _signal_group(self, signum: int) -> None:
        try:
            os.killpg(self.process.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""
