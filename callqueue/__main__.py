"""``python -m callqueue``: the command line (the same as the ``callqueue`` script and ``python -m producers``)."""

from callqueue.producers.cli import cli

if __name__ == "__main__":
    cli(prog_name="callqueue")
