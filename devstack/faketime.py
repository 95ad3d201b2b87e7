"""Processes on a skewed clock, with libfaketime (Debian's ``faketime`` package; ``make system`` installs it).

``skewed_env(env, 3600)`` is ``env`` for a child that sees the wall clock an
hour ahead (``-3600``: behind); its monotonic clock is left alone, so its
timers and timeouts run normally. The library is preloaded by the dynamic
linker (``LD_PRELOAD``), so the child is started directly and its PID and
process group stay ours (see ``devstack.processes``).

libfaketime 0.9.10 refuses the absolute monotonic ``clock_nanosleep`` that
Python's ``time.sleep`` makes (EINVAL) once the monotonic clock is not faked,
and with it faked, condition waits never wake. So a skewed Python program is
started through this module (``PREFIX``: ``python -m devstack.faketime python
-m celery ...``), which replaces ``time.sleep`` with an event wait before it
runs the program's module.
"""

from __future__ import annotations

import glob
import runpy
import sys
import threading
import time

from devstack.processes import StartupError

LIBRARY_PATTERNS = ("/usr/lib/*/faketime/libfaketimeMT.so.1", "/usr/lib/faketime/libfaketimeMT.so.1")
PREFIX = [sys.executable, "-m", "devstack.faketime"]


def library() -> str:
    """Path of the multi-threaded libfaketime."""
    for pattern in LIBRARY_PATTERNS:
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    raise StartupError("libfaketime not found: apt-get install faketime (make system does)")


def skewed_env(env: dict[str, str], offset_seconds: int) -> dict[str, str]:
    """``env`` for a process whose clock runs ``offset_seconds`` ahead of the true time (negative: behind)."""
    preload = " ".join(filter(None, [library(), env.get("LD_PRELOAD", "")]))
    return {**env, "LD_PRELOAD": preload, "FAKETIME": f"{offset_seconds:+d}", "FAKETIME_DONT_FAKE_MONOTONIC": "1"}


def _sleep(seconds: float) -> None:
    """``time.sleep`` by an event wait, which libfaketime lets through."""
    threading.Event().wait(max(0.0, seconds))


def main(argv: list[str]) -> None:
    """``PYTHON -m MODULE ARGS...``: run MODULE as ``__main__`` in this process, with the sleep replaced."""
    if len(argv) < 3 or argv[1] != "-m":
        raise SystemExit("usage: python -m devstack.faketime PYTHON -m MODULE [ARGS...]")
    time.sleep = _sleep
    sys.argv = [argv[2], *argv[3:]]
    runpy.run_module(argv[2], run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
