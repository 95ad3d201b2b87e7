"""What every ``python -m producers`` command shares: its client, JSON on stdout, and exit codes.

A rejected request prints the structured error and exits 2; an unreachable
broker or a failed task exits 3.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Any, Callable

import click

from callqueue.config import load_caller_settings
from callqueue.producers.client import AssignmentClient
from callqueue.workers.exceptions import CallqueueError, Rejected

EXIT_REJECTED = 2
EXIT_UNAVAILABLE = 3


def client_of(ctx: click.Context) -> AssignmentClient:
    """A client with the command line's ``--timeout``, on the URLs of the environment (without them, the
    error saying what to set, exit 3), that reports an unreachable MongoDB at the first wait the workers
    spent retrying for it."""
    settings = run(load_caller_settings)
    return AssignmentClient(settings, timeout_seconds=ctx.obj["timeout_seconds"], stop_at_store_outage=True)


def run(action: Callable[[], Any]) -> Any:
    """Run ``action``; turn callqueue errors into a JSON error and an exit code."""
    try:
        return action()
    except Rejected as exc:
        emit({"status": "rejected", "error": exc.to_error()})
        sys.exit(EXIT_REJECTED)
    except CallqueueError as exc:
        emit({"status": "error", "error": {"code": type(exc).__name__, "message": str(exc)}})
        sys.exit(EXIT_UNAVAILABLE)


def emit(payload: Any) -> None:
    click.echo(json.dumps(payload, indent=2, default=_json_value))


def _json_value(value: Any) -> Any:
    """Datetimes as ISO-8601 (as the tasks send them), anything else as text."""
    return value.isoformat() if isinstance(value, datetime) else str(value)
