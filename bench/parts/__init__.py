"""The registry of benchmark parts, in the order a run measures them.

Adding a part: one module in this package with a ``Part`` subclass
(``bench.harness.core``) and a module-level ``PART``, and one line below.
"""

from __future__ import annotations

from bench.harness.core import Part
from bench.parts import (
    calling_hours, campaigns, celery, drain, engine, failover, huge_sessions, many_sessions, open_loop, session_size,
)

PARTS: list[Part] = [
    engine.PART,
    session_size.PART,
    celery.PART,
    open_loop.PART,
    many_sessions.PART,
    huge_sessions.PART,
    drain.PART,
    campaigns.PART,
    calling_hours.PART,
    failover.PART,
]

