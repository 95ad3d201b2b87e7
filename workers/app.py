"""The Celery application: ``callqueue.workers.app:app``.

Configured for this job: JSON only on the wire (pickle is never accepted),
results in Redis with an expiry, task events on so Flower sees every task,
and two queues: ``assignments`` for the "Get Next Student" path and ``batch``
for imports and bulk jobs, so bulk work never waits in front of a claim.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from celery.signals import after_setup_logger, after_setup_task_logger, beat_init
from kombu import Queue
from kombu.serialization import register as register_serializer
from kombu.utils import json as kombu_json
from kombu.utils.url import parse_url

from callqueue.config import Settings, load_settings
from callqueue.config.redis_urls import TLS_SCHEME, is_sentinel_url
from callqueue.workers.eventlog import JsonFormatter
from callqueue.workers.gate import StoreGate
from callqueue.workers.transport import transport_for

# Deeper than any valid callqueue message (student payloads nest at most 8 levels).
MAX_MESSAGE_DEPTH = 32

ASSIGNMENTS_QUEUE = "assignments"
BATCH_QUEUE = "batch"
BATCH_TASKS = ("callqueue.import_students", "callqueue.complete_batch", "callqueue.close_session",
               "callqueue.reopen_session", "callqueue.set_calling_hours", "callqueue.suppress",
               "callqueue.unsuppress", "callqueue.list_suppressed")


def load_json_bounded(data: bytes | str) -> object:
    """Decode a JSON message, replacing anything nested deeper than ``MAX_MESSAGE_DEPTH`` by a marker.

    The worker pickles decoded arguments to its pool children; a value nested
    a few hundred levels deep overflows that pickling and kills the worker's
    main process. The marker (``{"$too_deep": true}``) fails every argument
    check, so such a call ends in a clean ``invalid_argument``.
    """
    value = kombu_json.loads(data)
    pending = [(value, 1)] if isinstance(value, (dict, list)) else []
    while pending:
        container, depth = pending.pop()
        for key, child in list(container.items() if isinstance(container, dict) else enumerate(container)):
            if isinstance(child, (dict, list)):
                if depth >= MAX_MESSAGE_DEPTH:
                    container[key] = {"$too_deep": True}
                else:
                    pending.append((child, depth + 1))
    return value


register_serializer("json", kombu_json.dumps, load_json_bounded, content_type="application/json",
                    content_encoding="utf-8")


class CallqueueCelery(Celery):
    """A Celery app that carries the callqueue settings it was built from."""

    settings: Settings


def create_app(settings: Settings | None = None, include_tasks: bool = True) -> CallqueueCelery:
    """Build a configured app; producers use one without the task modules."""
    settings = settings or load_settings()
    app = CallqueueCelery(
        "callqueue",
        broker=settings.broker_url,
        backend=settings.result_backend,
        include=["callqueue.workers.tasks"] if include_tasks else [],
        set_as_current=include_tasks,
    )
    app.settings = settings
    app.conf.update(celery_config(settings))
    if include_tasks:
        app.steps["consumer"].add(StoreGate)
    return app


def celery_config(settings: Settings) -> dict:
    """Celery settings derived from ours (kept in one place for the docs and tests)."""
    return {
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "event_serializer": "json",
        "task_queues": [Queue(ASSIGNMENTS_QUEUE), Queue(BATCH_QUEUE)],
        "task_default_queue": ASSIGNMENTS_QUEUE,
        "task_routes": {name: {"queue": BATCH_QUEUE} for name in BATCH_TASKS},
        "task_create_missing_queues": False,
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "task_track_started": False,
        "result_expires": settings.result_expires_seconds,
        "result_extended": False,
        "worker_prefetch_multiplier": settings.worker_prefetch_multiplier,
        "broker_connection_retry_on_startup": True,
        # kombu's Redis (or Sentinel) transport with a fix that keeps the worker alive through a broker
        # restart or a Sentinel failover.
        "broker_transport": transport_for(settings.broker_url),
        # The TLS options of a rediss:// broker URL, as kombu reads them from it; Flower's broker view
        # (queue lengths) takes them only from this setting.
        **broker_tls(settings.broker_url),
        # A task that retries (an outage, a failover) publishes its next run; ride out a Redis restart
        # of a few seconds instead of failing the task over it.
        "task_publish_retry": True,
        "task_publish_retry_policy": {"max_retries": 12, "interval_start": 0.2, "interval_step": 0.5,
                                      "interval_max": 1.0},
        "broker_transport_options": {"visibility_timeout": settings.broker_visibility_timeout_seconds,
                                     **sentinel_options(settings, settings.broker_url)},
        # Storing or reading a result retries through a Redis restart (about 10 s of backoff with
        # jitter) so that a claim already made is still answered instead of ending as a FAILURE.
        "result_backend_always_retry": True,
        "result_backend_max_retries": 20,
        "result_backend_base_sleep_between_retries_ms": 100,
        "result_backend_max_sleep_between_retries_ms": 1000,
        "result_backend_transport_options": {"retry_policy": {
            "max_retries": settings.redis_max_retries, "interval_start": 0.2,
            "interval_step": 0.5, "interval_max": 2.0,
        }, **sentinel_options(settings, settings.result_backend)},
        "worker_hijack_root_logger": True,
        "worker_redirect_stdouts": False,
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "beat_schedule": {
            "reclaim-expired-leases": {
                "task": "callqueue.reclaim_expired",
                "schedule": settings.reclaim_interval_seconds,
                "options": {"expires": settings.reclaim_interval_seconds},
            },
            "promote-due-callbacks-and-retries": {
                "task": "callqueue.promote_due",
                "schedule": settings.promote_interval_seconds,
                "options": {"expires": settings.promote_interval_seconds},
            },
        },
        # Beat stamps each job's expiry from the database's clock, not its host's (workers/beat.py).
        "beat_scheduler": "callqueue.workers.beat:DatabaseClockScheduler",
        "timezone": "UTC",
        "enable_utc": True,
    }


def sentinel_options(settings: Settings, url: str) -> dict[str, str]:
    """``{"master_name": ...}`` for a ``sentinel://`` URL (kombu and Celery ask the sentinels for it), else nothing."""
    return {"master_name": settings.redis_sentinel_master} if is_sentinel_url(url) else {}


def broker_tls(url: str) -> dict[str, dict[str, object]]:
    """``{"broker_use_ssl": {...}}`` with the ``ssl_*`` options of a ``rediss://`` URL, else nothing.

    Celery and kombu would read them from the URL alone; the setting makes
    every other reader of the app's configuration (Flower) check the server the same way.
    """
    if not url.startswith(f"{TLS_SCHEME}://"):
        return {}
    return {"broker_use_ssl": dict(parse_url(url).get("ssl") or {})}


def use_json_logs(logger: logging.Logger, **_: object) -> None:
    """Switch the worker's log handlers to one JSON object per line when configured."""
    if load_settings().log_format == "json":
        for handler in logger.handlers:
            handler.setFormatter(JsonFormatter())


def quiet_beat(sender: Any, **_: object) -> None:
    """Beat publishes its periodic jobs without ``task-sent`` events.

    With the workers sending no events for them either (``send_events=False``
    on ``reclaim_expired`` and ``promote_due``), Flower never lists them:
    otherwise a promotion every few seconds pushes the calls people make off
    its task list. Other producers keep sending ``task-sent`` events.
    """
    sender.app.conf.task_send_sent_event = False


after_setup_logger.connect(use_json_logs)
after_setup_task_logger.connect(use_json_logs)
beat_init.connect(quiet_beat)

app = create_app()
