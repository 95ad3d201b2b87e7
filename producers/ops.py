"""Operations commands for ``python -m producers``: ``health``.

``health`` checks what callqueue depends on: MongoDB (``ping``), the Redis
broker and result backend (``PING``; on ``sentinel://`` URLs, to the master
the sentinels name), and for each queue the Celery workers
that consume it (``inspect active_queues``, which only live workers answer).
It prints a table, or JSON with ``--json``, and exits 0 when everything is up
and 1 otherwise, which is what Docker healthchecks expect.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from typing import Callable, Iterable
from urllib.parse import urlsplit

import click
import redis
import redis.exceptions
from redis.sentinel import SentinelConnectionPool
from kombu.exceptions import OperationalError
from pymongo import MongoClient
from pymongo.errors import PyMongoError
from rich.console import Console
from rich.table import Table

from callqueue.config import Settings, load_settings
from callqueue.config.redis_urls import redacted_url
from callqueue.workers.app import ASSIGNMENTS_QUEUE, BATCH_QUEUE, CallqueueCelery, create_app
from callqueue.workers.clock import worker_clocks
from callqueue.workers.exceptions import BrokerUnavailable, ConfigurationError, InfrastructureError, StoreUnavailable
from callqueue.workers.store.durability import probe_majority_write
from callqueue.workers.transport import redis_connection

EXIT_HEALTHY = 0
EXIT_UNHEALTHY = 1
QUEUES = (ASSIGNMENTS_QUEUE, BATCH_QUEUE)
REDIS_ERRORS = (redis.exceptions.RedisError, OperationalError, ConnectionError, OSError)

COMMANDS: list[click.Command] = []


@dataclass(frozen=True)
class Check:
    """The outcome of probing one component; ``warning`` marks an answer that works but promises less."""

    component: str
    ok: bool
    detail: str
    warning: bool = False


def mongo_location(url: str) -> str:
    """``host:port`` list of a MongoDB URL, without credentials, for messages."""
    return urlsplit(url).netloc.rsplit("@", 1)[-1] or url.split("://", 1)[0]


def error_name(exc: BaseException) -> str:
    """The error's class, and MongoDB's code name when it has one (never the message, which may hold a URL)."""
    details = getattr(exc, "details", None)
    code_name = details.get("codeName") if isinstance(details, dict) else None
    return f"{type(exc).__name__} ({code_name})" if code_name else type(exc).__name__


def ping_mongo(settings: Settings, timeout_seconds: float) -> str:
    """Ping MongoDB; raise StoreUnavailable when it does not answer."""
    millis = int(timeout_seconds * 1000)
    try:
        with MongoClient(settings.mongo_url, serverSelectionTimeoutMS=millis, connectTimeoutMS=millis,
                         appname="callqueue-health") as client:
            client.admin.command("ping")
    except PyMongoError as exc:
        raise StoreUnavailable(f"MongoDB at {mongo_location(settings.mongo_url)}: ping failed: "
                               f"{error_name(exc)}") from exc
    return f"ping ok ({mongo_location(settings.mongo_url)})"


def mongo_durability(settings: Settings, timeout_seconds: float) -> Check:
    """Can the deployment acknowledge writes on a majority? A warning for a standalone or a ``w=0/1`` URL."""
    millis = int(timeout_seconds * 1000)
    try:
        with MongoClient(settings.mongo_url, serverSelectionTimeoutMS=millis, connectTimeoutMS=millis,
                         appname="callqueue-health") as client:
            report = probe_majority_write(client[settings.mongo_db], timeout_seconds)
    except InfrastructureError as exc:
        return Check("mongodb durability", False, f"no majority-acknowledged write: {exc}")
    except PyMongoError as exc:
        return Check("mongodb durability", False, f"probe write refused: {error_name(exc)}")
    if report.url_write_concern in ("0", "1"):
        return Check("mongodb durability", True, f"warning: MONGO_URL asks for w={report.url_write_concern}; "
                     "callqueue's store still writes with w=majority, other tools on this URL do not. "
                     + report.detail, warning=True)
    if not report.majority:
        return Check("mongodb durability", True, "warning: cannot give majority-acknowledged writes: "
                     + report.detail, warning=True)
    return Check("mongodb durability", True, report.detail)


def redis_location(url: str) -> str:
    """The URL without its password, every address of a ``sentinel://`` URL included (for messages)."""
    return redacted_url(url)


