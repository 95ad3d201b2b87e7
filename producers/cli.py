"""``python -m producers``: import students, get next, complete, release, stats, campaigns.

Results are printed as JSON on stdout. A rejected request prints the
structured error and exits 2; an unreachable broker or a failed task exits 3.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import click
import redis
from rich.console import Console
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from prometheus_client import CollectorRegistry, start_http_server

from callqueue.config import load_caller_settings
from callqueue.producers.calling_cli import CALLING_COMMANDS
from callqueue.producers.client import AssignmentClient
from callqueue.producers.dashboard.command import dashboard_command
from callqueue.producers.exporter import CallqueueCollector
from callqueue.producers.ops import COMMANDS
from callqueue.producers.output import client_of as _client, emit as _emit, run as _run
from callqueue.producers.results import Exhausted, Press, Stats
from callqueue.producers.rowfile import ITEM_INTEGERS, STUDENT_INTEGERS, read_rows
from callqueue.workers.exceptions import Rejected
from callqueue.workers.metrics import read_counters, redis_client


@click.group()
@click.option("--timeout", "timeout_seconds", type=float, default=None,
              help="Seconds to wait for each answer (default CALLQUEUE_CLIENT_TIMEOUT_SECONDS).")
@click.pass_context
def cli(ctx: click.Context, timeout_seconds: float | None) -> None:
    """Talk to the callqueue workers through the broker."""
    ctx.obj = {"timeout_seconds": timeout_seconds}


def holder_options(command: Callable[..., None]) -> Callable[..., None]:
    """The four options that name one hold: session, student, assistant and token."""
    for option in reversed((
        click.option("--session", "session_id", required=True),
        click.option("--student", "student_id", required=True,
                     help="The student: the id it was imported with (s2) or handed out as (SESSION:s2)."),
        click.option("--assistant", "assistant_id", required=True),
        click.option("--token", "assignment_token", type=int, required=True),
    )):
        command = option(command)
    return command


@cli.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--session", "session_id", required=True, help="Call session id (created if new).")
@click.option("--name", "session_name", default=None, help="Display name of a new session.")
@click.option("--chunk-size", type=click.IntRange(1, 10_000), default=500, show_default=True,
              help="Students per import task.")
@click.option("--route-by", "route_by", default=None, metavar="COLUMN",
              help="Column holding each student's routing tag (e.g. language); empty cells are untagged.")
@click.option("--zone-by", "zone_by", default=None, metavar="COLUMN",
              help="Column holding each student's IANA time zone (e.g. America/Chicago), for calling hours.")
@click.option("--phone-by", "phone_by", default=None, metavar="COLUMN",
              help="Column holding each student's phone number (+12125550100): its zone when --zone-by has none, "
                   "and what do-not-call lists match.")
@click.pass_context
def import_command(ctx: click.Context, path: Path, session_id: str, session_name: str | None,
                   chunk_size: int, route_by: str | None, zone_by: str | None, phone_by: str | None) -> None:
    """Import students from a CSV or JSON file, with a progress bar; rows on a do-not-call list are skipped."""
    rows = _run(lambda: read_rows(path, STUDENT_INTEGERS))
    totals = {"received": 0, "inserted": 0, "duplicates": 0, "suppressed": 0}
    with _client(ctx) as client, _progress() as progress:
        bar = progress.add_task(f"importing into {session_id}", total=len(rows))
        for start in range(0, len(rows), chunk_size):
            chunk = rows[start:start + chunk_size]
            result = _run(lambda: client.import_students(session_id, chunk, session_name, route_by, zone_by,
                                                         phone_by))
            for key in totals:
                totals[key] += getattr(result, key)
            progress.advance(bar, len(chunk))
    _emit({"status": "imported", "call_session_id": session_id, **totals})


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeRemainingColumn(), console=Console(stderr=True))


def press_options(command: Callable[..., None]) -> Callable[..., None]:
    """The options of a "Get Next" press: its request id, the assistant's skills, how long to wait."""
    for option in reversed((
        click.option("--request-id", default=None, help="Reuse to retry the same press safely."),
        click.option("--skill", "skills", multiple=True, metavar="TAG",
                     help="Routing tag the assistant may take besides untagged students (repeatable)."),
        click.option("--wait", "wait_seconds", type=click.FloatRange(0, 3600), default=0.0, metavar="SECONDS",
                     help="When nobody is there but students are scheduled or held, wait up to this long "
                          "for one (sleeping until the next is due)."),
    )):
        command = option(command)
    return command


