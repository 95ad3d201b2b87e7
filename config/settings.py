"""One typed settings object, read from environment variables.

Every value has a working default for a developer machine; production sets
the URLs (see ``.env.example``). Durations carry their unit in the name.
Nothing here connects to anything: reading settings is always safe.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from callqueue.config.redis_urls import check_tls_options, is_sentinel_url, parse_sentinel_url
from callqueue.workers.exceptions import ConfigurationError

ENV_PREFIX_FREE = {
    "mongo_url": "MONGO_URL",
    "mongo_db": "MONGO_DB",
    "broker_url": "CELERY_BROKER_URL",
    "result_backend": "CELERY_RESULT_BACKEND",
}


@dataclass(frozen=True)
class Settings:
    """Configuration shared by workers, producers, the demo and the benchmark."""

    # MongoDB connection string; credentials belong here, never in task arguments.
    mongo_url: str = "mongodb://127.0.0.1:27017/"
    # Database holding call_sessions and call_session_students.
    mongo_db: str = "callqueue"
    # How long pymongo looks for a server before an operation counts as an outage.
    mongo_server_selection_timeout_seconds: float = 5.0
    # Deadline of each MongoDB operation on the "Get Next" path (pymongo timeoutMS): server selection,
    # the operation, waiting for a majority, and pymongo's own retry. A frozen or cut-off primary
    # holds an operation no longer than this; the task then retries as a failover.
    mongo_operation_timeout_seconds: float = 2.0
    # The same deadline for bulk work (import, batch completion, close, reopen, reclaim, statistics).
    mongo_batch_operation_timeout_seconds: float = 60.0
    # How often pymongo checks each replica-set member (heartbeatFrequencyMS); a frozen member is
    # noticed within about this plus the server selection timeout.
    mongo_heartbeat_seconds: float = 2.0
    # Celery broker (Redis): redis://, rediss://, or sentinel://host:port/0;sentinel://host:port/0 for Sentinel.
    broker_url: str = "redis://127.0.0.1:6379/0"
    # Celery result backend (Redis, same schemes); results are JSON and expire.
    result_backend: str = "redis://127.0.0.1:6379/1"
    # Name of the Redis master the sentinels watch; used only by sentinel:// URLs.
    redis_sentinel_master: str = "callqueue"
    # Reconnection attempts to the result backend before a call gives up.
    redis_max_retries: int = 3
    # How long a task result stays in Redis.
    result_expires_seconds: int = 3600
    # Redis redelivers an unacknowledged task after this long (late acks).
    broker_visibility_timeout_seconds: int = 3600
    # Retries of a task that met an unreachable MongoDB before it fails visibly.
    task_max_retries: int = 5
    # Upper bound of the exponential backoff between those retries.
    task_retry_backoff_max_seconds: int = 30
    # Countdown before a task that met a replica-set failover (no usable primary) runs again:
    # short and fixed, because an election ends within seconds.
    task_failover_retry_delay_seconds: float = 0.25
    # How long a task keeps retrying a failover before it fails visibly.
    task_failover_retry_window_seconds: float = 60.0
    # How often each worker checks that it can reach a primary; a worker that cannot stops taking
    # messages until it can again, so that workers that can serve them do (0 turns the check off).
    # The same check compares the worker's clock with the database's.
    worker_store_check_seconds: float = 0.5
    # Largest difference between a worker's clock and the database's before the worker stops taking
    # messages (Celery judges a message's expiry on the worker's clock); it takes them again once the
    # difference is back within this bound.
    max_clock_skew_seconds: float = 1.0
    # How long the producer client waits for one answer before it retries.
    client_timeout_seconds: float = 10.0
    # How many times the producer client resends a request that timed out.
    client_retries: int = 3
    # How long a worker trusts that a session is open before reading it again (see workers/session_cache.py).
    session_cache_seconds: float = 1.0
    # Longest accepted id (session, student, assistant, request) or outcome.
    max_id_length: int = 128
    # Largest accepted student payload, in bytes of compact JSON.
    max_student_bytes: int = 16_384
    # Most students accepted by one import_students call.
    max_import_students: int = 10_000
    # Most items accepted by one complete_batch job.
    max_batch_items: int = 50_000
    # Items written per bulk write in a complete_batch job (one PROGRESS update each).
    batch_chunk_size: int = 1_000
    # Pause between those bulk writes, so a long job leaves room for "Get Next" on shared servers.
    batch_pause_seconds: float = 0.05
    # How often beat runs reclaim_expired to return students whose lease ran out.
    reclaim_interval_seconds: float = 10.0
    # Longest lease a session may set.
    max_lease_seconds: int = 86_400
    # How often beat runs promote_due, which returns students whose callback or retry time has come
    # to the pool: a due student becomes claimable within this interval.
    promote_interval_seconds: float = 5.0
    # How long after its time a personal callback stays reserved for its assistant, for a session that
    # has not set its own (set_campaign); after that anyone may take it.
    callback_grace_seconds: int = 900
    # Longest retry delay a session's rules may set, and farthest ahead a callback may be scheduled.
    max_schedule_ahead_seconds: int = 366 * 86_400
    # Most skills one press may carry (each is one more index range the claim merges).
    max_skills: int = 32
    # Most retry rules (outcomes) one session may declare.
    max_retry_rules: int = 50
    # Most attempts one retry rule may allow.
    max_attempts_limit: int = 100
    # Most outcomes one session's list of allowed outcomes may name (set_campaign).
    max_outcomes: int = 100
    # Most calling-hours ranges one weekday may have.
    max_ranges_per_day: int = 8
    # Most holidays one session's calling hours may list.
    max_holidays: int = 500
    # Most phone numbers and student ids one suppress or unsuppress call may carry.
    max_suppression_entries: int = 10_000
    # Most do-not-call entries one list_suppressed call returns.
    max_suppression_page: int = 1_000
    # How long the producer client waits for a batch job to finish.
    batch_timeout_seconds: float = 600.0
    # Students written to MongoDB per insert_many during an import.
    import_chunk_size: int = 1_000
    # Messages a worker process reserves ahead of the one it runs.
    worker_prefetch_multiplier: int = 4
    # "json" for one JSON object per log line, "text" for human-readable lines.
    log_format: str = "text"
    # Time zone (IANA name) in which "today" starts for per-assistant figures (assistant_stats, the dashboard).
    stats_time_zone: str = "UTC"
    # Address and port the supervisor dashboard (python -m producers dashboard) listens on.
    dashboard_address: str = "127.0.0.1"
    dashboard_port: int = 5556
    # Shortest pause between two reads of the figures the dashboard shows: one shared read per process,
    # however many browsers watch; a read that takes long lengthens the pause (see producers/dashboard/live.py).
    dashboard_poll_seconds: float = 2.0
    # Sessions per page of the dashboard's sessions list.
    dashboard_page_size: int = 25
    # How long a dashboard login lasts.
    dashboard_login_hours: float = 12.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        """Build settings from ``environ`` (default ``os.environ``).

        Each field is read from its upper-case name with a ``CALLQUEUE_``
        prefix, except the four well-known names (``MONGO_URL``,
        ``MONGO_DB``, ``CELERY_BROKER_URL``, ``CELERY_RESULT_BACKEND``).
        """
        environ = os.environ if environ is None else environ
        values = {}
        for field in fields(cls):
            name = ENV_PREFIX_FREE.get(field.name, f"CALLQUEUE_{field.name.upper()}")
            raw = environ.get(name)
            if raw is not None and raw != "":
                values[field.name] = _convert(name, raw, field.type)
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        """Raise ConfigurationError naming the variable to fix."""
        if self.log_format not in ("json", "text"):
            raise ConfigurationError("CALLQUEUE_LOG_FORMAT must be 'json' or 'text'")
        if not self.mongo_url.startswith(("mongodb://", "mongodb+srv://")):
            raise ConfigurationError("MONGO_URL must start with mongodb:// or mongodb+srv://")
        self._check_redis_urls()
        if self.promote_interval_seconds <= 0 or self.callback_grace_seconds < 0 or self.max_skills < 0:
            raise ConfigurationError("CALLQUEUE_PROMOTE_INTERVAL_SECONDS must be positive, "
                                     "CALLQUEUE_CALLBACK_GRACE_SECONDS and CALLQUEUE_MAX_SKILLS not negative")
        if self.max_clock_skew_seconds <= 0:
            raise ConfigurationError("CALLQUEUE_MAX_CLOCK_SKEW_SECONDS must be positive")
        if self.client_timeout_seconds <= 0 or self.max_id_length < 1:
            raise ConfigurationError("timeouts and limits must be positive")
        if min(self.mongo_operation_timeout_seconds, self.mongo_batch_operation_timeout_seconds,
               self.mongo_heartbeat_seconds, self.task_failover_retry_delay_seconds) <= 0:
            raise ConfigurationError("MongoDB timeouts and the failover retry delay must be positive")
        self._check_dashboard()
        if "retrywrites=false" in self.mongo_url.lower().replace(" ", ""):
            raise ConfigurationError("MONGO_URL must not turn off retryable writes (retryWrites=false): "
                                     "a claim interrupted by a failover relies on them")

    def _check_dashboard(self) -> None:
        """The time zone exists, and the dashboard's numbers are usable."""
        try:
            ZoneInfo(self.stats_time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigurationError(f"CALLQUEUE_STATS_TIME_ZONE={self.stats_time_zone!r} is not a known time zone "
                                     "(an IANA name such as Europe/Paris, or UTC)") from None
        if not 1 <= self.dashboard_port <= 65535:
            raise ConfigurationError("CALLQUEUE_DASHBOARD_PORT must be a TCP port (1-65535)")
        if self.dashboard_poll_seconds < 0.2 or self.dashboard_page_size < 1 or self.dashboard_login_hours <= 0:
            raise ConfigurationError("CALLQUEUE_DASHBOARD_POLL_SECONDS must be at least 0.2, "
                                     "CALLQUEUE_DASHBOARD_PAGE_SIZE and CALLQUEUE_DASHBOARD_LOGIN_HOURS positive")

    def _check_redis_urls(self) -> None:
        """Both Redis URLs are redis://, rediss:// (saying how to check the server) or well-formed sentinel:// URLs
        (which need a master name)."""
        for name, url in (("CELERY_BROKER_URL", self.broker_url),
                          ("CELERY_RESULT_BACKEND", self.result_backend)):
            if is_sentinel_url(url):
                try:
                    parse_sentinel_url(url)
                except ValueError as exc:
                    raise ConfigurationError(f"{name}: {exc}") from None
                if not self.redis_sentinel_master.strip():
                    raise ConfigurationError(f"{name} is a sentinel:// URL: set CALLQUEUE_REDIS_SENTINEL_MASTER "
                                             "to the name of the master the sentinels watch")
            elif not url.startswith(("redis://", "rediss://")):
                raise ConfigurationError(f"{name} must be a redis://, rediss:// or sentinel:// URL")
            else:
                try:
                    check_tls_options(url)
                except ValueError as exc:
                    raise ConfigurationError(f"{name}: {exc}") from None


def _convert(name: str, raw: str, annotation: str) -> object:
    converters = {"int": int, "float": float, "str": str}
    try:
        return converters[annotation](raw)
    except ValueError as exc:
        raise ConfigurationError(f"{name}={raw!r} is not a valid {annotation}") from exc


def load_settings() -> Settings:
    """Settings for this process, read from the environment on each call."""
    return Settings.from_env()


# What a caller of the tasks must name itself: the defaults would talk to whatever Redis listens on 127.0.0.1:6379.
CALLER_VARIABLES = ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND")


def load_caller_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Settings for a caller of the tasks (the client and the command line), read from the environment.

    Unlike the workers, a caller does not fall back to the default Redis on
    127.0.0.1:6379: that may be another application's Redis, which would take
    the messages and never answer. ``ConfigurationError`` names what to set.
    """
    environ = os.environ if environ is None else environ
    missing = [name for name in CALLER_VARIABLES if not environ.get(name)]
    if missing:
        raise ConfigurationError(
            f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set: callqueue's client does not "
            "guess where the broker is (a Redis on 127.0.0.1:6379 may be another application's). Set "
            f"{'it' if len(missing) == 1 else 'them'} to the deployment's Redis URLs; `make demo DEMO_ARGS=--hold` "
            "prints the export lines for its stack")
    return Settings.from_env(environ)
