"""The demo: 1,000 students, 20 assistants pressing "Get Next" at once, and a summary."""

from __future__ import annotations

import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from pymongo import MongoClient
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from devstack.assistants import AssistantLog, Behaviour, run_assistants
from devstack.audit import AuditReport, audit_session
from devstack.servers import MongoServer, RedisServer
from devstack.stack import Stack, StackOptions
from producers.client import AssignmentClient

console = Console()


@dataclass(frozen=True)
class DemoOptions:
    students: int = 1000
    assistants: int = 20
    call_seconds: float = 0.002
    release_every: int = 25
    hold: bool = False


def run_demo(options: DemoOptions, stack_options: StackOptions) -> bool:
    """Start the stack, run the assistants, print the summary; True when nothing was doubled."""
    with Stack(stack_options) as stack:
        _print_stack(stack)
        session_id = f"demo-{int(time.time())}"
        _import(stack, session_id, options.students)
        logs, seconds = _work(stack, session_id, options)
        report = _audit(stack, session_id, logs)
        _print_summary(stack, session_id, logs, report, seconds)
        if options.hold:
            _hold(stack)
        return report.clean and not any(log.errors for log in logs)


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
        table.add_row("beat (reclaims expired leases)", f"pid {stack.beat.process.pid}")
    if stack.flower:
        table.add_row("Flower", f"{stack.flower.url} (pid {stack.flower.process.pid})")
    console.print(table)


def _where(server: MongoServer | RedisServer | None, url: str) -> str:
    """Where a server is: ours (port and pid), or the external host, never with credentials."""
    if server is None:
        return f"external: {urlsplit(url).netloc.rsplit('@', 1)[-1]}"
    return f"127.0.0.1:{server.port} (pid {server.process.pid})"


def _import(stack: Stack, session_id: str, count: int) -> None:
    rows = [{"student_id": f"s{n:05d}", "name": f"Student {n}", "phone": f"+1555{n:07d}",
             "priority": 1 if n % 10 == 0 else 0} for n in range(count)]
    with AssignmentClient(stack.settings) as client, Progress(console=console) as progress:
        bar = progress.add_task(f"importing {count} students", total=count)
        for start in range(0, count, 250):
            client.import_students(session_id, rows[start:start + 250], "Demo call session")
            progress.advance(bar, len(rows[start:start + 250]))


def _work(stack: Stack, session_id: str, options: DemoOptions) -> tuple[list[AssistantLog], float]:
    console.print(f"{options.assistants} assistants pressing \"Get Next Student\" at once ...")
    behaviour = Behaviour(call_seconds=options.call_seconds, release_every=options.release_every)
    assistants = [f"assistant-{n:02d}" for n in range(options.assistants)]
    started = time.perf_counter()
    logs = run_assistants(stack.settings, session_id, assistants, behaviour)
    return logs, time.perf_counter() - started


def _audit(stack: Stack, session_id: str, logs: list[AssistantLog]) -> AuditReport:
    answers = [handout for log in logs for handout in log.handouts]
    with MongoClient(stack.settings.mongo_url) as mongo:
        return audit_session(mongo[stack.settings.mongo_db], session_id, answers)


def _print_summary(stack: Stack, session_id: str, logs: list[AssistantLog], report: AuditReport,
                   seconds: float) -> None:
    assigned = sum(len(log.handouts) for log in logs)
    table = Table(title=f"summary of {session_id}", show_header=False)
    rows = [
        ("students", report.students),
        ("assigned (hand-outs)", assigned),
        ("completed", report.completed),
        ("released and handed out again", sum(log.released for log in logs)),
        ("still pending", report.pending),
        ("students handed to two assistants", len(report.double_handouts) + len(report.tokens_given_twice)),
        ("students completed twice", len(report.completed_twice)),
        ("assistants holding two students", len(report.assistants_holding_two)),
        ("errors seen by assistants", sum(len(log.errors) for log in logs)),
        ("wall time", f"{seconds:.2f} s"),
        ("throughput", f"{assigned / seconds:.0f} assignments/s, "
                       f"{(assigned + sum(log.completed + log.released for log in logs)) / seconds:.0f} tasks/s"),
    ]
    for label, value in rows:
        table.add_row(label, str(value))
    console.print(table)
    if stack.flower:
        console.print(f"Flower: {stack.flower.url}/tasks")
    console.print("[green]no student was handed to two assistants[/green]" if report.clean
                  else "[red]DOUBLE HAND-OUT DETECTED[/red]")


def _hold(stack: Stack) -> None:
    console.print("The stack keeps running; press Ctrl-C to stop everything.")
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        console.print("stopping ...")
