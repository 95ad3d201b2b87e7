"""``python -m producers dashboard``: serve the supervisor dashboard until Ctrl-C (uvicorn)."""

from __future__ import annotations

import ipaddress
import logging
import os
import sys

import click
import uvicorn

from callqueue.config import Settings, load_settings
from callqueue.producers.dashboard.app import create_app
from callqueue.producers.dashboard.auth import ROLE_VARIABLES, Logins
from callqueue.workers.eventlog import JsonFormatter
from callqueue.workers.exceptions import ConfigurationError
from callqueue.workers.mongo import get_database
from callqueue.workers.store import AssignmentStore

# Longest a page or the shared poll waits for MongoDB (pymongo timeout) before showing an error.
READ_DEADLINE_SECONDS = 10.0
EXIT_USAGE = 2


def is_loopback(address: str) -> bool:
    """Only this machine can reach the address (127.0.0.0/8, ::1, localhost)."""
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def logins_for(address: str, no_login: bool, environ: dict[str, str] | os._Environ[str]) -> Logins:
    """The logins from the environment; without any, only ``--no-login`` on a loopback address may start."""
    if no_login:
        if not is_loopback(address):
            raise ConfigurationError(f"--no-login serves everyone as admin: only on a loopback address, not {address}")
        return Logins.nobody()
    logins = Logins.from_env(environ)
    if not logins:
        raise ConfigurationError(f"no dashboard login: set {' and/or '.join(ROLE_VARIABLES.values())} "
                                 "(user:password[,user:password]), or start with --no-login on 127.0.0.1")
    return logins


def configure_logging(settings: Settings) -> None:
    """Action and login lines (logger ``callqueue``) on stderr, as JSON when CALLQUEUE_LOG_FORMAT=json."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if settings.log_format == "json"
                         else logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logger = logging.getLogger("callqueue")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)


@click.command("dashboard")
@click.option("--address", default=None, help="Address to listen on (default CALLQUEUE_DASHBOARD_ADDRESS).")
@click.option("--port", type=click.IntRange(1, 65535), default=None,
              help="Port to listen on (default CALLQUEUE_DASHBOARD_PORT).")
@click.option("--no-login", is_flag=True,
              help="No login, everyone is admin: allowed only on a loopback address (a developer's machine).")
def dashboard_command(address: str | None, port: int | None, no_login: bool) -> None:
    """Serve the live supervisor dashboard (sessions, assistants, callbacks, actions) until Ctrl-C."""
    try:
        settings = load_settings()
        address = address or settings.dashboard_address
        logins = logins_for(address, no_login, os.environ)
    except ConfigurationError as exc:
        click.echo(f"configuration error: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    configure_logging(settings)
    store = AssignmentStore(get_database(settings), bulk_timeout_seconds=READ_DEADLINE_SECONDS)
    app = create_app(settings, logins, store)
    port = port or settings.dashboard_port
    mode = "no login (loopback only)" if no_login else "login required"
    click.echo(f"callqueue dashboard on http://{address}:{port}/ ({mode})", err=True)
    uvicorn.run(app, host=address, port=port, log_level="info", timeout_graceful_shutdown=3, proxy_headers=False)