def ping_redis(url: str, role: str, timeout_seconds: float, master_name: str | None = None) -> str:
    """PING the Redis server at ``url``; raise BrokerUnavailable when it does not answer.

    For a ``sentinel://`` URL the sentinels are asked for master ``master_name``
    and that master is pinged; the detail names the master they gave.
    """
    location = redis_location(url)
    try:
        connection = redis_connection(url, master_name, socket_timeout=timeout_seconds,
                                      socket_connect_timeout=timeout_seconds)
        try:
            connection.ping()
            master = sentinel_master_address(connection)
        finally:
            connection.close()
    except REDIS_ERRORS as exc:
        raise BrokerUnavailable(f"Redis {role} at {location}: ping failed: {error_name(exc)}") from exc
    if master is None:
        return f"ping ok ({location})"
    return f"ping ok (master {master_name!r} at {master} via {location})"


def sentinel_master_address(connection: redis.Redis) -> str | None:
    """``host:port`` of the master a Sentinel-managed client talks to; None for a plain client."""
    pool = connection.connection_pool
    if not isinstance(pool, SentinelConnectionPool):
        return None
    host, port = pool.get_master_address()
    return f"{host}:{port}"


def workers_by_queue(app: CallqueueCelery, timeout_seconds: float) -> dict[str, list[str]]:
    """Names of the live workers consuming each queue, from ``inspect().active_queues()``."""
    try:
        replies = app.control.inspect(timeout=timeout_seconds).active_queues() or {}
    except REDIS_ERRORS as exc:
        raise BrokerUnavailable(f"worker inspection failed: {type(exc).__name__}") from exc
    consumers: dict[str, list[str]] = {}
    for worker, queues in sorted(replies.items()):
        for queue in queues or []:
            consumers.setdefault(str(queue.get("name")), []).append(worker)
    return consumers


def clock_check(settings: Settings, timeout_seconds: float) -> Check:
    """The workers' clocks against the database's, as each worker last reported it (``workers.clock``).

    Down when a worker has stopped taking messages because its clock is off
    by more than ``CALLQUEUE_MAX_CLOCK_SKEW_SECONDS``.
    """
    try:
        connection = redis_connection(settings.broker_url, settings.redis_sentinel_master,
                                      socket_timeout=timeout_seconds, socket_connect_timeout=timeout_seconds)
        try:
            records = worker_clocks(connection)
        finally:
            connection.close()
    except REDIS_ERRORS as exc:
        return Check("worker clocks", False, f"not read: {error_name(exc)}")
    if not records:
        return Check("worker clocks", True, "no worker has reported its clock")
    skewed = [record for record in records if record.skewed]
    shown = skewed or records
    return Check("worker clocks", not skewed, "; ".join(record.describe() for record in shown)
                 + ("" if skewed else f" (worker minus database; bound {records[0].bound_seconds:g} s)"))


def probe(component: str, action: Callable[[], str]) -> Check:
    """Run one probe; an InfrastructureError becomes a failed check with its message."""
    try:
        return Check(component, True, action())
    except InfrastructureError as exc:
        return Check(component, False, str(exc))


