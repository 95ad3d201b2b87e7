"""One structured log line per claim, completion, release and rejection.

Fields: event, session, assistant, student, token, request id, duration.
``CALLQUEUE_LOG_FORMAT=json`` turns each line into a JSON object.
"""

from __future__ import annotations

import json
import logging
from typing import Any

logger = logging.getLogger("callqueue.events")



def log_event(event: str, **fields: Any) -> None:
    """Log ``event`` with its fields as one line (``key=value`` or JSON)."""
    record = {"event": event, **{key: value for key, value in fields.items() if value is not None}}
    logger.info("%s", _render(record), extra={"callqueue": record})


def _render(record: dict[str, Any]) -> str:
    return " ".join(f"{key}={json.dumps(value, default=str)}" for key, value in record.items())


class JsonFormatter(logging.Formatter):
    """Formats every record as one JSON object (used when log_format is json)."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
        }
        fields = getattr(record, "callqueue", None)
        if fields:
            payload.update(fields)
        else:
            payload["message"] = record.getMessage()
        if record.exc_info:
            payload["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)
