"""The demo: 1,000 students, 20 assistants pressing "Get Next" at once, and a summary.

It is also a small campaign: the session lists its outcomes (any other is
refused) and retries unanswered calls (``no_answer``, 2 s later, up to 3
calls), about one call in ten goes
unanswered, and every 25th call of an assistant ends with a personal callback
2 s later. Beat brings due students back every second, and the assistants
keep pressing until every student they may call has a final outcome. Each
assistant records a call and gets the next student in one request
(``complete_and_next``); told "exhausted", it sleeps until the answer's
``next_due_at`` (the client's ``wait_for_next``) instead of polling.

The students live in eight time zones around the world and are called only
between 08:00 and 20:00 of their own time: at any moment some of those zones
are closed, and their students wait for their window (the summary shows who
waits, and that no claim fell outside its student's hours). A few numbers are
on the session's do-not-call list before the import, which skips them.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from shlex import quote
from urllib.parse import urlsplit

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from pymongo import MongoClient
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from devstack.assistants import CALLBACK_OUTCOME, NO_ANSWER, OUTCOMES, AssistantLog, Behaviour, run_assistants
from devstack.audit import AuditReport, audit_session
from callqueue.config.redis_urls import is_sentinel_url
from devstack.servers import PROJECT_ROOT, MongoServer, RedisServer
from devstack.stack import Stack, StackOptions
from callqueue.producers.client import AssignmentClient
from callqueue.workers.hours import WEEKDAYS, CallingHours, placement

console = Console()
# Every outcome the simulated assistants record; the session refuses any other.
DEMO_OUTCOMES = (*OUTCOMES, CALLBACK_OUTCOME)
# Around the world, so that some zones are closed whenever the demo runs (08:00-20:00 covers half a day).
DEMO_ZONES = ("Pacific/Auckland", "Asia/Tokyo", "Asia/Kolkata", "Europe/Berlin", "America/Sao_Paulo",
              "America/New_York", "America/Chicago", "America/Los_Angeles")
DEMO_HOURS = {"days": {day: ["08:00-20:00"] for day in WEEKDAYS}, "default_zone": "America/New_York"}
DO_NOT_CALL_EVERY = 100  # every 100th student's number is on the do-not-call list


@dataclass(frozen=True)
class DemoOptions:
    students: int = 1000
    assistants: int = 20
    call_seconds: float = 0.002
    release_every: int = 25
    hold: bool = False
    no_answer_rate: float = 0.1
    retry_delay_seconds: int = 2
    max_attempts: int = 3
    callback_every: int = 10
    callback_delay_seconds: float = 2.0
    # How often beat brings due retries and callbacks back (CALLQUEUE_PROMOTE_INTERVAL_SECONDS, unless set).
    promote_interval_seconds: float = 1.0
    # How long the assistants keep pressing, after the pool first runs dry, for students still waiting.
    drain_seconds: float = 120.0

    def retry_rules(self) -> dict[str, dict[str, int]]:
        return {NO_ANSWER: {"delay_seconds": self.retry_delay_seconds, "max_attempts": self.max_attempts}}


def run_demo(options: DemoOptions, stack_options: StackOptions) -> bool:
    """Start the stack, run the assistants, print the summary.

    True when nothing was doubled, no assistant saw an error, and every
    student ended with exactly one final outcome.
    """
    environ = {"CALLQUEUE_PROMOTE_INTERVAL_SECONDS": f"{options.promote_interval_seconds:g}", **os.environ}
    with Stack(stack_options, environ=environ) as stack:
        _print_stack(stack)
        session_id = f"demo-{int(time.time())}"
        skipped = _import(stack, session_id, options.students)
        _set_campaign(stack, session_id, options)
        logs, seconds = _work(stack, session_id, options)
        report = _audit(stack, session_id, logs)
        _print_summary(stack, session_id, logs, report, seconds, options, skipped)
        if options.hold:
            _hold(stack, session_id)
        return (report.clean and not any(log.errors for log in logs) and report.pending == report.scheduled == 0
                and report.final_completions == report.completed == report.students - report.waiting_for_window)


def _print_stack(stack: Stack) -> None:
    table = Table(title="callqueue stack", show_header=False)
    if stack.replica_set is not None:
        for number, member in enumerate(stack.replica_set.members, start=1):
            table.add_row(f"MongoDB replica set {stack.replica_set.name}, member {number}",
                          f"127.0.0.1:{member.port} (pid {member.pid})")
    else:
        table.add_row("MongoDB", _where(stack.mongo, stack.env["MONGO_URL"]))
    table.add_row("Redis", _where(stack.redis, stack.env["CELERY_BROKER_URL"]))
    for worker in stack.workers:
        table.add_row(f"worker ({worker.queue})", f"pid {worker.process.pid}")
    if stack.beat:
        table.add_row("beat (reclaims expired leases, brings back due retries and callbacks)",
                      f"pid {stack.beat.process.pid}")
    if stack.flower:
        table.add_row("Flower", f"{stack.flower.url} (pid {stack.flower.process.pid}){_login(stack)}")
    if stack.dashboard:
        table.add_row("supervisor dashboard (no login: 127.0.0.1 only)",
                      f"{stack.dashboard.url}/ (pid {stack.dashboard.process.pid})")
    console.print(table)


def _login(stack: Stack) -> str:
    """``, login USER / PASSWORD`` of the Flower this stack started with a login of its own (a throw-away one)."""
    return "" if stack.flower_login is None else ", login {} / {}".format(*stack.flower_login)


def _where(server: MongoServer | RedisServer | None, url: str) -> str:
    """Where a server is: ours (port and pid), or the external host, never with credentials."""
    if server is None:
        return f"external: {urlsplit(url).netloc.rsplit('@', 1)[-1]}"
    return f"127.0.0.1:{server.port} (pid {server.process.pid})"


def _import(stack: Stack, session_id: str, count: int) -> int:
    """Import the students (calling hours first, so each is placed by its zone's window); how many were skipped."""
    rows = [{"student_id": f"s{n:05d}", "name": f"Student {n}", "phone": f"+1555{n:07d}",
             "tz": DEMO_ZONES[n % len(DEMO_ZONES)], "priority": 1 if n % 10 == 0 else 0} for n in range(count)]
    skipped = 0
    with AssignmentClient(stack.settings) as client, Progress(console=console) as progress:
        listed = [row["phone"] for row in rows[DO_NOT_CALL_EVERY - 1::DO_NOT_CALL_EVERY]]
        if listed:
            client.suppress(listed, call_session_id=session_id)
        bar = progress.add_task(f"importing {count} students", total=count)
        for start in range(0, count, 250):
            result = client.import_students(session_id, rows[start:start + 250], "Demo call session", zone_by="tz",
                                            phone_by="phone")
            skipped += result.suppressed
            if start == 0:
                client.set_calling_hours(session_id, DEMO_HOURS)
            progress.advance(bar, len(rows[start:start + 250]))
    return skipped


def _set_campaign(stack: Stack, session_id: str, options: DemoOptions) -> None:
    """The session's retry rule and its list of outcomes (any other outcome is refused)."""
    with AssignmentClient(stack.settings) as client:
        campaign = client.set_campaign(session_id, options.retry_rules(), allowed_outcomes=DEMO_OUTCOMES)
    for outcome, rule in campaign["retry_rules"].items():
        console.print(f"campaign: {outcome} is called again {rule['delay_seconds']} s later, "
                      f"up to {rule['max_attempts']} calls in all")
    console.print(f"campaign: outcomes allowed: {', '.join(campaign['allowed_outcomes'])}")
    hours = CallingHours.from_document(DEMO_HOURS)
    now = datetime.now(timezone.utc)
    table = Table(title="calling hours: 08:00-20:00 in each student's own time zone", show_header=False)
    for zone in DEMO_ZONES:
        state = "open" if placement(hours, zone, now).open else "closed"
        table.add_row(zone, f"{now.astimezone(ZoneInfo(zone)):%H:%M} local", state)
    console.print(table)


def _work(stack: Stack, session_id: str, options: DemoOptions) -> tuple[list[AssistantLog], float]:
    console.print(f"{options.assistants} assistants pressing \"Get Next Student\" at once ...")
    behaviour = Behaviour(call_seconds=options.call_seconds, release_every=options.release_every,
                          no_answer_rate=options.no_answer_rate, callback_every=options.callback_every,
                          callback_delay_seconds=options.callback_delay_seconds,
                          drain_seconds=options.drain_seconds, one_trip=True)
    assistants = [f"assistant-{n:02d}" for n in range(options.assistants)]
    started = time.perf_counter()
    logs = run_assistants(stack.settings, session_id, assistants, behaviour)
    return logs, time.perf_counter() - started


def _audit(stack: Stack, session_id: str, logs: list[AssistantLog]) -> AuditReport:
    answers = [handout for log in logs for handout in log.handouts]
    completions = [answer for log in logs for answer in log.completions]
    with MongoClient(stack.settings.mongo_url) as mongo:
        return audit_session(mongo[stack.settings.mongo_db], session_id, answers, completions=completions)


def _print_summary(stack: Stack, session_id: str, logs: list[AssistantLog], report: AuditReport,
                   seconds: float, options: DemoOptions, skipped: int) -> None:
    assigned = sum(len(log.handouts) for log in logs)
    table = Table(title=f"summary of {session_id}", show_header=False)
    requests = sum(log.presses + log.released for log in logs)
    rows = [
        ("students", report.students),
        ("skipped at import (do-not-call list)", skipped),
        ("assigned (hand-outs)", assigned),
        ("completed", report.completed),
        ("calls recorded (attempts)", report.attempts),
        (f"retries scheduled ({NO_ANSWER}, {options.retry_delay_seconds} s later)", report.retries),
        ("callbacks scheduled", report.callbacks),
        ("  taken by the assistant who asked", f"{report.personal_callbacks_kept} of {report.personal_callbacks}"),
        ("students with a final outcome", report.final_completions),
        ("released and handed out again", sum(log.released for log in logs)),
        ("still pending", report.pending),
        ("still waiting for a retry or callback", report.scheduled),
        ("waiting for their calling hours (zone closed)", report.waiting_for_window),
        ("claims outside the student's calling hours", len(report.claims_outside_hours)),
        ("students handed to two assistants", len(report.double_handouts) + len(report.tokens_given_twice)),
        ("students given two final outcomes", len(report.completed_twice)),
        ("attempts not matching the history", len(report.attempts_not_matching_history)),
        ("assistants holding two students", len(report.assistants_holding_two)),
        ("errors seen by assistants", sum(len(log.errors) for log in logs)),
        ("wall time", f"{seconds:.2f} s"),
        ("requests: first presses, save-and-next, releases", requests),
        ("waits for a scheduled or held student (exhausted, then wait_for_next)", sum(log.waits for log in logs)),
        ("throughput", f"{assigned / seconds:.0f} assignments/s, {requests / seconds:.0f} requests/s"),
    ]
    for label, value in rows:
        table.add_row(label, str(value))
    console.print(table)
    if stack.flower:
        console.print(f"Flower: {stack.flower.url}/tasks{_login(stack)}", highlight=False)
    if stack.dashboard:
        console.print(f"Supervisor dashboard: {stack.dashboard.url}/session?id={session_id}", highlight=False)
    console.print("[green]no student was handed to two assistants[/green]" if report.clean
                  else "[red]DOUBLE HAND-OUT DETECTED[/red]")


def _hold(stack: Stack, session_id: str) -> None:
    for line in handover_lines(stack, session_id, _interpreter()):
        console.out(line, highlight=False)  # as is: no markup, no wrapping, so that it pastes
    console.print("The stack keeps running; press Ctrl-C to stop everything.")
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        console.print("stopping ...")


# What a shell needs to reach the demo's stack: the CLI and the client read these.
SERVER_VARIABLES = ("MONGO_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND")


def handover_lines(stack: Stack, session_id: str, python: str) -> list[str]:
    """Lines to paste into another shell: ``cd`` here, ``export`` every setting the CLI and the client need
    for this stack (and Flower's address and login), then two commands to try.

    Servers named by the environment the demo ran with are not repeated (their URLs may hold passwords):
    a comment names those variables instead.
    """
    ours = {}
    if stack.mongo is not None or stack.replica_set is not None:
        ours["MONGO_URL"] = stack.env["MONGO_URL"]
    ours["MONGO_DB"] = stack.settings.mongo_db
    if stack.redis is not None:
        ours |= {name: stack.env[name] for name in ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND")}
    elif is_sentinel_url(stack.settings.broker_url):
        ours["CALLQUEUE_REDIS_SENTINEL_MASTER"] = stack.settings.redis_sentinel_master
    lines = ["# To reach this stack from another shell, paste:", f"cd {quote(PROJECT_ROOT)}"]
    lines += [f"export {name}={quote(value)}" for name, value in ours.items()]
    theirs = [name for name in SERVER_VARIABLES if name not in ours]
    if theirs:
        lines.append(f"# and {', '.join(theirs)} as in the environment the demo ran with "
                     "(not repeated here: they may hold passwords)")
    second_try = f"{python} -m producers health"
    if stack.flower is not None and stack.flower_login is not None:
        login = quote(":".join(stack.flower_login))
        lines.append(f"export FLOWER_URL={quote(stack.flower.url)} FLOWER_BASIC_AUTH={login}")
        second_try = 'curl -su "$FLOWER_BASIC_AUTH" "$FLOWER_URL/api/workers?status=true"'
    return [*lines, "# then try:", f"{python} -m producers stats --session {quote(session_id)}", second_try]


def _interpreter() -> str:
    """This Python, as a command run from the project's folder (``.venv/bin/python`` under ``make demo``)."""
    inside = os.path.commonpath([sys.executable, PROJECT_ROOT]) == PROJECT_ROOT
    return quote(os.path.relpath(sys.executable, PROJECT_ROOT) if inside else sys.executable)
