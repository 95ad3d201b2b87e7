"""What the supervision indexes cost the claim: hold cycles per second with and without them.

``python -m devstack.claim_cost_probe`` starts a mongod of its own, seeds the
same session into two databases (one with every index of
``workers.store.ensure_indexes``, one without the indexes only the
supervision stage reads: ``SUPERVISION_INDEXES``), and lets ``--desks``
threads, each with its own ``MongoClient``, claim and complete students
through ``AssignmentStore`` for ``--seconds`` in each database, alternating
``--rounds`` times so that both see the same machine load. It prints the
median claims per second of each and their ratio, and stops the mongod by PID.
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path

import click
from pymongo import MongoClient

from devstack.servers import MongoServer
from callqueue.workers.store import STUDENTS, AssignmentStore, CompletionPlan, NewStudent, ensure_indexes
from callqueue.workers.store.documents import SUPERVISION_INDEXES

WITH, WITHOUT = "with supervision indexes", "without"


def seed(client: MongoClient, name: str, students: int, supervision_indexes: bool) -> None:
    """A fresh database holding one session of ``students`` pending students."""
    client.drop_database(name)
    database = client[name]
    ensure_indexes(database)
    rows = [NewStudent({"name": f"Student {n:06d}", "phone": f"+1555{n:07d}"}, key=f"s{n:06d}")
            for n in range(students)]
    AssignmentStore(database).import_students("probe", "probe", rows)
    if not supervision_indexes:
        for index in SUPERVISION_INDEXES:
            database[STUDENTS].drop_index(index.document["name"])


def hold_cycles(url: str, name: str, desks: int, seconds: float) -> float:
    """Claims per second of ``desks`` threads, each claiming then completing, for ``seconds``."""
    counts = [0] * desks
    ready = threading.Barrier(desks + 1)
    stop_at: list[float] = []

    def desk(index: int) -> None:
        with MongoClient(url, tz_aware=True) as client:
            store = AssignmentStore(client[name])
            session = store.require_session("probe")
            ready.wait()
            while time.monotonic() < stop_at[0]:
                assistant = f"desk-{index}"
                held = store.assign_next(session, assistant, uuid.uuid4().hex)
                if held is None:
                    return
                store.complete("probe", held.student_id, assistant, held.assignment_token,
                               CompletionPlan("reached"), uuid.uuid4().hex)
                counts[index] += 1

    threads = [threading.Thread(target=desk, args=(index,)) for index in range(desks)]
    for thread in threads:
        thread.start()
    stop_at.append(time.monotonic() + seconds + 0.5)
    ready.wait()
    started = time.monotonic()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.monotonic() - started)


@click.command()
@click.option("--students", type=click.IntRange(1000), default=60_000, show_default=True)
@click.option("--desks", type=click.IntRange(1, 64), default=8, show_default=True)
@click.option("--seconds", type=click.FloatRange(1), default=5.0, show_default=True)
@click.option("--rounds", type=click.IntRange(1, 20), default=3, show_default=True)
def main(students: int, desks: int, seconds: float, rounds: int) -> None:
    """Claims per second with and without the supervision indexes, on a mongod of its own."""
    with tempfile.TemporaryDirectory(prefix="claim-cost-") as workdir:
        server = MongoServer(Path(workdir))
        try:
            server.start()
            with MongoClient(server.url, tz_aware=True) as client:
                results: dict[str, list[float]] = {WITH: [], WITHOUT: []}
                for number in range(rounds):
                    for label, indexed in ((WITH, True), (WITHOUT, False)):
                        seed(client, label.replace(" ", "_"), students, indexed)
                        rate = hold_cycles(server.url, label.replace(" ", "_"), desks, seconds)
                        results[label].append(rate)
                        click.echo(f"round {number + 1}: {label}: {rate:.0f} claims/s (each claim completed)")
        finally:
            server.stop()
    with_rate, without_rate = (statistics.median(results[label]) for label in (WITH, WITHOUT))
    click.echo(f"median: {with_rate:.0f} claims/s with the supervision indexes, {without_rate:.0f} without; "
               f"ratio {with_rate / without_rate:.3f}")


if __name__ == "__main__":
    main()
