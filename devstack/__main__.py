"""``python -m devstack``: the embedded stack and the demo."""

from __future__ import annotations

import sys

import click

from devstack.demo import DemoOptions, run_demo
from devstack.stack import StackOptions


@click.group()
def main() -> None:
    """Run callqueue on this machine with real servers on loopback ports."""


@main.command()
@click.option("--students", type=click.IntRange(1, 100_000), default=1000, show_default=True)
@click.option("--assistants", type=click.IntRange(1, 200), default=20, show_default=True)
@click.option("--hold", is_flag=True, help="Keep the stack (and Flower) running after the summary until Ctrl-C.")
@click.option("--concurrency", type=click.IntRange(1, 64), default=2, show_default=True,
              help="Processes in the assignments worker pool.")
@click.option("--replica-set", "replica_set_members", type=click.IntRange(0, 7), default=0, show_default=True,
              help="Run MongoDB as a replica set of this many members (0: one standalone mongod).")
def demo(students: int, assistants: int, hold: bool, concurrency: int, replica_set_members: int) -> None:
    """Import students, let assistants work through them at once, print a summary."""
    try:
        clean = run_demo(DemoOptions(students=students, assistants=assistants, hold=hold),
                         StackOptions(assignment_concurrency=concurrency, replica_set_members=replica_set_members,
                                      dashboard=True))
    except KeyboardInterrupt:
        click.echo("interrupted; every process was stopped", err=True)
        sys.exit(130)
    sys.exit(0 if clean else 1)


if __name__ == "__main__":
    main()