def queue_checks(consumers: dict[str, list[str]], queues: Iterable[str],
                 required_workers: Iterable[str]) -> list[Check]:
    """One check per queue (a worker consumes it) and per worker that must answer."""
    checks = []
    for queue in queues:
        names = consumers.get(queue, [])
        detail = f"{len(names)} worker(s): {', '.join(names)}" if names else "no live worker consumes this queue"
        checks.append(Check(f"queue {queue}", bool(names), detail))
    answering = {name for names in consumers.values() for name in names}
    for worker in required_workers:
        ok = worker in answering
        checks.append(Check(f"worker {worker}", ok, "answers inspect" if ok else "did not answer inspect"))
    return checks


def run_checks(settings: Settings, queues: Iterable[str], required_workers: Iterable[str],
               timeout_seconds: float, check_workers: bool = True) -> list[Check]:
    """Probe every component; worker checks are skipped while the broker is down."""
    checks = [
        probe("mongodb", lambda: ping_mongo(settings, timeout_seconds)),
        mongo_durability(settings, timeout_seconds),
        probe("redis broker", lambda: ping_redis(settings.broker_url, "broker", timeout_seconds,
                                                 settings.redis_sentinel_master)),
        probe("redis result backend", lambda: ping_redis(settings.result_backend, "result backend",
                                                         timeout_seconds, settings.redis_sentinel_master)),
    ]
    if not check_workers:
        return checks
    if not checks[2].ok:
        skipped = [*(f"queue {queue}" for queue in queues), *(f"worker {name}" for name in required_workers)]
        return checks + [Check(name, False, "not checked: the broker is down") for name in skipped]
    app = create_app(settings, include_tasks=False)
    try:
        consumers = workers_by_queue(app, timeout_seconds)
    except BrokerUnavailable as exc:
        return checks + [Check("workers", False, str(exc))]
    finally:
        app.close()
    return checks + queue_checks(consumers, queues, required_workers) + [clock_check(settings, timeout_seconds)]


def render_table(checks: list[Check]) -> Table:
    """A rich table with one row per check."""
    healthy = all(check.ok for check in checks)
    table = Table(title=f"callqueue health: {'healthy' if healthy else 'UNHEALTHY'}")
    table.add_column("component")
    table.add_column("status")
    table.add_column("detail")
    for check in checks:
        status = "[red]DOWN[/red]" if not check.ok else "[yellow]WARN[/yellow]" if check.warning else "[green]up[/green]"
        table.add_row(check.component, status, check.detail)
    return table


def render_json(checks: list[Check]) -> str:
    """The checks as one JSON document with an overall ``healthy`` flag."""
    return json.dumps({"healthy": all(check.ok for check in checks),
                       "checks": [asdict(check) for check in checks]}, indent=2)


@click.command("health")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--timeout", "timeout_seconds", type=click.FloatRange(0.1, 60), default=2.0, show_default=True,
              help="Seconds to wait for each server and for the workers' answers.")
@click.option("--queue", "queues", multiple=True, type=click.Choice(QUEUES),
              help="Queue that must have a live worker (repeatable; default: every queue).")
@click.option("--worker", "required_workers", multiple=True,
              help="Worker node name that must answer, e.g. assignments@host (repeatable).")
@click.option("--no-workers", is_flag=True, help="Check MongoDB and Redis only.")
def health_command(as_json: bool, timeout_seconds: float, queues: tuple[str, ...],
                   required_workers: tuple[str, ...], no_workers: bool) -> None:
    """Check MongoDB, Redis and each queue's workers; exit 1 if anything is down."""
    try:
        settings = load_settings()
    except ConfigurationError as exc:
        click.echo(f"configuration error: {exc}", err=True)
        sys.exit(EXIT_UNHEALTHY)
    checks = run_checks(settings, queues or QUEUES, required_workers, timeout_seconds, not no_workers)
    if as_json:
        click.echo(render_json(checks))
    else:
        Console(width=120).print(render_table(checks))
    sys.exit(EXIT_HEALTHY if all(check.ok for check in checks) else EXIT_UNHEALTHY)


COMMANDS.append(health_command)
