"""``python -m producers`` commands for calling hours and do-not-call lists: ``hours``, ``suppress``,
``unsuppress``, ``suppressed``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from callqueue.producers.output import client_of, emit, run

WEEKDAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
CALLING_COMMANDS: list[click.Command] = []


def _day_range(value: str) -> tuple[list[str], str]:
    """``DAYS=START-END`` (``mon-fri=09:00-20:00``, ``sat=10:00-16:00``) as (days, range)."""
    days, equals, text = value.partition("=")
    first, dash, last = days.partition("-")
    if not equals or first not in WEEKDAY_NAMES or (dash and last not in WEEKDAY_NAMES):
        raise click.BadParameter(f"{value!r} is not DAY=START-END or DAY-DAY=START-END "
                                 "(e.g. mon-fri=09:00-20:00)", param_hint="--day")
    start = WEEKDAY_NAMES.index(first)
    end = WEEKDAY_NAMES.index(last) if dash else start
    return list(WEEKDAY_NAMES[start:end + 1]), text


@click.command("hours")
@click.option("--session", "session_id", required=True)
@click.option("--day", "days", multiple=True, metavar="DAYS=START-END",
              help="Calling hours in the student's local time, e.g. mon-fri=09:00-20:00 (repeatable; a day "
                   "left out has none).")
@click.option("--zone", "default_zone", default=None, metavar="IANA_ZONE",
              help="Zone of students whose own zone is unknown, e.g. America/New_York.")
@click.option("--holiday", "holidays", multiple=True, metavar="YYYY-MM-DD", help="A date without calling (repeatable).")
@click.option("--unknown-zone", type=click.Choice(["default_zone", "not_called"]), default="default_zone",
              show_default=True, help="What happens to students whose zone is unknown.")
@click.option("--callbacks-outside-hours", is_flag=True,
              help="Keep callbacks asked for outside the hours instead of refusing them.")
@click.option("--last-call", "last_call_seconds", type=click.IntRange(0, 3600), default=60, show_default=True,
              metavar="SECONDS", help="How long before a window ends the last student is handed out.")
@click.option("--none", "remove", is_flag=True, help="Remove the session's calling hours.")
@click.pass_context
def hours_command(ctx: click.Context, session_id: str, days: tuple[str, ...], default_zone: str | None,
                  holidays: tuple[str, ...], unknown_zone: str, callbacks_outside_hours: bool,
                  last_call_seconds: int, remove: bool) -> None:
    """Set (or with --none remove) a session's calling hours; every student is placed by them at once."""
    if remove == bool(days or default_zone):
        raise click.UsageError("give --day and --zone, or --none")
    hours: dict[str, Any] | None = None
    if not remove:
        if default_zone is None:
            raise click.UsageError("--zone is needed with --day")
        ranges: dict[str, list[str]] = {}
        for value in days:
            names, text = _day_range(value)
            for name in names:
                ranges.setdefault(name, []).append(text)
        hours = {"days": ranges, "default_zone": default_zone, "holidays": list(holidays),
                 "unknown_zone": unknown_zone, "callbacks_outside_hours": callbacks_outside_hours,
                 "last_call_seconds": last_call_seconds}
    with client_of(ctx) as client:
        emit(run(lambda: client.set_calling_hours(session_id, hours)))


def _list_options(command: Any) -> Any:
    """The entries of a do-not-call command: numbers, student ids, a file of numbers, the session."""
    for option in reversed((
        click.option("--session", "session_id", default=None,
                     help="The session whose list it is (default: the list for every session)."),
        click.option("--number", "numbers", multiple=True, metavar="PHONE", help="+12125550100 (repeatable)."),
        click.option("--numbers-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
                     help="A file of phone numbers, one per line."),
        click.option("--student", "student_ids", multiple=True, metavar="ID",
                     help="A student id as handed out (repeatable; needs --session)."),
    )):
        command = option(command)
    return command


def _numbers(numbers: tuple[str, ...], numbers_file: Path | None) -> list[str] | None:
    lines = [] if numbers_file is None else [line.strip() for line in numbers_file.read_text().splitlines()]
    found = [*numbers, *(line for line in lines if line)]
    return found or None


@click.command("suppress")
@_list_options
@click.pass_context
def suppress_command(ctx: click.Context, session_id: str | None, numbers: tuple[str, ...],
                     numbers_file: Path | None, student_ids: tuple[str, ...]) -> None:
    """Put numbers and students on a do-not-call list: none of them is handed out from now on."""
    with client_of(ctx) as client:
        emit(run(lambda: client.suppress(_numbers(numbers, numbers_file), list(student_ids) or None, session_id)))


@click.command("unsuppress")
@_list_options
@click.pass_context
def unsuppress_command(ctx: click.Context, session_id: str | None, numbers: tuple[str, ...],
                       numbers_file: Path | None, student_ids: tuple[str, ...]) -> None:
    """Take numbers and students off a do-not-call list (later imports no longer skip them)."""
    with client_of(ctx) as client:
        emit(run(lambda: client.unsuppress(_numbers(numbers, numbers_file), list(student_ids) or None, session_id)))


@click.command("suppressed")
@click.option("--session", "session_id", default=None,
              help="The session whose list to print (default: the list for every session).")
@click.pass_context
def suppressed_command(ctx: click.Context, session_id: str | None) -> None:
    """Print a whole do-not-call list, page by page."""
    entries: list[dict[str, Any]] = []
    after: str | None = None
    with client_of(ctx) as client:
        while True:
            page = run(lambda: client.list_suppressed(session_id, after, 1000))
            entries.extend(page["entries"])
            if (after := page["next"]) is None:
                break
    emit({"status": "ok", "call_session_id": session_id, "entries": entries})


CALLING_COMMANDS.extend([hours_command, suppress_command, unsuppress_command, suppressed_command])