def completion_options(command: Callable[..., None]) -> Callable[..., None]:
    """The outcome of a call and the callback it may ask for."""
    for option in reversed((
        click.option("--outcome", required=True, help="What came of the call, e.g. reached, voicemail."),
        click.option("--callback-at", default=None, metavar="ISO",
                     help="Call the student back then: ISO-8601 with a zone, e.g. 2026-11-28T17:00:00+01:00."),
        click.option("--callback-assistant", default=None, metavar="ID",
                     help="Reserve the callback for this assistant (during the session's grace period)."),
    )):
        command = option(command)
    return command


def press_answer(answer: Press) -> dict[str, Any]:
    """A press's answer as the task gives it: ``assigned`` with the student, or ``exhausted`` with why and when."""
    return {"status": "exhausted" if isinstance(answer, Exhausted) else "assigned", **answer.__dict__}


@cli.command("next")
@click.option("--session", "session_id", required=True)
@click.option("--assistant", "assistant_id", required=True)
@press_options
@click.pass_context
def next_command(ctx: click.Context, session_id: str, assistant_id: str, request_id: str | None,
                 skills: tuple[str, ...], wait_seconds: float) -> None:
    """Get the next student for an assistant (a due personal callback first)."""
    with _client(ctx) as client:
        answer = _run(lambda: client.wait_for_next(session_id, assistant_id, skills or None, wait_seconds,
                                                   request_id=request_id))
    _emit(press_answer(answer))


@cli.command("complete")
@holder_options
@completion_options
@click.pass_context
def complete_command(ctx: click.Context, session_id: str, student_id: str, assistant_id: str,
                     assignment_token: int, outcome: str, callback_at: str | None,
                     callback_assistant: str | None) -> None:
    """Record the outcome for a student you hold; says whether it is final or the student is called again."""
    with _client(ctx) as client:
        update = _run(lambda: client.complete(session_id, student_id, assistant_id, outcome, assignment_token,
                                              callback_at, callback_assistant))
    _emit(update.__dict__)


@cli.command("complete-next")
@holder_options
@completion_options
@press_options
@click.pass_context
def complete_next_command(ctx: click.Context, session_id: str, student_id: str, assistant_id: str,
                          assignment_token: int, outcome: str, callback_at: str | None,
                          callback_assistant: str | None, request_id: str | None, skills: tuple[str, ...],
                          wait_seconds: float) -> None:
    """Record the outcome for a student you hold and get the next student, in one request ("save and next").

    A refused completion prints the rejection and exits 2 (nothing was
    claimed); a refused press is printed as the answer's ``next``.
    """
    with _client(ctx) as client:
        done = _run(lambda: client.complete_and_next(session_id, student_id, assistant_id, outcome,
                                                     assignment_token, callback_at, callback_assistant,
                                                     request_id, skills or None))
        following = done.next
        if isinstance(following, Exhausted) and wait_seconds:
            following = _run(lambda: client.wait_for_next(session_id, assistant_id, skills or None, wait_seconds,
                                                          after=done.next))
    _emit({"status": "completed_and_next", "call_session_id": session_id, "completion": done.completion.__dict__,
           "next": ({"status": "rejected", "error": following.to_error()} if isinstance(following, Rejected)
                    else press_answer(following))})


@cli.command("release")
@holder_options
@click.pass_context
def release_command(ctx: click.Context, session_id: str, student_id: str, assistant_id: str,
                    assignment_token: int) -> None:
    """Give a student you hold back to the pool."""
    with _client(ctx) as client:
        update = _run(lambda: client.release(session_id, student_id, assistant_id, assignment_token))
    _emit(update.__dict__)


