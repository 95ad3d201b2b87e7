"""``python -m producers``."""

from callqueue.producers.cli import cli

if __name__ == "__main__":
    cli(prog_name="python -m producers")
