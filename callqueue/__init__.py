"""callqueue: hand out work from a shared pool to many people at once, atomically, on Celery and MongoDB.

Installed, the project is this one package: ``callqueue.workers`` (the Celery
tasks and the data-access layer; ``celery -A callqueue.workers.app:app``),
``callqueue.producers`` (the client, the command line, the metrics exporter,
the supervisor dashboard) and ``callqueue.config`` (the settings). In the
repository those are the folders ``workers/``, ``producers/`` and ``config/``.

The names most callers need are here (imported on first use, so importing
``callqueue`` connects to nothing and loads no Celery app)::

    from callqueue import AssignmentClient
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "1.0.0"

_EXPORTS = {
    "AssignmentClient": "callqueue.producers.client",
    "Settings": "callqueue.config.settings",
    "load_settings": "callqueue.config.settings",
    "Assigned": "callqueue.producers.results",
    "Completed": "callqueue.producers.results",
    "CallqueueError": "callqueue.workers.exceptions",
    "Rejected": "callqueue.workers.exceptions",
}

__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str) -> Any:
    """``callqueue.AssignmentClient`` and the other names above, from their modules."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'callqueue' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