@cli.command("stats")
@click.option("--session", "session_id", required=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--watch", is_flag=True, help="Refresh the table until Ctrl-C.")
@click.option("--interval", type=click.FloatRange(0.2, 3600), default=2.0, show_default=True)
@click.pass_context
def stats_command(ctx: click.Context, session_id: str, as_json: bool, watch: bool, interval: float) -> None:
    """Pending, scheduled, assigned and completed counts, and attempts, for a session."""
    with _client(ctx) as client:
        if not watch:
            stats = _run(lambda: client.stats(session_id))
            if as_json:
                _emit(stats.__dict__)
            else:
                Console().print(stats_table(stats))
            return
        _watch(client, session_id, interval)


def _watch(client: AssignmentClient, session_id: str, interval: float) -> None:
    """Refresh the table until Ctrl-C, with claims per second, completions by what follows them and
    rejections, from the workers' counters."""
    counters = redis_client(client.settings.broker_url, client.settings.redis_sentinel_master)
    events, rejections = _counters_or(counters, ({}, {}))
    previous = (time.monotonic(), events.get("claimed", 0))
    with Live(stats_table(_run(lambda: client.stats(session_id))), refresh_per_second=4) as live:
        try:
            while True:
                time.sleep(interval)
                events, rejections = _counters_or(counters, (events, rejections))
                now = (time.monotonic(), events.get("claimed", 0))
                rate = (now[1] - previous[1]) / (now[0] - previous[0])
                live.update(stats_table(_run(lambda: client.stats(session_id)), rate, rejections, events))
                previous = now
        except KeyboardInterrupt:
            pass


def _counters_or(counters: redis.Redis, last: tuple[dict[str, int], dict[str, int]]
                 ) -> tuple[dict[str, int], dict[str, int]]:
    """The workers' counters, or ``last`` while Redis does not answer (a restart, a Sentinel failover)."""
    try:
        return read_counters(counters)
    except redis.RedisError:
        return last


# The workers' counters shown when watching (all sessions, all time): completions by what follows them.
WATCHED_COUNTERS = (("  completions final (all time)", "completed_final"),
                    ("  completions to be retried (all time)", "completed_retry"),
                    ("  completions with a callback (all time)", "completed_callback"),
                    ("  scheduled students brought back (all time)", "promoted"))


def stats_table(stats: Stats, claims_per_second: float | None = None,
                rejections: dict[str, int] | None = None, events: dict[str, int] | None = None) -> Table:
    """A table of one session's counts, with the workers' rates and counters when watching."""
    table = Table(title=f"call session {stats.call_session_id} ({stats.session_status})")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for label, value in (("total", stats.total), ("pending", stats.pending),
                         ("scheduled callbacks", stats.scheduled_callbacks),
                         ("scheduled retries", stats.scheduled_retries),
                         ("waiting for their calling hours", stats.waiting_for_window),
                         ("on a do-not-call list", stats.suppressed), ("assigned", stats.assigned),
                         ("completed", stats.completed), ("attempts (calls recorded)", stats.attempts),
                         ("assistants holding", len(stats.holders))):
        table.add_row(label, str(value))
    for outcome, count in sorted(stats.completed_by_outcome.items()):
        table.add_row(f"  outcome {outcome}", str(count))
    if claims_per_second is not None:
        table.add_row("claims per second (all sessions)", f"{claims_per_second:.1f}")
    if events is not None:
        for label, event in WATCHED_COUNTERS:
            table.add_row(label, str(events.get(event, 0)))
    for code, count in sorted((rejections or {}).items()):
        table.add_row(f"  rejections {code} (all time)", str(count))
    return table


@cli.command("metrics")
@click.option("--port", type=click.IntRange(1, 65535), default=9808, show_default=True)
@click.option("--address", default="127.0.0.1", show_default=True, help="Address to listen on.")
def metrics_command(port: int, address: str) -> None:
    """Serve the domain figures for Prometheus at http://ADDRESS:PORT/metrics until Ctrl-C."""
    registry = CollectorRegistry()
    registry.register(CallqueueCollector(_run(load_caller_settings)))
    server, thread = start_http_server(port, addr=address, registry=registry)
    click.echo(f"serving callqueue metrics on http://{address}:{port}/metrics", err=True)
    try:
        while thread.is_alive():
            thread.join(1)
    except KeyboardInterrupt:
        server.shutdown()


@cli.command("heartbeat")
@holder_options
@click.pass_context
def heartbeat_command(ctx: click.Context, session_id: str, student_id: str, assistant_id: str,
                      assignment_token: int) -> None:
    """Renew your lease on a student you hold."""
    with _client(ctx) as client:
        update = _run(lambda: client.heartbeat(session_id, student_id, assistant_id, assignment_token))
    _emit(update.__dict__)


@cli.command("log-off")
@click.option("--session", "session_id", required=True)
@click.option("--assistant", "assistant_id", required=True)
@click.pass_context
def log_off_command(ctx: click.Context, session_id: str, assistant_id: str) -> None:
    """Give back whatever the assistant holds in the session."""
    with _client(ctx) as client:
        released = _run(lambda: client.release_assistant(session_id, assistant_id))
    _emit({"status": "ok", "call_session_id": session_id, "assistant_id": assistant_id, "released": released})


@cli.command("lease")
@click.option("--session", "session_id", required=True)
@click.option("--seconds", "lease_seconds", type=click.IntRange(1), default=None,
              help="Lease length for new claims; leave out to remove the lease.")
@click.pass_context
def lease_command(ctx: click.Context, session_id: str, lease_seconds: int | None) -> None:
    """Set or remove the session's lease on assignments."""
    with _client(ctx) as client:
        _emit(_run(lambda: client.set_lease(session_id, lease_seconds)))


def _retry_rule(value: str) -> tuple[str, dict[str, int]]:
    """``OUTCOME=DELAY_SECONDS:MAX_ATTEMPTS`` as ``(outcome, {"delay_seconds", "max_attempts"})``."""
    outcome, equals, rule = value.rpartition("=")
    delay, colon, attempts = rule.partition(":")
    try:
        if not (equals and colon and outcome):
            raise ValueError
        return outcome, {"delay_seconds": int(delay), "max_attempts": int(attempts)}
    except ValueError:
        raise click.BadParameter(f"{value!r} is not OUTCOME=DELAY_SECONDS:MAX_ATTEMPTS "
                                 "(e.g. no_answer=7200:3)", param_hint="--retry") from None


@cli.command("campaign")
@click.option("--session", "session_id", required=True)
@click.option("--retry", "retries", multiple=True, metavar="OUTCOME=DELAY_SECONDS:MAX_ATTEMPTS",
              help="Call a student again DELAY_SECONDS after this outcome, up to MAX_ATTEMPTS calls in all "
                   "(repeatable; replaces the session's rules).")
@click.option("--no-retries", is_flag=True, help="Remove every retry rule: all outcomes are final.")
@click.option("--grace", "grace_seconds", type=click.IntRange(0), default=None, metavar="SECONDS",
              help="How long after its time a personal callback stays reserved for its assistant.")
@click.option("--allow-outcome", "allowed", multiple=True, metavar="OUTCOME",
              help="An outcome completions may record (repeatable; replaces the session's list, and any "
                   "other outcome is then refused).")
@click.option("--any-outcome", is_flag=True, help="Remove the session's list: any outcome is accepted.")
@click.pass_context
def campaign_command(ctx: click.Context, session_id: str, retries: tuple[str, ...], no_retries: bool,
                     grace_seconds: int | None, allowed: tuple[str, ...], any_outcome: bool) -> None:
    """Set a session's retry rules, callback grace period and allowed outcomes; prints the session's settings.

    Without options it only prints them.
    """
    if retries and no_retries:
        raise click.UsageError("give --retry or --no-retries, not both")
    if allowed and any_outcome:
        raise click.UsageError("give --allow-outcome or --any-outcome, not both")
    rules = {} if no_retries else dict(_retry_rule(value) for value in retries) if retries else None
    outcomes = [] if any_outcome else list(allowed) if allowed else None
    with _client(ctx) as client:
        _emit(_run(lambda: client.set_campaign(session_id, rules, grace_seconds, outcomes)))


@cli.command("reclaim")
@click.pass_context
def reclaim_command(ctx: click.Context) -> None:
    """Return students whose lease ran out to the pool now (beat does this on schedule)."""
    with _client(ctx) as client:
        _emit({"status": "ok", "reclaimed": _run(client.reclaim_expired)})


@cli.command("complete-batch")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_context
def complete_batch_command(ctx: click.Context, path: Path) -> None:
    """Complete many students from a CSV or JSON file of items, as one batch job.

    Each item: call_session_id, student_id, outcome, and optionally
    assistant_id with assignment_token. Prints a summary; per-item rejections
    are listed with their codes.
    """
    items = _run(lambda: read_rows(path, ITEM_INTEGERS))
    with _client(ctx) as client:
        result = _with_progress(f"completing {len(items)} items",
                                lambda report: client.complete_batch(items, on_progress=report))
    rejected = [item for item in result["items"] if item["status"] == "rejected"]
    _emit({key: result[key] for key in ("status", "total", "completed", "unchanged", "rejected")}
          | {"rejections": rejected})


@cli.command("close")
@click.option("--session", "session_id", required=True)
@click.option("--outcome", default="session_closed", show_default=True,
              help="Outcome given to every pending student.")
@click.option("--force", is_flag=True, help="Also end the holds of students assigned right now.")
@click.pass_context
def close_command(ctx: click.Context, session_id: str, outcome: str, force: bool) -> None:
    """Close a session: no more claims; pending students get the outcome."""
    with _client(ctx) as client:
        _emit(_with_progress(f"closing {session_id}",
                             lambda report: client.close_session(session_id, outcome, force, on_progress=report)))


@cli.command("reopen")
@click.option("--session", "session_id", required=True)
@click.pass_context
def reopen_command(ctx: click.Context, session_id: str) -> None:
    """Open a closed session again; students it closed return to the pool."""
    with _client(ctx) as client:
        _emit(_run(lambda: client.reopen_session(session_id)))


def _with_progress(label: str, job: Callable[[Callable[[int, int], None]], Any]) -> Any:
    """Run a batch job with a progress bar driven by its PROGRESS updates."""
    with _progress() as progress:
        bar = progress.add_task(label, total=None)

        def report(done: int, total: int) -> None:
            progress.update(bar, completed=done, total=total)

        result = _run(lambda: job(report))
        progress.update(bar, completed=progress.tasks[0].total or 0)
    return result


for _command in (*COMMANDS, *CALLING_COMMANDS):
    cli.add_command(_command)
cli.add_command(dashboard_command)
