"""Prometheus exporter for the figures Flower cannot know.

``python -m producers metrics --port 9808`` serves, at ``/metrics``:

- ``callqueue_events_total{event}``: claims, completions, releases, reclaims,
  heartbeats ... as counted by the workers (``rate()`` gives claims per second);
  completions are also counted by what follows them (``completed_final``,
  ``completed_retry``, ``completed_callback``), and ``promoted`` counts
  scheduled students brought back when due;
- ``callqueue_rejections_total{code}``: refused requests by rejection code;
- ``callqueue_session_students{call_session_id, state}``: pending,
  scheduled_callback, scheduled_retry, waiting_for_window (outside their
  calling hours), assigned, completed and suppressed (on a do-not-call list)
  students of every open session;
- ``callqueue_session_attempts{call_session_id}``: calls recorded in each open
  session, retries and callbacks included;
- ``callqueue_session_outcomes{call_session_id, outcome}`` and
  ``callqueue_session_assistants_holding{call_session_id}``;
- ``callqueue_worker_clock_offset_seconds{worker}``: each live worker's
  clock minus the database's, and ``callqueue_worker_paused{worker, reason}``
  (1 while a worker takes no messages: ``clock_skew`` or ``store_unreachable``).

Everything is read at scrape time from Redis (the counters) and MongoDB (the
sessions), so the exporter holds no state and any number can run.
"""

from __future__ import annotations

from typing import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from callqueue.config import Settings
from callqueue.workers.clock import worker_clocks
from callqueue.workers.store import SESSIONS, AssignmentStore
from callqueue.workers.metrics import read_counters, redis_client
from callqueue.workers.models import CallSession
from callqueue.workers.mongo import get_database


class CallqueueCollector(Collector):
    """Reads the domain figures on every scrape."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def collect(self) -> Iterator[Metric]:
        counters = redis_client(self.settings.broker_url, self.settings.redis_sentinel_master)
        events, rejections = read_counters(counters)
        yield _counter("callqueue_events", "Events counted by the workers.", "event", events)
        yield _counter("callqueue_rejections", "Refused requests by rejection code.", "code", rejections)
        yield from _clock_gauges(counters)
        yield from self._session_gauges()

    def _session_gauges(self) -> Iterator[Metric]:
        database = get_database(self.settings)
        store = AssignmentStore(database)
        students = GaugeMetricFamily("callqueue_session_students", "Students of open sessions by state.",
                                     labels=["call_session_id", "state"])
        outcomes = GaugeMetricFamily("callqueue_session_outcomes", "Completed students by outcome.",
                                     labels=["call_session_id", "outcome"])
        holding = GaugeMetricFamily("callqueue_session_assistants_holding",
                                    "Assistants holding a student right now.", labels=["call_session_id"])
        attempts = GaugeMetricFamily("callqueue_session_attempts",
                                     "Calls recorded in open sessions, retries and callbacks included.",
                                     labels=["call_session_id"])
        for document in database[SESSIONS].find({"status": "open"}):
            stats = store.stats(CallSession.from_document(document))
            for state, value in (("pending", stats.pending), ("scheduled_callback", stats.scheduled_callbacks),
                                 ("scheduled_retry", stats.scheduled_retries),
                                 ("waiting_for_window", stats.waiting_for_window), ("assigned", stats.assigned),
                                 ("completed", sum(stats.completed.values())), ("suppressed", stats.suppressed)):
                students.add_metric([stats.call_session_id, state], value)
            for outcome, value in stats.completed.items():
                outcomes.add_metric([stats.call_session_id, outcome], value)
            holding.add_metric([stats.call_session_id], len(stats.holders))
            attempts.add_metric([stats.call_session_id], stats.attempts)
        yield from (students, outcomes, holding, attempts)


def _clock_gauges(counters: object) -> Iterator[Metric]:
    """Each live worker's clock offset and whether it has stopped taking messages (``workers.clock``)."""
    offsets = GaugeMetricFamily("callqueue_worker_clock_offset_seconds",
                                "A worker's clock minus the database's, at its last check.", labels=["worker"])
    paused = GaugeMetricFamily("callqueue_worker_paused", "1 while a worker takes no messages, by reason.",
                               labels=["worker", "reason"])
    for record in worker_clocks(counters):  # type: ignore[arg-type]
        offsets.add_metric([record.worker], -record.offset_seconds)
        paused.add_metric([record.worker, record.reason or ""], 1 if record.paused else 0)
    yield from (offsets, paused)


def _counter(name: str, documentation: str, label: str, values: dict[str, int]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([key], value)
    return family
